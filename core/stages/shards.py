"""Document shards: the format the collect and preprocess stages write and read.

Documents are stored as zstd-compressed Parquet shards of about ``SHARD_BYTES`` of text,
``docs-00000.parquet``, ``docs-00001.parquet``... Each shard is written with
``lmforge.files.atomic_write``, so a shard that exists is complete. Reading streams
record batches, so memory stays flat however large the corpus grows.

A shard's schema metadata carries what the reports need without rereading the text:
the counts so far by reason (``lmforge.counts``), documents and bytes by source
(``lmforge.sources``) and, for the collect stage, the position reached in the
collector's stream (``lmforge.position``).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from lmforge.contracts import Document
from lmforge.files import atomic_write, atomic_write_json

SHARD_BYTES = 8 << 20
COLUMNS = ["id", "text", "source", "uri", "license", "meta"]


def shard_paths(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("docs-*.parquet"))


def write_shard(docs: list[Document], path: Path, counts: Counter | None = None, position: int | None = None) -> None:
    """Write one shard atomically; ``counts`` (drops by reason) and the stream ``position``
    reached travel in its metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {c: [getattr(d, c) for d in docs] for c in COLUMNS[:-1]}
    columns["meta"] = [json.dumps(d.meta, sort_keys=True) for d in docs]
    table = pa.table({c: pa.array(columns[c], type=pa.string()) for c in COLUMNS})
    sources: dict[str, list[int]] = {}
    for d in docs:  # documents and bytes by source, so reports need not reread the text
        tally = sources.setdefault(d.source, [0, 0])
        tally[0] += 1
        tally[1] += len(d.text.encode("utf-8"))
    meta = {"lmforge.counts": json.dumps(dict(counts or {})), "lmforge.sources": json.dumps(sources)}
    if position is not None:
        meta["lmforge.position"] = json.dumps(position)
    table = table.replace_schema_metadata(meta)
    atomic_write(path, lambda f: pq.write_table(table, f, compression="zstd"))


def read_documents(paths: Iterable[Path]) -> Iterator[Document]:
    import pyarrow.parquet as pq

    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=512):
            rows = batch.to_pydict()
            for i in range(batch.num_rows):
                yield Document(**{c: rows[c][i] for c in COLUMNS[:-1]}, meta=json.loads(rows["meta"][i]))


def shard_meta(path: Path) -> dict:
    """The ``lmforge.*`` entries of a shard's metadata, decoded."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): json.loads(v) for k, v in meta.items() if k.startswith(b"lmforge.")}


def shard_counts(path: Path) -> Counter:
    return Counter(shard_meta(path).get("lmforge.counts", {}))


def count_documents(paths: Iterable[Path]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def content_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def write_report(out: Path, stats: Counter, **extra) -> dict:
    """Write ``out/report.json``: documents and bytes in total and by source, plus the
    counts by reason and ``extra``; returns it."""
    by_source: dict[str, dict[str, int]] = {}
    for path in shard_paths(out):
        for source, (docs, nbytes) in shard_meta(path).get("lmforge.sources", {}).items():
            tally = by_source.setdefault(source, {"documents": 0, "bytes": 0})
            tally["documents"] += docs
            tally["bytes"] += nbytes
    docs = sum(t["documents"] for t in by_source.values())
    nbytes = sum(t["bytes"] for t in by_source.values())
    report = {
        **extra,
        "documents": docs,
        "bytes": nbytes,
        "shards": len(shard_paths(out)),
        "sources": {s: {**t, "share_of_bytes": round(t["bytes"] / nbytes, 4)} for s, t in sorted(by_source.items())},
        "counts": dict(sorted(stats.items())),
    }
    atomic_write_json(out / "report.json", report)
    return report
