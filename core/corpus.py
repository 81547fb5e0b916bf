"""Document shards, and the collect and preprocess stages that write them.

Documents are stored as zstd-compressed Parquet shards of about ``SHARD_BYTES`` of text,
``docs-00000.parquet``, ``docs-00001.parquet``... Each shard is written under a
temporary name and renamed, so a shard that exists is complete. Reading streams record
batches, so memory stays flat however large the corpus grows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import pickle
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

from lmforge.contracts import Collector, Document, Preprocessor
from lmforge.stages import atomic_write_bytes, atomic_write_json

SHARD_BYTES = 8 << 20
DUPLICATE = "skipped:duplicate_content"
WORDS_IN, WORDS_OUT = "words:before", "words:after"  # whitespace-separated words, counted per shard
COLUMNS = ["id", "text", "source", "uri", "license", "meta"]
# Parallel preprocessing hands out parts of shards: about this many per worker over the
# whole job, so the last parts are small next to the whole and the workers finish
# together, but none under MIN_PART_CHARS, where handing them out would cost more than
# the imbalance; at most WINDOW_PER_WORKER per worker wait unwritten in memory.
PARTS_PER_WORKER = 24
MIN_PART_CHARS = 64 << 10
WINDOW_PER_WORKER = 6


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
    return Counter(_shard_meta(path).get("lmforge.counts", {}))


def count_documents(paths: Iterable[Path]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def content_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def _shard_meta(path: Path) -> dict:
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): json.loads(v) for k, v in meta.items() if k.startswith(b"lmforge.")}


def collect(collector: Collector, out: Path, shard_bytes: int = SHARD_BYTES, progress: bool = False) -> dict:
    """Stream the collector's documents into shards under ``out``; returns the report.

    Exact duplicates (same text) are dropped by content hash. Resumes from the shards
    already in ``out``: each shard records how far into the collector's stream it reaches
    and the counts so far. A deterministic collector is replayed and the documents already
    stored are skipped; a ``resumable`` one continues from the state it saved in its
    ``checkpoint``, which is called right after every shard is written.
    """
    done = shard_paths(out)
    last = _shard_meta(done[-1]) if done else {}
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
    return _report(out, stats, source=collector.name)


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


def _report(out: Path, stats: Counter, **extra) -> dict:
    """Documents and bytes in total and by source, plus the counts by reason."""
    by_source: dict[str, dict[str, int]] = {}
    for path in shard_paths(out):
        for source, (docs, nbytes) in _shard_meta(path).get("lmforge.sources", {}).items():
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


_STEPS: list[Preprocessor] = []  # the pipeline of this worker process, set up once


def _init_worker(steps: list[Preprocessor]) -> None:
    for step in steps:
        step.setup()
    _STEPS[:] = steps


def _counting_words(docs: Iterable[Document], stats: Counter, key: str) -> Iterator[Document]:
    for doc in docs:
        stats[key] += len(doc.text.split())
        yield doc


def _apply_steps(docs: Iterable[Document]) -> tuple[list[Document], Counter]:
    """This process's pipeline over ``docs``: the documents kept, and the counts."""
    stats: Counter = Counter()
    stream: Iterable[Document] = _counting_words(docs, stats, WORDS_IN)
    for step in _STEPS:
        stream = step.process(stream, stats)
    return list(_counting_words(stream, stats, WORDS_OUT)), stats


def _run_steps(src: Path, dst: Path) -> Counter:
    """Apply this process's pipeline to one shard; the counts are stored in the shard."""
    kept, stats = _apply_steps(read_documents([src]))
    write_shard(kept, dst, counts=stats)
    return stats


def _shard_parts(todo: list[tuple[Path, Path]], part_chars: int) -> Iterator[tuple[Path, list[list[Document]]]]:
    """Each shard to do, read and cut into consecutive runs of documents of about
    ``part_chars`` characters each, so that workers can share even a few shards evenly."""
    for src, dst in todo:
        docs = list(read_documents([src]))
        total = sum(len(d.text) for d in docs)
        target = total / max(1, round(total / part_chars))
        parts: list[list[Document]] = [[]]
        size = 0
        for doc in docs:
            if parts[-1] and size >= target * len(parts):
                parts.append([])
            parts[-1].append(doc)
            size += len(doc.text)
        yield dst, parts


def _run_parallel(todo: list[tuple[Path, Path]], steps: list[Preprocessor], n_workers: int, advance) -> None:
    """Run the pipeline over the shards in ``n_workers`` processes, in parts of shards.

    Shards are cut into parts (``PARTS_PER_WORKER`` per worker over the whole job), so
    the workers finish together even when the shards do not divide evenly among them.
    This process reads the shards, reassembles each from its parts in order and writes
    it, so the output is the one a single process makes, shard by shard (for steps
    that stream document by document, as the spaCy lookup pipeline does, down to the
    order of the keys of the counts; a step that batches could interleave its counts
    differently, never changing them). Parts are
    handed out only while fewer than ``WINDOW_PER_WORKER`` per worker are unwritten (or
    none is running), which keeps memory flat while a long part holds its shard back.
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    # Set up once here: a failing setup() raises its own error in this process, and
    # forked workers inherit the loaded state instead of each loading it again.
    # Under spawn or forkserver the steps are pickled and set up in every worker.
    _init_worker(steps)
    context = multiprocessing.get_context()
    init = {} if context.get_start_method() == "fork" else {"initializer": _init_worker, "initargs": (steps,)}
    total = sum(_text_bytes(src) for src, _ in todo)  # bytes stand in for characters here
    part_chars = max(MIN_PART_CHARS, total // (PARTS_PER_WORKER * n_workers))
    results: dict[Path, list] = {}  # dst -> (kept, counts) of each part of the shard, None until back
    running: dict = {}  # future -> (dst, part number)

    def finish() -> None:
        for future in wait(running, return_when=FIRST_COMPLETED).done:
            dst, i = running.pop(future)
            parts = results[dst]
            parts[i] = future.result()
            if all(part is not None for part in parts):
                del results[dst]
                stats: Counter = Counter()
                for _, counts in parts:  # in part order, as one pass over the shard counts
                    stats.update(counts)
                write_shard([doc for kept, _ in parts for doc in kept], dst, counts=stats)
                advance()

    with ProcessPoolExecutor(n_workers, mp_context=context, **init) as pool:
        try:
            for dst, parts in _shard_parts(todo, part_chars):
                results[dst] = [None] * len(parts)
                for i, part in enumerate(parts):
                    while running and sum(map(len, results.values())) >= WINDOW_PER_WORKER * n_workers:
                        finish()
                    running[pool.submit(_apply_steps, part)] = (dst, i)
            while running:
                finish()
        except BaseException:
            for future in running:
                future.cancel()
            raise


def _text_bytes(path: Path) -> int:
    """The UTF-8 bytes of a shard's text, from its metadata (the file size if it has none)."""
    sources = _shard_meta(path).get("lmforge.sources")
    return sum(nbytes for _, nbytes in sources.values()) if sources else path.stat().st_size


def preprocess(steps: list[Preprocessor], src: Path, out: Path, n_workers: int = 1, progress: bool = False) -> dict:
    """Run the pipeline shard by shard from ``src`` into ``out``; returns the report.

    Output shard i is input shard i processed, so a rerun skips the shards already done.
    """
    todo = [(p, out / p.name) for p in shard_paths(src) if not (out / p.name).exists()]
    with _shard_progress(progress and bool(todo), len(todo)) as advance:
        if n_workers > 1 and len(todo) > 1 and all(s.parallel for s in steps):
            _run_parallel(todo, steps, n_workers, advance)
        elif todo:
            _init_worker(steps)
            saved = out / "_work" / "steps.pkl"  # corpus-wide step state, as of the last shard
            if saved.exists():
                for step, state in zip(steps, pickle.loads(saved.read_bytes())):
                    if state is not None:
                        step.restore(state)
            for s, d in todo:
                _run_steps(s, d)
                states = [step.state() for step in steps]
                if any(state is not None for state in states):
                    saved.parent.mkdir(exist_ok=True)
                    atomic_write_bytes(saved, pickle.dumps(states))
                advance()
    stats: Counter = Counter()
    for path in shard_paths(out):
        stats.update(shard_counts(path))
    words = {"words_before": stats.pop(WORDS_IN, 0), "words_after": stats.pop(WORDS_OUT, 0)}
    return _report(out, stats, steps=[s.name for s in steps], documents_in=count_documents(shard_paths(src)), **words)


@contextlib.contextmanager
def _shard_progress(enabled: bool, total: int):
    """A rich progress bar over shards while preprocessing; silent when disabled."""
    if not enabled:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("preprocess", BarColumn(), MofNCompleteColumn(), "shards", TimeElapsedColumn()) as bar:
        task = bar.add_task("preprocess", total=total)
        yield lambda: bar.advance(task)
