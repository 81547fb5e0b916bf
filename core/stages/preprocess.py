"""The preprocess stage: the pipeline of steps run shard by shard, in worker processes
when every step allows it.

Output shard i is input shard i processed, so a rerun skips the shards already done.
The pipeline is an object handed to whoever runs it (this process, or each worker
process as its argument): no module-level state, so two pipelines never meet.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import pickle
import signal
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from lmforge.contracts import Document, Preprocessor
from lmforge.errors import DataError
from lmforge.files import atomic_write
from lmforge.stages.shards import count_documents, read_documents, shard_counts, shard_meta, shard_paths, write_report, write_shard

WORDS_IN, WORDS_OUT = "words:before", "words:after"  # whitespace-separated words, counted per shard
# Parallel preprocessing hands out parts of shards: about this many per worker over the
# whole job, so the last parts are small next to the whole and the workers finish
# together, but none under MIN_PART_CHARS, where handing them out would cost more than
# the imbalance; at most WINDOW_PER_WORKER per worker wait unwritten in memory.
PARTS_PER_WORKER = 24
MIN_PART_CHARS = 64 << 10
WINDOW_PER_WORKER = 6
# The steps' corpus-wide state, in the stage's _work/ folder: JSON, with any numpy arrays
# in an .npz file it names (read with allow_pickle=False). Nothing in the cache is
# unpickled: a shared cache must not be a way to run code in another user's run.
STATE = "steps.json"
ARRAY = "__ndarray__"  # {ARRAY: name} in the JSON stands for the array saved under that name
OLD_STATE = "steps.pkl"  # what lmforge saved before, never read


class Pipeline:
    """The steps as one function: a run of documents in, the documents kept and the counts out.

    ``setup`` loads the steps' heavy state and runs once in each process that calls the
    pipeline. Forked workers inherit a pipeline already set up; under spawn or forkserver
    the steps arrive pickled (without that state) and are set up there.
    """

    def __init__(self, steps: list[Preprocessor]) -> None:
        self.steps = steps

    def setup(self) -> None:
        for step in self.steps:
            step.setup()

    def __call__(self, docs: Iterable[Document]) -> tuple[list[Document], Counter]:
        stats: Counter = Counter()
        stream: Iterable[Document] = _counting_words(docs, stats, WORDS_IN)
        for step in self.steps:
            stream = step.process(stream, stats)
        return list(_counting_words(stream, stats, WORDS_OUT)), stats


def _counting_words(docs: Iterable[Document], stats: Counter, key: str) -> Iterator[Document]:
    for doc in docs:
        stats[key] += len(doc.text.split())
        yield doc


def preprocess(steps: list[Preprocessor], src: Path, out: Path, n_workers: int = 1, progress: bool = False) -> dict:
    """Run the pipeline shard by shard from ``src`` into ``out``; returns the report.

    Output shard i is input shard i processed, so a rerun skips the shards already done.
    """
    todo = [(p, out / p.name) for p in shard_paths(src) if not (out / p.name).exists()]
    pipeline = Pipeline(steps)
    with _shard_progress(progress and bool(todo), len(todo)) as advance:
        if n_workers > 1 and len(todo) > 1 and all(s.parallel for s in steps):
            _run_parallel(todo, pipeline, n_workers, advance)
        elif todo:
            _run_serial(todo, pipeline, out, advance)
    stats: Counter = Counter()
    for path in shard_paths(out):
        stats.update(shard_counts(path))
    words = {"words_before": stats.pop(WORDS_IN, 0), "words_after": stats.pop(WORDS_OUT, 0)}
    return write_report(out, stats, steps=[s.name for s in steps], documents_in=count_documents(shard_paths(src)), **words)


def _run_serial(todo: list[tuple[Path, Path]], pipeline: Pipeline, out: Path, advance: Callable[[], None]) -> None:
    """Run the pipeline in this process, shard after shard, saving the corpus-wide step
    state after each shard and restoring it when a run resumes."""
    pipeline.setup()
    for step, state in zip(pipeline.steps, load_states(out, pipeline.steps)):
        if state is not None:
            try:
                step.restore(state)
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                raise DataError(_unreadable(out / "_work" / STATE, out, f"step {step.name!r} cannot restore it: {exc}")) from None
    for src, dst in todo:
        kept, stats = pipeline(read_documents([src]))
        write_shard(kept, dst, counts=stats)
        states = [step.state() for step in pipeline.steps]
        if any(state is not None for state in states):
            save_states(out, pipeline.steps, states, tag=dst.name.split(".")[0])
        advance()


def save_states(out: Path, steps: list[Preprocessor], states: list, tag: str) -> None:
    """Write the steps' states into ``out/_work`` as ``steps.json``, their arrays in ``steps.<tag>.npz``.

    The JSON is written last and names its .npz, so a save cut short leaves the previous
    pair whole; the .npz files it no longer names go once it is in place.
    """
    import numpy as np

    arrays: dict[str, np.ndarray] = {}

    def encode(value: Any, step: Preprocessor) -> Any:
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise TypeError(f"preprocess step {step.name!r}: state() holds an array of Python objects; use numbers")
            arrays[f"a{len(arrays)}"] = value
            return {ARRAY: f"a{len(arrays) - 1}"}
        if isinstance(value, dict):
            if ARRAY in value:
                raise TypeError(f"preprocess step {step.name!r}: {ARRAY!r} is a reserved key in state()")
            return {key: encode(v, step) for key, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [encode(v, step) for v in value]
        return value

    work, saved = out / "_work", []
    for step, state in zip(steps, states):
        encoded = encode(state, step)
        try:
            json.dumps(encoded, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"preprocess step {step.name!r}: state() must return JSON data (numbers, strings, lists, dicts "
                f"with string keys) or numpy arrays of numbers: {exc}"
            ) from None
        saved.append({"step": step.name, "state": encoded})
    work.mkdir(exist_ok=True)
    npz = f"steps.{tag}.npz" if arrays else None
    if npz:
        atomic_write(work / npz, lambda f: np.savez(f, **arrays))
    atomic_write(work / STATE, json.dumps({"format": 1, "arrays": npz, "steps": saved}))
    for old in work.glob("steps.*.npz"):
        if old.name != npz:
            old.unlink(missing_ok=True)


def load_states(out: Path, steps: list[Preprocessor]) -> list:
    """The states ``save_states`` saved in ``out/_work``, one per step (None for none).

    Only JSON and arrays of numbers are read, never a pickle: a state file that is not
    what lmforge writes is an error that says to rebuild the stage.
    """
    import zipfile

    import numpy as np

    work = out / "_work"
    path = work / STATE
    if not path.exists():
        if (work / OLD_STATE).exists():
            raise DataError(_unreadable(work / OLD_STATE, out, "an older lmforge saved it as a pickle, which lmforge no longer reads"))
        return [None] * len(steps)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        names = [entry["step"] for entry in saved["steps"]]
        if names != [step.name for step in steps]:
            raise ValueError(f"it holds the state of steps {names}, not of {[step.name for step in steps]}")
        arrays = {}
        if saved["arrays"] is not None:
            npz = work / saved["arrays"]
            if npz.parent != work or not npz.name.endswith(".npz"):
                raise ValueError(f"it names {saved['arrays']!r}, not an .npz file beside it")
            with np.load(npz, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}

        def decode(value: Any) -> Any:
            if isinstance(value, dict):
                return arrays[value[ARRAY]] if set(value) == {ARRAY} else {key: decode(v) for key, v in value.items()}
            if isinstance(value, list):
                return [decode(v) for v in value]
            return value

        return [decode(entry["state"]) for entry in saved["steps"]]
    except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile) as exc:  # JSONDecodeError is a ValueError
        reason = f"no {exc} entry" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__
        raise DataError(_unreadable(path, out, reason)) from None


def _unreadable(path: Path, out: Path, reason: str) -> str:
    return (
        f"cannot resume the preprocess stage from its saved step state {path} ({reason}): "
        f"delete the unfinished stage folder {out} and rerun to rebuild the stage"
    )


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


def _run_parallel(todo: list[tuple[Path, Path]], pipeline: Pipeline, n_workers: int, advance: Callable[[], None]) -> None:
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
    # Set up once here: a failing setup() raises its own error in this process, and
    # forked workers inherit the loaded state instead of each loading it again.
    pipeline.setup()
    total = sum(_text_bytes(src) for src, _ in todo)  # bytes stand in for characters here
    part_chars = max(MIN_PART_CHARS, total // (PARTS_PER_WORKER * n_workers))
    results: dict[Path, list] = {}  # dst -> (kept, counts) of each part of the shard, None until back

    def finish(workers: _Workers) -> None:
        for (dst, i), result in workers.results():
            parts = results[dst]
            parts[i] = result
            if all(part is not None for part in parts):
                del results[dst]
                stats: Counter = Counter()
                for _, counts in parts:  # in part order, as one pass over the shard counts
                    stats.update(counts)
                write_shard([doc for kept, _ in parts for doc in kept], dst, counts=stats)
                advance()

    def unwritten(workers: _Workers) -> int:
        """Parts handed out and not yet written: running, or back and waiting for their shard."""
        return workers.running + sum(part is not None for parts in results.values() for part in parts)

    with _Workers(pipeline, n_workers, multiprocessing.get_context()) as workers:
        for dst, parts in _shard_parts(todo, part_chars):
            results[dst] = [None] * len(parts)
            for i, part in enumerate(parts):
                while workers.running and unwritten(workers) >= WINDOW_PER_WORKER * n_workers:
                    finish(workers)
                workers.submit((dst, i), part)
        while workers.running:
            finish(workers)


def _text_bytes(path: Path) -> int:
    """The UTF-8 bytes of a shard's text, from its metadata (the file size if it has none)."""
    sources = shard_meta(path).get("lmforge.sources")
    return sum(nbytes for _, nbytes in sources.values()) if sources else path.stat().st_size


class _Workers:
    """``n`` worker processes that each run one pipeline over the parts they are sent.

    The pipeline is each process's argument, not part of each task: under fork the
    workers inherit the parent's set-up steps as they are, with no pickling and no second
    ``setup``; under spawn or forkserver it is pickled once per worker and set up there.
    Parts go out on one queue, so a free worker takes the next; each worker answers on
    its own pipe, beside its process sentinel, so a worker that dies is an error here
    rather than a wait that never ends.

    Signals are this process's to handle: Ctrl-C reaches the whole process group, and a
    worker that raised its own ``KeyboardInterrupt`` would print a traceback for each
    worker. Workers ignore SIGINT and die on SIGTERM without a word; this process
    terminates them on its way out. They start with both signals blocked, so that none
    arrives before ``_work`` has set this up.
    """

    def __init__(self, pipeline: Pipeline, n: int, context: Any) -> None:
        self.tasks = context.Queue()
        self.running = 0
        self.pipes, self.procs = [], []
        setup = context.get_start_method() != "fork"
        try:
            with _blocked(WORKER_SIGNALS):
                for _ in range(n):
                    reader, writer = context.Pipe(duplex=False)
                    proc = context.Process(target=_work, args=(pipeline, setup, self.tasks, writer), daemon=True)
                    self.procs.append(proc)  # before start(): a Ctrl-C in start() still terminates it
                    proc.start()
                    writer.close()
                    self.pipes.append(reader)
        except BaseException:
            self._stop()
            raise

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if exc is None:
            for _ in self.procs:
                self.tasks.put(None)
            for proc in self.procs:
                proc.join()
        else:
            self._stop()

    def _stop(self) -> None:
        self.tasks.cancel_join_thread()  # parts nobody will take must not hold this process at exit
        started = [proc for proc in self.procs if proc.pid is not None]
        for proc in started:
            proc.terminate()
        for proc in started:
            proc.join()

    def submit(self, key: Any, docs: list[Document]) -> None:
        self.tasks.put((key, docs))
        self.running += 1

    def results(self) -> list[tuple[Any, tuple[list[Document], Counter]]]:
        """Wait for the next results, and return every one that is back: (key, result)."""
        from multiprocessing.connection import wait

        ready = wait([*self.pipes, *(proc.sentinel for proc in self.procs)])
        back = []
        for pipe in self.pipes:
            if pipe in ready:
                with contextlib.suppress(EOFError):  # the worker is gone: its sentinel says so below
                    key, result, error = pipe.recv()
                    if error is not None:
                        raise error[0] from _RemoteTraceback(error[1])
                    back.append((key, result))
                    self.running -= 1
        for proc in self.procs:
            if not back and proc.exitcode is not None:
                raise RuntimeError(
                    f"a preprocess worker process exited with code {proc.exitcode} while running the pipeline "
                    "(killed, or out of memory?): lower preprocess n_workers, or rerun to resume from the shards done"
                )
        return back


class _RemoteTraceback(Exception):
    """The traceback of an error raised in a worker process, shown as its cause."""

    def __str__(self) -> str:
        return self.args[0]


WORKER_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _blocked(signals: tuple[int, ...]) -> Iterator[None]:
    """Hold ``signals`` pending in this thread (and in processes it starts) until the end."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks, nor process groups
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _work(pipeline: Pipeline, setup: bool, tasks: Any, results: Any) -> None:
    """A worker process: run ``pipeline`` over each part from ``tasks`` until told to stop."""
    # SIG_DFL, not an inherited Python handler: SIGTERM ends the worker at once and quietly
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)  # one held since the start is handled now
    try:
        if setup:
            pipeline.setup()
    except Exception as exc:
        results.send((None, None, _portable(exc)))
        return
    while (task := tasks.get()) is not None:
        key, docs = task
        try:
            results.send((key, pipeline(docs), None))
        except Exception as exc:
            results.send((key, None, _portable(exc)))


def _portable(exc: Exception) -> tuple[Exception, str]:
    """``exc`` and its traceback, as they can travel to the parent process."""
    text = "".join(traceback.format_exception(exc))
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        exc = RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc, f'\n"""\n{text}"""'


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
