"""Built-in guards: ``none``, ``lexicon`` and ``classifier`` (see docs/safety.md)."""
