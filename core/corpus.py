"""Deprecated: the document shards and the collect and preprocess stages moved to
``lmforge.stages.shards``, ``lmforge.stages.collect`` and ``lmforge.stages.preprocess``.

The old names still resolve, with a ``DeprecationWarning`` naming the new place.
"""

from __future__ import annotations

from lmforge._moved import forward

__getattr__ = forward(
    __name__,
    {
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
    },
)
