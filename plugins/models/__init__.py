"""Built-in models.

Every architecture has a ``size`` key (tiny, small, base) and dimension keys that default
to None, meaning "take it from the size table". The table lives in the architecture's
own module; ``size_dims`` is the one rule all of them share: an explicit value wins.
"""

from __future__ import annotations

from typing import Any


def size_dims(config: Any, table: dict[str, dict[str, int]]) -> dict[str, int]:
    """The dimensions of ``config``: each key left at None is taken from ``table[config.size]``."""
    if config.size not in table:
        raise ValueError(f"model.size={config.size!r} is not one of {', '.join(table)}")
    return {key: value if getattr(config, key) is None else getattr(config, key) for key, value in table[config.size].items()}
