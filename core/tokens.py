"""Deprecated: token shards and the tokenize stage moved to ``lmforge.stages.tokenize``.

The old names still resolve, with a ``DeprecationWarning`` naming the new place.
"""

from __future__ import annotations

import importlib
import warnings

_MOVED = ["ENCODE_BATCH", "id_hash", "is_validation", "tokenize", "TokenShard", "load_shards", "token_stats", "split_tokens"]


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"lmforge.tokens.{name} is deprecated: use lmforge.stages.tokenize.{name}", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module("lmforge.stages.tokenize"), name)


def __dir__() -> list[str]:
    return sorted(_MOVED)
