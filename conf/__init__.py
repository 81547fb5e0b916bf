"""Config files shipped with lmforge (data only)."""
