"""Text generation for any model that meets the architecture contract: one place for
the samples at the end of training, ``lmforge generate``, ``lmforge chat`` and a server.

- ``Sampling``: the settings of one request, checked, each error naming its flag;
- ``stream(model, tokenizer, prompts, sampling)``: decode several prompts as one batch
  and yield a ``Chunk`` per row and step: the new text in whole characters, the token,
  its log-probability and the likeliest alternatives', and on a row's last chunk its
  ``finish_reason``;
- ``complete(...)``: the same, collected into one ``Completion`` per prompt;
- ``generate(model, idx, max_new_tokens, ...)``: the tensor-level loop the training
  samples and the benchmarks use.

Batching: a model with ``supports_padding`` decodes prompts of different lengths as one
left-padded batch, with a key mask and per-row positions, and ``stream`` gives each row
exactly the tokens it gives alone (greedy). A model without it (the rnn, whose state
would run through the padding) decodes each group of prompts of one length as a batch,
one group after the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from lmforge.engine.sampling import Sampling  # noqa: F401  (public here too, as before)
from lmforge.errors import DataError

__all__ = ["Chunk", "Completion", "Sampling", "complete", "generate", "samples", "stream"]

@dataclass
class Chunk:
    """One step of one row: what ``stream`` yields."""

    row: int  # the prompt's index
    text: str  # new text, whole UTF-8 characters; "" while bytes or a possible stop sequence are held back
    token_id: int  # the token sampled at this step (the eos token on a row that ends with it)
    logprob: float  # its log-probability under the model (before temperature, penalty and filtering)
    top_logprobs: list[tuple[int, float]]  # the Sampling.logprobs likeliest tokens and theirs, best first
    finish_reason: str | None  # None while the row goes on; "stop" (eos or a stop sequence) or "length"


@dataclass
class Completion:
    """One prompt's whole reply, as ``complete`` returns it."""

    text: str
    finish_reason: str
    prompt_tokens: int
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)


class _Text:
    """A row's reply as text, released in whole characters and never into a stop sequence.

    The tokens are decoded together with the prompt's last few, since some tokenizers'
    decode depends on the token before (a word-piece's leading space); bytes of a
    character split across tokens decode to U+FFFD and are held until it completes.
    """

    CONTEXT = 4

    def __init__(self, tokenizer, prompt: list[int], stop: tuple[str, ...]):
        self.tokenizer = tokenizer
        self.prefix = prompt[-self.CONTEXT :]
        self.prefix_text = tokenizer.decode(self.prefix)
        self.stop = stop
        self.ids: list[int] = []
        self.sent = 0  # characters released so far

    def _decoded(self) -> str:
        full = self.tokenizer.decode(self.prefix + self.ids)
        return full[len(self.prefix_text) :] if full.startswith(self.prefix_text) else self.tokenizer.decode(self.ids)

    def add(self, token_id: int) -> tuple[str, bool]:
        """The text that became final with ``token_id``, and whether a stop sequence ended the row."""
        self.ids.append(token_id)
        text = self._decoded()
        if self.stop:
            start = max(0, self.sent - max(map(len, self.stop)) + 1)
            found = [i for i in (text.find(s, start) for s in self.stop) if i >= 0]
            if found:
                return self._release(text, min(found)), True
        end = len(text.rstrip("\ufffd"))  # an incomplete character: wait for its next bytes
        for s in self.stop:  # a tail that may begin a stop sequence: wait for the next tokens
            for k in range(min(len(s) - 1, end), 0, -1):
                if text[:end].endswith(s[:k]):
                    end -= k
                    break
        return self._release(text, end), False

    def flush(self) -> str:
        """Everything not yet released, at the row's end."""
        return self._release(self._decoded(), None)

    def _release(self, text: str, end: int | None) -> str:
        end = len(text) if end is None else max(end, self.sent)
        new, self.sent = text[self.sent : end], end
        return new


def _pick(logits, *, temperature, top_k=None, top_p=1.0, penalty=1.0, seen=None, generator=None):
    """The next token of each row from its logits (B, V) in float32: (B,) ids."""
    if seen is not None and penalty != 1.0:  # CTRL's penalty: shrink a seen token's logit, whatever its sign
        logits = torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        probs = F.softmax(ordered, dim=-1)
        beyond = probs.cumsum(dim=-1) - probs > top_p  # the likeliest token always stays
        logits = logits.scatter(-1, order, ordered.masked_fill(beyond, float("-inf")))
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)[:, 0]


def _check_prompts(prompts: Sequence[Sequence[int]], max_seq_len: int | None) -> list[list[int]]:
    prompts = [list(p) for p in prompts]
    if not prompts:
        raise DataError("no prompt to continue: pass at least one")
    for i, p in enumerate(prompts):
        if not p:
            raise DataError(f"prompt {i + 1} is empty (no tokens): give it some text")
        if max_seq_len is not None and len(p) >= max_seq_len:
            raise DataError(
                f"prompt {i + 1} has {len(p)} tokens, but the model's context (data.seq_len) is {max_seq_len} "
                f"and leaves no room for a new token: shorten it to under {max_seq_len} tokens"
            )
    return prompts


def stream(model, tokenizer, prompts: Sequence[Sequence[int]], sampling: Sampling | None = None, *, stop_at_eos: bool = True) -> Iterator[Chunk]:
    """Continue each prompt (token ids) and yield, step by step, a ``Chunk`` per unfinished row.

    Rows of one batch advance together; a row's last chunk carries its ``finish_reason``.
    A row ends at the tokenizer's eos token (unless ``stop_at_eos`` is False), at a stop
    sequence, after ``max_tokens``, or when its context reaches ``model.max_seq_len``.
    The model is in eval mode while the stream runs and back in its own mode after.
    Closing the stream early (a client gone, Ctrl-C) stops the decoding.
    """
    sampling = sampling or Sampling()
    prompts = _check_prompts(prompts, getattr(model, "max_seq_len", None))
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    if sampling.seed is None:
        generator.seed()
    else:
        generator.manual_seed(sampling.seed)
    eos = tokenizer.special_ids.get("eos") if stop_at_eos else None
    if getattr(model, "supports_padding", False):
        groups = [list(range(len(prompts)))]
    else:  # rows of one length need no padding
        by_length: dict[int, list[int]] = {}
        for i, p in enumerate(prompts):
            by_length.setdefault(len(p), []).append(i)
        groups = list(by_length.values())
    was_training = model.training
    model.eval()
    try:
        for rows in groups:
            yield from _decode(model, tokenizer, rows, [prompts[i] for i in rows], sampling, eos, generator)
    finally:
        model.train(was_training)


@torch.no_grad()
def _decode(model, tokenizer, rows, prompts, s: Sampling, eos, generator) -> Iterator[Chunk]:
    B, L = len(prompts), max(map(len, prompts))
    device = next(model.parameters()).device
    total = L + s.max_tokens
    if getattr(model, "max_seq_len", None) is not None:
        total = min(total, model.max_seq_len)
    # left padding: every row's last prompt token sits at column L - 1
    pads = torch.tensor([L - len(p) for p in prompts], device=device)  # (B,)
    idx = torch.full((B, total), 0 if eos is None else eos, dtype=torch.long, device=device)
    for b, p in enumerate(prompts):
        idx[b, L - len(p) : L] = torch.tensor(p, dtype=torch.long, device=device)
    columns = torch.arange(total, device=device)[None, :]
    key_mask = columns >= pads[:, None]  # (B, total): False at padding
    positions = (columns - pads[:, None]).clamp(min=0)  # (B, total): counted from each row's first token
    padded = bool(pads.any())
    cache = model.init_cache(B, total) if getattr(model, "supports_cache", False) else None
    seen = None  # (B, V): tokens in each row so far, for the repetition penalty
    texts = [_Text(tokenizer, p, s.stop) for p in prompts]
    active = [True] * B
    cur, step = L, 0
    while True:
        start = cache.pos if cache is not None else 0
        extra = dict(key_mask=key_mask[:, :cur], positions=positions[:, start:cur]) if padded else {}
        logits = model(idx[:, start:cur], cache=cache, **extra).logits[:, -1].float()  # (B, V)
        if s.repetition_penalty != 1.0 and seen is None:
            seen = torch.zeros_like(logits, dtype=torch.bool)
            for b, p in enumerate(prompts):
                seen[b, p] = True
        logprobs = F.log_softmax(logits, dim=-1)
        next_id = _pick(
            logits, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, penalty=s.repetition_penalty,
            seen=seen, generator=generator,
        )  # (B,)
        idx[:, cur] = next_id
        if seen is not None:
            seen[torch.arange(B, device=device), next_id] = True
        cur, step = cur + 1, step + 1
        chosen = logprobs.gather(1, next_id[:, None])[:, 0].tolist()
        top = logprobs.topk(s.logprobs, dim=-1) if s.logprobs else None
        top_ids, top_lps = (top.indices.tolist(), top.values.tolist()) if top is not None else (None, None)
        for b, token in enumerate(next_id.tolist()):
            if not active[b]:
                continue
            if token == eos:
                text, reason = texts[b].flush(), "stop"
            else:
                text, stopped = texts[b].add(token)
                reason = "stop" if stopped else "length" if step == s.max_tokens or cur == total else None
                if reason == "length":
                    text += texts[b].flush()
            active[b] = reason is None
            alternatives = list(zip(top_ids[b], top_lps[b])) if top is not None else []
            yield Chunk(rows[b], text, token, chosen[b], alternatives, reason)
        if not any(active):
            return


def complete(model, tokenizer, prompts: Sequence[Sequence[int]], sampling: Sampling | None = None, *, stop_at_eos: bool = True) -> list[Completion]:
    """``stream`` collected: one ``Completion`` per prompt, in the prompts' order."""
    done = [Completion("", "", len(p)) for p in prompts]
    for chunk in stream(model, tokenizer, prompts, sampling, stop_at_eos=stop_at_eos):
        c = done[chunk.row]
        c.text += chunk.text
        c.token_ids.append(chunk.token_id)
        c.logprobs.append(chunk.logprob)
        c.top_logprobs.append(chunk.top_logprobs)
        c.finish_reason = chunk.finish_reason or ""
    return done


@torch.no_grad()
def generate(model, idx, max_new_tokens, *, temperature=1.0, top_k=None, eos_id=None, generator=None):
    """Extend ``idx`` (B, T) by up to ``max_new_tokens`` sampled tokens; returns (B, T + new).

    Uses the model's KV cache when it has one, else recomputes on the context cropped to
    ``model.max_seq_len``; once the cache is full it falls back to the same cropping.
    ``temperature=0`` is greedy. A row that produced ``eos_id`` is padded with it, and
    generation stops once every row has.
    """
    idx = idx.long()
    was_training = model.training
    model.eval()
    try:
        max_len = getattr(model, "max_seq_len", None)
        cache = None
        if getattr(model, "supports_cache", False) and max_new_tokens > 0:
            total = idx.size(1) + max_new_tokens
            cache = model.init_cache(idx.size(0), total if max_len is None else min(total, max_len))
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            if cache is not None and idx.size(1) <= cache.max_len:
                # first step prefills the prompt, later steps feed the one token not yet cached
                logits = model(idx[:, cache.pos :], cache=cache).logits
            else:
                cache = None
                context = idx if max_len is None else idx[:, -max_len:]
                logits = model(context).logits
            logits = logits[:, -1, :].float()  # (B, V)

            next_id = _pick(logits, temperature=temperature, top_k=top_k, generator=generator)[:, None]  # (B, 1)
            if eos_id is not None:
                next_id = next_id.masked_fill(done[:, None], eos_id)
                done |= next_id[:, 0] == eos_id
            idx = torch.cat([idx, next_id.to(idx.dtype)], dim=1)
            if eos_id is not None and bool(done.all()):
                break
        return idx
    finally:
        model.train(was_training)


def samples(model, tokenizer, prompts: list[str], cfg, device) -> str:
    """Continue each prompt with the trained model; returns the texts, one block each."""
    eos = tokenizer.special_ids.get("eos")
    generator = torch.Generator(device=device).manual_seed(0)
    blocks = []
    for prompt in prompts:
        ids = tokenizer.encode_batch([prompt])[0] or ([eos] if eos is not None else [0])
        idx = torch.tensor([ids], dtype=torch.long, device=device)
        out = generate(model, idx, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k, eos_id=eos, generator=generator)
        blocks.append(f"=== prompt: {prompt!r}\n{tokenizer.decode(out[0].tolist())}\n")
    return "\n".join(blocks)
