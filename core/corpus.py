"""Document shards, and the collect and preprocess stages that write them.

Documents are stored as zstd-compressed Parquet shards of about ``SHARD_BYTES`` of text,
``docs-00000.parquet``, ``docs-00001.parquet``... Each shard is written under a
temporary name and renamed, so a shard that exists is complete. Reading streams record
batches, so memory stays flat however large the corpus grows.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

from lmforge.contracts import Collector, Document, Preprocessor
from lmforge.stages import atomic_write_json

SHARD_BYTES = 8 << 20
COLUMNS = ["id", "text", "source", "uri", "license", "meta"]


def shard_paths(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("docs-*.parquet"))


def write_shard(docs: list[Document], path: Path, counts: Counter | None = None) -> None:
    """Write one shard atomically; ``counts`` (drops by reason) travel in its metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {c: [getattr(d, c) for d in docs] for c in COLUMNS[:-1]}
    columns["meta"] = [json.dumps(d.meta, sort_keys=True) for d in docs]
    table = pa.table({c: pa.array(columns[c], type=pa.string()) for c in COLUMNS})
    table = table.replace_schema_metadata({"lmforge.counts": json.dumps(dict(counts or {}))})
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def read_documents(paths: Iterable[Path]) -> Iterator[Document]:
    import pyarrow.parquet as pq

    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=512):
            rows = batch.to_pydict()
            for i in range(batch.num_rows):
                yield Document(**{c: rows[c][i] for c in COLUMNS[:-1]}, meta=json.loads(rows["meta"][i]))


def shard_counts(path: Path) -> Counter:
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return Counter(json.loads(meta.get(b"lmforge.counts", b"{}")))


def count_documents(paths: Iterable[Path]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def collect(collector: Collector, out: Path, shard_bytes: int = SHARD_BYTES) -> dict:
    """Stream the collector's documents into shards under ``out``; returns the report.

    Resumes: shards already in ``out`` are kept, and as many documents as they hold are
    skipped from the collector's (deterministic) stream.
    """
    done = shard_paths(out)
    skip = count_documents(done)
    stats: Counter = Counter()
    buffer: list[Document] = []
    size, index = 0, len(done)
    workdir = out / "_work"
    workdir.mkdir(exist_ok=True)
    for n, doc in enumerate(collector.documents(workdir, stats)):
        if n < skip:
            continue
        buffer.append(doc)
        size += len(doc.text.encode("utf-8"))
        if size >= shard_bytes:
            write_shard(buffer, out / f"docs-{index:05d}.parquet")
            buffer, size, index = [], 0, index + 1
    if buffer:
        write_shard(buffer, out / f"docs-{index:05d}.parquet")
    return _report(out, stats, source=collector.name)


def _report(out: Path, stats: Counter, **extra) -> dict:
    import pyarrow.parquet as pq

    docs = nbytes = 0
    for path in shard_paths(out):
        for batch in pq.ParquetFile(path).iter_batches(columns=["text"]):
            docs += batch.num_rows
            nbytes += sum(len(t.encode("utf-8")) for t in batch.column(0).to_pylist())
    report = {**extra, "documents": docs, "bytes": nbytes, "shards": len(shard_paths(out)), "counts": dict(stats)}
    atomic_write_json(out / "report.json", report)
    return report


_STEPS: list[Preprocessor] = []  # the pipeline of this worker process, set up once


def _init_worker(steps: list[Preprocessor]) -> None:
    for step in steps:
        step.setup()
    _STEPS[:] = steps


def _run_steps(src: Path, dst: Path) -> Counter:
    """Apply this process's pipeline to one shard; the counts are stored in the shard."""
    stats: Counter = Counter()
    docs: Iterable[Document] = read_documents([src])
    for step in _STEPS:
        docs = step.process(docs, stats)
    write_shard(list(docs), dst, counts=stats)
    return stats


def preprocess(steps: list[Preprocessor], src: Path, out: Path, n_workers: int = 1) -> dict:
    """Run the pipeline shard by shard from ``src`` into ``out``; returns the report.

    Output shard i is input shard i processed, so a rerun skips the shards already done.
    """
    todo = [(p, out / p.name) for p in shard_paths(src) if not (out / p.name).exists()]
    if n_workers > 1 and len(todo) > 1 and all(s.parallel for s in steps):
        with ProcessPoolExecutor(n_workers, initializer=_init_worker, initargs=(steps,)) as pool:
            list(pool.map(_run_steps, *zip(*todo)))
    elif todo:
        _init_worker(steps)
        for s, d in todo:
            _run_steps(s, d)
    stats: Counter = Counter()
    for path in shard_paths(out):
        stats.update(shard_counts(path))
    return _report(out, stats, steps=[s.name for s in steps], documents_in=count_documents(shard_paths(src)))
