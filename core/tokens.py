"""Deprecated: token shards and the tokenize stage moved to ``lmforge.stages.tokenize``.

The old names still resolve, with a ``DeprecationWarning`` naming the new place.
"""

from __future__ import annotations

from lmforge._moved import forward

_NAMES = ["ENCODE_BATCH", "id_hash", "is_validation", "tokenize", "TokenShard", "load_shards", "token_stats", "split_tokens"]
__getattr__ = forward(__name__, dict.fromkeys(_NAMES, "lmforge.stages.tokenize"))
