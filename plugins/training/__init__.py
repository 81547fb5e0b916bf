"""Lightning training engine used by the run wiring."""
