"""The model of ``lmforge serve`` in a process of its own, as vLLM's engine core: the
scheduler (``_scheduler.py``) decodes there, and the server's process keeps only HTTP.

Why a process: a decode step of a small model is mostly Python, and so is the server's
work per token (the event loop, SSE encoding, the socket). In one process the two take
turns on the interpreter lock: each token's hand-off to the event loop stalled the decode
thread until the loop let go (14% of its time in a profile). In two processes they
overlap, on two CPUs.

The wire, two one-way pipes of pickled tuples (the events framed by ``_write``):

- to the engine: ``("submit", id, job fields)``, ``("cancel", id)``, ``("stop",)``;
- from it: ``("ready",)``, ``("failed", exception)`` when the model did not load, and
  ``("events", [(id, event), ...])`` once per prefill or decode step, with every row's
  event of that step: ``("c", Chunk fields...)``, ``("s", prompt scores)``, ``("e",)``
  when the job ended, ``("x", exception)`` when it failed.

``Engine`` is the server's side and looks like a ``Scheduler``: ``ready``, ``failed``,
``submit(job)``, ``stop()``; the pipe is read on the server's event loop, which is where
a job's events reach ``job.emit``.
If the process dies, every job in flight gets a 503 error, ``failed`` is set (so
``/health`` answers 503), and new requests are refused with 503 rather than hang.
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import os
import pickle
import signal
import struct
import threading
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional


@dataclass
class Job:
    """One request: a prompt, its settings, and ``n`` choices decoded as ``n`` rows. The
    server makes one; the engine process decodes a copy of its settings (``_FIELDS``)."""

    prompt: list[int]
    emit: Callable[[object], None]  # receives Chunks (row = choice index), then None when every choice ended; or an Exception
    max_tokens: int = 16  # 0: score the prompt only (echo with logprobs)
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: Optional[int] = None
    n: int = 1
    logprobs: int = 0  # alternatives reported per token
    prompt_logprobs: bool = False  # fill ``prompt_scores`` from the prefill (echo)
    stop_at_eos: bool = True
    prompt_scores: list = field(default_factory=list)  # (logprob or None, [(id, logprob)]) per prompt token
    live: int = 0  # choices still decoding
    cancelled: threading.Event = field(default_factory=threading.Event)
    on_cancel: Optional[Callable[[], None]] = None  # also told of a cancel (the engine process passes it on)

    def cancel(self) -> None:
        """Stop decoding this job (the client left, or its deadline passed); its rows leave at the next step."""
        if not self.cancelled.is_set():
            self.cancelled.set()
            if self.on_cancel is not None:
                self.on_cancel()


class Chunk(NamedTuple):
    """``lmforge.engine.generate.Chunk`` as the server's process sees it, which needs no torch."""

    row: int
    text: str
    token_id: int
    logprob: float
    top_logprobs: list
    finish_reason: Optional[str]


# the fields of a Job that travel to the engine; the rest (emit, live, events) are per process
_FIELDS = [f.name for f in dataclasses.fields(Job) if f.name not in ("emit", "prompt_scores", "live", "cancelled", "on_cancel")]


class EngineDied(Exception):
    """The engine process ended while the server still ran."""


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it pickles (it crosses the pipe), else a RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001  any exception may fail to pickle, in any way
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class Engine:
    """The scheduler in a child process (spawned: no forked torch threads). Its events are
    read on the server's event loop (``attach``), which is where ``job.emit`` is called."""

    def __init__(self, run_dir: str, *, checkpoint: Optional[str], device: str, max_batch: int = 64,
                 on_error: Callable[[BaseException], None] | None = None, on_death: Callable[[BaseException], None] | None = None):
        context = multiprocessing.get_context("spawn")
        commands_in, self.commands = context.Pipe(duplex=False)
        self.events, events_out = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_main, args=(commands_in, events_out, str(run_dir), checkpoint, device, max_batch), name="lmforge-engine", daemon=True,
        )
        self._child_ends = (commands_in, events_out)
        self.on_error, self.on_death = on_error, on_death
        self.ready, self.stopping = threading.Event(), threading.Event()
        self.failed: BaseException | None = None
        self.jobs: dict[int, Job] = {}  # in flight: submitted, not yet ended nor cancelled
        self.ids = itertools.count()
        self.loop = None

    def start(self) -> "Engine":
        self.process.start()
        for end in self._child_ends:  # the child holds its own copies: EOF reaches each side when the other dies
            end.close()
        return self

    def attach(self, loop) -> None:
        """Read the engine's events on ``loop`` (the server's, once it runs): one wake-up per
        decode step at most, no thread in between."""
        self.loop, self.buffer = loop, bytearray()
        os.set_blocking(self.events.fileno(), False)
        loop.add_reader(self.events.fileno(), self._readable)

    def stop(self) -> None:
        self.stopping.set()
        if not self.ready.is_set():  # still loading (or it failed): nothing to finish
            self.process.terminate()
        try:
            self.commands.send(("stop",))
        except OSError:
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)

    def submit(self, job: Job) -> None:
        """On the event loop, like every method here but ``start`` and ``stop``."""
        if self.failed is not None:
            job.emit(_unavailable(self.failed))
            return
        key = next(self.ids)
        self.jobs[key] = job
        job.on_cancel = lambda: self._cancel(key)
        try:
            self.commands.send(("submit", key, {name: getattr(job, name) for name in _FIELDS}))
        except OSError:  # the process is gone: the reader fails the jobs in flight
            pass

    def _cancel(self, key: int) -> None:
        if self.jobs.pop(key, None) is not None and self.failed is None:
            try:
                self.commands.send(("cancel", key))
            except OSError:
                pass

    def _readable(self) -> None:
        # One read takes every message that waits: when this process falls behind, the steps
        # that queued up reach each request together and leave in one write to its socket.
        try:
            data = os.read(self.events.fileno(), 1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # end of file: the engine process is gone
            self.loop.remove_reader(self.events.fileno())
            self._died()
            return
        buffer = self.buffer
        buffer += data
        at = 0
        while len(buffer) - at >= _HEADER.size:
            size = _HEADER.unpack_from(buffer, at)[0]
            if len(buffer) - at - _HEADER.size < size:
                break
            at += _HEADER.size
            self._handle(pickle.loads(buffer[at : at + size]))
            at += size
        del buffer[:at]

    def _handle(self, message: tuple) -> None:
        if message[0] == "events":
            jobs = self.jobs
            for key, event in message[1]:
                job = jobs.get(key)
                if job is None:  # cancelled meanwhile
                    continue
                tag = event[0]
                if tag == "c":
                    job.emit(Chunk(*event[1:]))
                elif tag == "s":
                    job.prompt_scores = event[1]
                else:
                    del jobs[key]
                    job.emit(None if tag == "e" else event[1])
        elif message[0] == "ready":
            self.ready.set()
        elif message[0] == "failed":
            self.failed = message[1]
            if self.on_error:
                self.on_error(self.failed)

    def _died(self) -> None:
        if self.stopping.is_set() or self.failed is not None:
            return
        self.process.join(timeout=2)
        code = self.process.exitcode
        self.failed = EngineDied(f"the engine process (pid {self.process.pid}) exited with code {code}" if code is not None else f"the engine process (pid {self.process.pid}) closed its pipe")
        jobs, self.jobs = list(self.jobs.values()), {}
        for job in jobs:
            job.emit(_unavailable(self.failed))
        if self.on_death:
            self.on_death(self.failed)


_HEADER = struct.Struct("!I")  # each message on the events pipe: its length, then its pickle


def _write(connection, message: tuple) -> None:
    """One message to the server, framed by hand: the server reads every waiting message in one
    ``os.read`` (``Engine._readable``), where ``Connection.recv`` costs two reads a message."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(connection.fileno(), view) :]


def _unavailable(reason: BaseException):
    from lmforge.plugins.deploy import _protocol as P

    return P.engine_down(str(reason))


def _main(commands, events, run_dir: str, checkpoint: Optional[str], device: str, max_batch: int) -> None:
    """The engine process: the scheduler on a thread, this thread reading commands."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the server stops us
    from lmforge.plugins.deploy._scheduler import Scheduler, wait_ready

    jobs: dict[int, Job] = {}
    step: list = []  # (id, event) emitted since the last send

    def load():
        from lmforge.plugins.deploy._generation import resolve_device
        from lmforge.runs import Run

        run = Run.open(run_dir)
        return run.model(checkpoint, device=resolve_device(device)), run.tokenizer

    def emitter(key: int, job: Job):
        def emit(event) -> None:
            if job.prompt_logprobs and job.prompt_scores is not None:
                step.append((key, ("s", job.prompt_scores)))
                job.prompt_scores = None  # sent once
            if event is None:
                jobs.pop(key, None)
                step.append((key, ("e",)))
            elif isinstance(event, BaseException):
                jobs.pop(key, None)
                step.append((key, ("x", _portable(event))))
            else:
                step.append((key, ("c", event.row, event.text, event.token_id, event.logprob, event.top_logprobs, event.finish_reason)))

        return emit

    def flush() -> None:
        if step:
            batch = step[:]
            step.clear()
            try:
                _write(events, ("events", batch))
            except OSError:  # the server's process is gone: stop quietly
                scheduler.stopping.set()

    def failed(exc: BaseException) -> None:
        _write(events, ("failed", _portable(exc)))

    scheduler = Scheduler(load, max_batch=max_batch, on_error=failed, on_step=flush).start()
    if not wait_ready(scheduler, float("inf")):
        scheduler.thread.join()  # until ``failed`` has sent its message
        return
    _write(events, ("ready",))
    try:
        while True:
            command = commands.recv()
            if command[0] == "submit":
                key, fields = command[1], command[2]
                job = Job(emit=None, **fields)
                job.emit = emitter(key, job)
                jobs[key] = job
                scheduler.submit(job)
            elif command[0] == "cancel":
                job = jobs.pop(command[1], None)
                if job is not None:
                    job.cancel()
            else:
                break
    except (EOFError, OSError):  # the server's process is gone
        pass
    scheduler.stop()
