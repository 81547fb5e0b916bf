"""Continuous batching for ``lmforge serve``: one thread owns the model and decodes every
request in flight as one batch. It runs in the server's engine process (``_engine.py``).

The loop, once per decode step:

1. **Admit.** New jobs are prefilled alone (batch 1, their own cache); the prompt's
   logits give the first token at once, so a request's first token never waits for the
   others to finish. The prompt's keys and values then join the **batched cache**: every
   row is right-aligned at the cache position, shorter rows left-padded, and a row that
   is longer than the cache so far shifts the others right (a re-pack).
2. **Decode.** One forward over the batch feeds each row's last sampled token, with a
   key mask hiding each row's padding and per-row positions (the transformer's
   ``supports_padding``). Each row samples from its logits with its own settings and
   seeded generator, so a row's text does not depend on its neighbours.
3. **Leave.** Rows that finished, and rows whose client left or whose deadline passed
   (``Job.cancel``), drop out of the batch; when the cache is full, the padding columns
   every row shares are cut off the left (a compaction).

A model without ``supports_padding`` or without a cache of ``k``/``v`` tensors (the rnn,
whose state would run through padding) keeps one cache per row and decodes the rows one
after the other within each step: still no request waits for another to finish.

Events reach the request through ``Job.emit``, called on this thread; ``on_step`` is
called after each prefill and decode step, so that the engine process sends the events
of one step together.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F

from lmforge.engine.generate import Chunk, _pick, _Text

if TYPE_CHECKING:
    from lmforge.plugins.deploy._engine import Job  # a request, as the server makes it and the engine process copies it


class _Row:
    def __init__(self, job: Job, choice: int, text: _Text, generator: torch.Generator, limit: int):
        self.job, self.choice, self.text, self.generator = job, choice, text, generator
        self.limit = limit  # new tokens at most: max_tokens, or the room left in the context
        self.count = 0  # tokens sampled
        self.pending = -1  # sampled, not yet fed to the model
        self.cache = None  # per-row cache (the fallback path)
        self.ids = list(job.prompt)  # the fallback without any cache recomputes over these


class Scheduler:
    """The thread that owns the model. ``submit`` a Job; ``ready`` is set once the model loaded."""

    def __init__(self, load: Callable[[], tuple], *, max_batch: int = 64, on_error: Callable[[BaseException], None] | None = None,
                 on_step: Callable[[], None] | None = None):
        self.load, self.max_batch, self.on_error = load, max_batch, on_error
        self.on_step = on_step or (lambda: None)  # called after each prefill and decode step: the events emitted since go out together
        self.inbox: "queue.Queue[Job]" = queue.Queue()
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self.stopping = threading.Event()
        self.rows: list[_Row] = []
        self.cache = None  # the batched cache (k, v lists of (B, H, S, D)) when batching
        self.pads: list[int] = []  # left padding of each row of ``cache``
        self.steps = 0  # decode steps run, and rows they fed: the batching shows in their ratio
        self.fed = 0
        self.thread = threading.Thread(target=self._run, name="lmforge-scheduler", daemon=True)

    def start(self) -> "Scheduler":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)

    def submit(self, job: Job) -> None:
        self.inbox.put(job)

    # the thread

    def _run(self) -> None:
        try:
            self.model, self.tokenizer = self.load()
            self.model.eval()
            self.device = next(self.model.parameters()).device
            self.context = getattr(self.model, "max_seq_len", None) or 10**9
            self.eos = self.tokenizer.special_ids.get("eos")
            probe = self.model.init_cache(1, 1) if getattr(self.model, "supports_cache", False) else None
            self.batching = bool(getattr(self.model, "supports_padding", False)) and hasattr(probe, "k") and hasattr(probe, "v")
        except BaseException as exc:  # noqa: BLE001  the server reports it and exits
            self.failed = exc
            if self.on_error:
                self.on_error(exc)
            return
        self.ready.set()
        with torch.no_grad():
            while not self.stopping.is_set():
                self._admit(block=not self.rows)
                self._leave([r for r in self.rows if r.job.cancelled.is_set()])
                self.on_step()
                if self.rows:
                    try:
                        self._step()
                    except Exception as exc:  # noqa: BLE001  fail the requests in the batch, keep serving
                        for job in {id(r.job): r.job for r in self.rows}.values():
                            job.emit(exc)
                        self.rows, self.cache, self.pads = [], None, []
                    self.on_step()

    def _admit(self, block: bool) -> None:
        """Prefill every job waiting (up to ``max_batch`` rows), then re-pack the batch once."""
        joining = []
        while len(self.rows) + sum(len(rows) for _, _, rows in joining) < self.max_batch:
            try:
                job = self.inbox.get(timeout=0.05) if block else self.inbox.get_nowait()
            except queue.Empty:
                break
            block = False
            if job.cancelled.is_set():
                continue
            try:
                prefilled = self._prefill(job)
            except Exception as exc:  # noqa: BLE001  one bad request must not stop the server
                job.emit(exc)
                prefilled = None
            self.on_step()  # this job's first token goes out now, not after every other prefill
            if prefilled is not None:
                joining.append(prefilled)
        if joining:
            if self.batching:
                self._join(joining)
            for _, _, rows in joining:
                self.rows += rows

    def _prefill(self, job: Job):
        """The job's first token for each choice; returns (cache, prompt length, live rows), or None when none is left."""
        model, p = self.model, len(job.prompt)
        ids = torch.tensor([job.prompt], dtype=torch.long, device=self.device)
        cache = model.init_cache(1, p) if getattr(model, "supports_cache", False) else None
        logits = model(ids, cache=cache).logits[0].float()  # (T, V)
        if job.prompt_logprobs:
            lps = F.log_softmax(logits[:-1], dim=-1)  # position t predicts token t + 1
            chosen = lps.gather(1, ids[0, 1:, None])[:, 0].tolist()
            top = lps.topk(job.logprobs, dim=-1) if job.logprobs else None
            job.prompt_scores = [(None, [])] + [
                (chosen[t], list(zip(top.indices[t].tolist(), top.values[t].tolist())) if top is not None else []) for t in range(p - 1)
            ]
        if job.max_tokens == 0:
            job.emit(None)
            return None
        limit = min(job.max_tokens, self.context - p)
        rows = []
        for choice in range(job.n):
            generator = torch.Generator(device=self.device)
            if job.seed is None:
                generator.seed()
            else:
                generator.manual_seed(job.seed + choice)
            row = _Row(job, choice, _Text(self.tokenizer, job.prompt, job.stop), generator, limit)
            if not self.batching and cache is not None:
                row.cache = model.init_cache(1, min(p + limit, self.context))
                model(ids, cache=row.cache)  # each row its own state; the prompt is short next to a reply
            rows.append(row)
        finished = self._sample(rows, logits[-1:].expand(len(rows), -1))
        live = [r for r in rows if r not in finished]
        job.live = len(live)
        if not live:
            job.emit(None)
            return None
        return cache, p, live

    def _join(self, joining: list) -> None:
        """Put the prefilled rows (each job's cache of p positions, copied to its n rows) into the batched cache."""
        old, pos = self.cache, self.cache.pos if self.cache is not None else 0
        new_pos = max([pos] + [p for _, p, _ in joining])
        B = len(self.pads)
        total = B + sum(len(rows) for _, _, rows in joining)
        joined = self.model.init_cache(total, self.context)
        pads = [pad + new_pos - pos for pad in self.pads]
        for layer in range(len(joined.k)):
            if old is not None:
                joined.k[layer][:B, :, new_pos - pos : new_pos] = old.k[layer][:, :, :pos]
                joined.v[layer][:B, :, new_pos - pos : new_pos] = old.v[layer][:, :, :pos]
            at = B
            for cache, p, rows in joining:
                joined.k[layer][at : at + len(rows), :, new_pos - p : new_pos] = cache.k[layer][:, :, :p]
                joined.v[layer][at : at + len(rows), :, new_pos - p : new_pos] = cache.v[layer][:, :, :p]
                at += len(rows)
        for _, p, rows in joining:
            pads += [new_pos - p] * len(rows)
        joined.pos, self.pads, self.cache = new_pos, pads, joined

    def _step(self) -> None:
        rows = self.rows
        if self.batching:
            if self.cache.pos + 1 > self.cache.max_len:
                self._compact()
            pos = self.cache.pos
            tokens = torch.tensor([[r.pending] for r in rows], dtype=torch.long, device=self.device)  # (B, 1)
            extra = {}
            if any(self.pads):
                pads = torch.tensor(self.pads, device=self.device)
                extra = dict(key_mask=torch.arange(pos + 1, device=self.device)[None, :] >= pads[:, None], positions=(pos - pads)[:, None])
            logits = self.model(tokens, cache=self.cache, **extra).logits[:, -1].float()  # (B, V)
        else:
            out = []
            for r in rows:
                if r.cache is not None:
                    out.append(self.model(torch.tensor([[r.pending]], device=self.device), cache=r.cache).logits[0, -1])
                else:
                    r.ids.append(r.pending)
                    out.append(self.model(torch.tensor([r.ids[-self.context :]], device=self.device)).logits[0, -1])
            logits = torch.stack(out).float()
        self.steps += 1
        self.fed += len(rows)
        self._leave(self._sample(rows, logits))

    def _sample(self, rows: list[_Row], logits: torch.Tensor) -> list[_Row]:
        """Pick each row's next token from its logits (B, V), emit it; returns the rows that finished."""
        logprobs = F.log_softmax(logits, dim=-1)
        tokens = logits.argmax(dim=-1)  # greedy rows, all at once; the others sample with their own generator
        for b, r in enumerate(rows):
            j = r.job
            if j.temperature != 0:
                tokens[b] = _pick(logits[b : b + 1], temperature=j.temperature, top_k=j.top_k, top_p=j.top_p, generator=r.generator)[0]
        chosen = logprobs.gather(1, tokens[:, None])[:, 0].tolist()
        k = max(r.job.logprobs for r in rows)
        top = logprobs.topk(k, dim=-1) if k else None
        top_ids, top_lps = (top.indices.tolist(), top.values.tolist()) if top is not None else (None, None)
        finished = []
        for b, (r, token) in enumerate(zip(rows, tokens.tolist())):
            j = r.job
            r.pending, r.count = token, r.count + 1
            if token == self.eos and j.stop_at_eos:
                text, reason = r.text.flush(), "stop"
            else:
                text, stopped = r.text.add(token)
                reason = "stop" if stopped else "length" if r.count >= r.limit else None
                if reason == "length":
                    text += r.text.flush()
            alternatives = list(zip(top_ids[b][: j.logprobs], top_lps[b][: j.logprobs])) if top is not None and j.logprobs else []
            if not j.cancelled.is_set():
                j.emit(Chunk(r.choice, text, token, chosen[b], alternatives, reason))
            if reason is not None:
                finished.append(r)
        return finished

    def _leave(self, gone: list[_Row]) -> None:
        if not gone:
            return
        keep = [i for i, r in enumerate(self.rows) if r not in gone]
        for r in gone:
            r.job.live -= 1
            if r.job.live == 0 and not r.job.cancelled.is_set():
                r.job.emit(None)
        if self.batching:
            if keep:
                index = torch.tensor(keep, device=self.device)
                for layer in range(len(self.cache.k)):
                    self.cache.k[layer] = self.cache.k[layer].index_select(0, index)
                    self.cache.v[layer] = self.cache.v[layer].index_select(0, index)
                self.cache.batch_size = len(keep)
                self.pads = [self.pads[i] for i in keep]
            else:
                self.cache, self.pads = None, []
        self.rows = [self.rows[i] for i in keep]

    def _compact(self) -> None:
        """Cut the padding columns every row shares off the left of the full cache."""
        cut, pos = min(self.pads), self.cache.pos
        for layer in range(len(self.cache.k)):
            for t in (self.cache.k, self.cache.v):
                t[layer][:, :, : pos - cut] = t[layer][:, :, cut:pos].clone()
        self.cache.pos = pos - cut
        self.pads = [pad - cut for pad in self.pads]


def wait_ready(scheduler: Scheduler, timeout: float) -> bool:
    """Whether the model loaded within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and scheduler.failed is None:
        if scheduler.ready.wait(0.1):
            return True
    return False
