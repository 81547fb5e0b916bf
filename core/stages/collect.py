"""The collect stage: a collector's documents streamed into shards, exact duplicates dropped."""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from pathlib import Path

from lmforge.contracts import Collector, Document
from lmforge.files import atomic_write
from lmforge.stages.shards import SHARD_BYTES, content_hash, read_documents, shard_meta, shard_paths, write_report, write_shard

DUPLICATE = "skipped:duplicate_content"
SKIPPED = "skipped.jsonl"  # the inputs a collector skipped, named, beside report.json


def collect(collector: Collector, out: Path, shard_bytes: int = SHARD_BYTES, progress: bool = False) -> dict:
    """Stream the collector's documents into shards under ``out``; returns the report.

    Exact duplicates (same text) are dropped by content hash. Resumes from the shards
    already in ``out``: each shard records how far into the collector's stream it reaches
    and the counts so far. A deterministic collector is replayed and the documents already
    stored are skipped; a ``resumable`` one continues from the state it saved in its
    ``checkpoint``, which is called right after every shard is written.
    """
    done = shard_paths(out)
    last = shard_meta(done[-1]) if done else {}
    previous = Counter(last.get("lmforge.counts", {}))
    position = 0 if collector.resumable else last.get("lmforge.position", 0)
    seen = {content_hash(d.text) for d in read_documents(done)}
    # a replayed collector recounts its own skips; only the duplicates it does not see again carry over
    stats = previous if collector.resumable else Counter({DUPLICATE: previous[DUPLICATE]} if previous[DUPLICATE] else {})
    buffer: list[Document] = []
    size, index, nbytes = 0, len(done), 0
    workdir = out / "_work"
    workdir.mkdir(exist_ok=True)
    with _progress(progress, collector.name) as update:
        for n, doc in enumerate(collector.documents(workdir, stats), start=1):
            if n <= position:
                continue
            digest = content_hash(doc.text)
            if digest in seen:
                stats[DUPLICATE] += 1
                continue
            seen.add(digest)
            buffer.append(doc)
            size += len(doc.text.encode("utf-8"))
            if size >= shard_bytes:
                write_shard(buffer, out / f"docs-{index:05d}.parquet", counts=stats, position=n)
                collector.checkpoint()
                nbytes, buffer, size, index = nbytes + size, [], 0, index + 1
            if n % 64 == 0:
                update(len(seen), nbytes + size)
        if buffer:
            write_shard(buffer, out / f"docs-{index:05d}.parquet", counts=stats, position=n)
            collector.checkpoint()
        update(len(seen), nbytes + size)
    extra = {"skipped_files": SKIPPED} if _gather_skipped(workdir, out / SKIPPED) else {}
    return write_report(out, stats, source=collector.name, **extra)


def _gather_skipped(workdir: Path, dest: Path) -> int:
    """Join the ``skipped.jsonl`` files collectors wrote in ``workdir`` into ``dest``; returns the lines.

    A ``mix`` source writes in its own ``_work/<label>/``: its lines gain ``"source": label``.
    """
    lines = []
    for path in sorted(workdir.rglob(SKIPPED)):
        label = path.parent.relative_to(workdir).as_posix()
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            lines.append(json.dumps({**record, "source": label} if label != "." else record))
    if lines:
        atomic_write(dest, "".join(f"{line}\n" for line in lines))
    return len(lines)


@contextlib.contextmanager
def _progress(enabled: bool, name: str):
    """A rich progress line (documents, MB, MB/s) while collecting; silent when disabled."""
    if not enabled:
        yield lambda docs, nbytes: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = [SpinnerColumn(), TextColumn(f"collect {name}: {{task.fields[docs]:,}} docs, "
               "{task.fields[mb]:.1f} MB, {task.fields[rate]:.2f} MB/s"), TimeElapsedColumn()]
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("collect", docs=0, mb=0.0, rate=0.0)
        start = time.perf_counter()

        def update(docs: int, nbytes: int) -> None:
            rate = nbytes / 1e6 / max(time.perf_counter() - start, 1e-9)
            bar.update(task, docs=docs, mb=nbytes / 1e6, rate=rate)

        yield update
