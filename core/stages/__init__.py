"""The data stages of a run, in the order the run wiring calls them.

- ``collect`` (``lmforge.stages.collect``): a collector's documents streamed into
  Parquet document shards, exact duplicates dropped;
- ``preprocess`` (``lmforge.stages.preprocess``): the pipeline of steps run shard by
  shard, in worker processes when every step allows it;
- ``tokenize`` (``lmforge.stages.tokenize``): the tokenizer trained, and every shard
  encoded into a token shard that training reads memory-mapped.

``lmforge.stages.shards`` is the document-shard format the first two write and the
next reads. Each stage's output is kept in the stage cache (``lmforge.stages.cache``,
re-exported here: ``StageCache``, ``stage_key``), under a key derived from everything
that made it, so a run that changes only the model reuses the data of the last.

Importing this package loads neither numpy nor pyarrow; the stage modules do.
"""

from __future__ import annotations

from lmforge._moved import forward
from lmforge.stages.cache import Stage, StageCache, stage_key

__all__ = ["Stage", "StageCache", "stage_key"]

# lmforge.stages was one module until the stages became a package; its atomic writers
# now live in lmforge.files.
__getattr__ = forward(
    __name__,
    {
        "atomic_write_bytes": "lmforge.files:atomic_write",
        "atomic_write_text": "lmforge.files:atomic_write",
        "atomic_write_json": "lmforge.files",
    },
)
