"""Built-in models.

Every architecture has a ``size`` key (tiny, small, base) and dimension keys that default
to None, meaning "take it from the size table". The table lives in the architecture's
own module; ``size_dims`` is the one rule all of them share: an explicit value wins.
``check_dims``, ``check_rate`` and ``check_positive`` are the value checks the configs run.
"""

from __future__ import annotations

from typing import Any


def size_dims(config: Any, table: dict[str, dict[str, int]]) -> dict[str, int]:
    """The dimensions of ``config``: each key left at None is taken from ``table[config.size]``."""
    if config.size not in table:
        raise ValueError(f"model.size={config.size!r} is not one of {', '.join(table)}")
    return {key: value if getattr(config, key) is None else getattr(config, key) for key, value in table[config.size].items()}


def check_dims(dims: dict[str, int], table: dict[str, dict[str, int]]) -> None:
    """Every dimension must be at least 1: ``model.n_layer=0`` would train a model with no layers."""
    for key, value in dims.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            example = table["tiny"].get(key, 4)
            raise ValueError(f"model.{key}={value}: must be at least 1; e.g. model.{key}={example}")


def check_rate(key: str, value: float, example: float = 0.1) -> None:
    """A dropout-like probability: at least 0 and below 1."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"model.{key}={value}: must be at least 0 and below 1; e.g. model.{key}={example}")


def check_positive(key: str, value: float, example: float) -> None:
    """A width ratio or a base frequency: above 0."""
    if not value > 0:
        raise ValueError(f"model.{key}={value}: must be above 0; e.g. model.{key}={example}")
