"""Deprecated: the document shards and the collect and preprocess stages moved to
``lmforge.stages.shards``, ``lmforge.stages.collect`` and ``lmforge.stages.preprocess``.

The old names still resolve, with a ``DeprecationWarning`` naming the new place.
"""

from __future__ import annotations

import importlib
import warnings

_MOVED = {
    **dict.fromkeys(
        ["SHARD_BYTES", "COLUMNS", "shard_paths", "write_shard", "read_documents", "shard_counts",
         "count_documents", "content_hash"],
        "lmforge.stages.shards",
    ),
    **dict.fromkeys(["DUPLICATE", "collect"], "lmforge.stages.collect"),
    **dict.fromkeys(
        ["WORDS_IN", "WORDS_OUT", "PARTS_PER_WORKER", "MIN_PART_CHARS", "WINDOW_PER_WORKER", "preprocess"],
        "lmforge.stages.preprocess",
    ),
}


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"lmforge.corpus.{name} is deprecated: use {_MOVED[name]}.{name}", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(_MOVED[name]), name)


def __dir__() -> list[str]:
    return sorted(_MOVED)
