"""A task's examples as training windows: target-only labels, packing, overlong examples.

- ``encode``: each segment of an ``Example`` is tokenized on its own (so the prompt's
  ids are the ids a prompt gets at generation time) and the example ends with the eos
  token, a target when the last segment is, so the model learns where a reply stops.
  ``pairs`` shifts the ids into ``(inputs, targets)``: a target is the next token where
  that token belongs to a target segment, -100 elsewhere, so prompts carry no loss.
- ``pack``: the examples' pairs go into windows of ``seq_len`` positions, whole (an
  example is never split across windows), first fit in a seeded order; the rest of a
  window is padding with target -100. ``packing=False`` puts one example in each window.
  Every window records the example each position belongs to (``documents``: its index
  in the split, -1 at padding), what document-masked attention needs.
- An example longer than a window is cut under ``overlong=truncate``, or left out under
  ``drop``; both are counted. The cut drops the middle of the prompt (the tokens before
  the first target), as summarization systems drop a document's end rather than its
  beginning: ``keep_ends`` keeps the prompt's head (where a function's ``def`` line or
  an article's lead is) and its last quarter (the template's cue, ``\nSummary: ``, or a
  chat's last turn and role tokens), and the target stays whole, eos included. Only a
  target too long for half the window is cut too, at its end (the prompt keeping the
  other half), so the model still sees how the reply starts. Generation cuts a prompt
  the same way (``keep_ends``, in ``decode`` and ``lmforge.task_eval.prompt_ids``), so
  that a model sees at decoding time what it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lmforge.tasks import keep_ends

IGNORE = -100  # cross_entropy's ignore_index


@dataclass
class Encoded:
    """One example's token ids and which of them are targets."""

    ids: list[int]
    target: list[bool]


@dataclass
class Packed:
    """A split's windows: ``inputs``, ``targets`` and ``documents``, each (N, seq_len)."""

    inputs: np.ndarray
    targets: np.ndarray
    documents: np.ndarray  # the example (index into the split) at each position; -1 at padding
    counts: dict = field(default_factory=dict)  # examples, truncated, dropped, windows, target and padding positions

    @property
    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        return self.inputs, self.targets


def encode(examples, tokenizer, eos: int | None) -> list[Encoded]:
    """Every example's ids, segment by segment, one ``encode_batch`` call for all segments."""
    texts = [s.text for ex in examples for s in ex.segments]
    ids = iter(tokenizer.encode_batch(texts))
    found = []
    for ex in examples:
        tokens, target = [], []
        for segment in ex.segments:
            piece = next(ids)
            tokens += piece
            target += [segment.target] * len(piece)
        if eos is not None and ex.segments:
            tokens.append(eos)
            target.append(ex.segments[-1].target)
        found.append(Encoded(tokens, target))
    return found


def pairs(ids: list[int], target: list[bool]) -> tuple[list[int], list[int]]:
    """``(inputs, targets)`` of one example: position i predicts token i+1 when it is a target."""
    return ids[:-1], [t if is_target else IGNORE for t, is_target in zip(ids[1:], target[1:])]


def fit_length(example: Encoded, seq_len: int, overlong: str) -> Encoded | None:
    """The example in ``seq_len + 1`` tokens, or None to drop it; see the module docstring."""
    size = seq_len + 1
    if len(example.ids) <= size:
        return example
    if overlong == "drop":
        return None
    start = next((i for i, t in enumerate(example.target) if t), len(example.ids))  # the prompt is ids[:start]
    rest = len(example.ids) - start  # the target, and any turns after it
    keep = max(size - rest, min(start, size // 2))  # the prompt's share: all the room the rest leaves, at least half
    prompt = keep_ends(list(range(start)), keep)
    positions = prompt + list(range(start, start + size - len(prompt)))
    return Encoded([example.ids[i] for i in positions], [example.target[i] for i in positions])


def pack(encoded: list[Encoded], seq_len: int, *, pad_id: int, packing: bool, overlong: str, seed: int) -> Packed:
    """Windows of ``seq_len`` positions from ``encoded``; see the module docstring."""
    counts = {"examples": len(encoded), "truncated": 0, "dropped": 0, "no_target": 0}
    items: list[tuple[int, list[int], list[int]]] = []
    for index, example in enumerate(encoded):
        fitted = fit_length(example, seq_len, overlong)
        if fitted is None:
            counts["dropped"] += 1
            continue
        counts["truncated"] += fitted is not example
        inputs, targets = pairs(fitted.ids, fitted.target)
        if not inputs or all(t == IGNORE for t in targets):
            counts["no_target"] += 1  # nothing to learn from (a cut that left only prompt)
            continue
        items.append((index, inputs, targets))
    order = np.random.default_rng(seed).permutation(len(items)) if packing else range(len(items))
    windows: list[list[tuple[int, list[int], list[int]]]] = []
    free: list[int] = []  # positions left in each window
    for k in order:
        item = items[k]
        size = len(item[1])
        slot = next((w for w, left in enumerate(free) if left >= size), None) if packing else None
        if slot is None:
            windows.append([])
            free.append(seq_len)
            slot = len(windows) - 1
        windows[slot].append(item)
        free[slot] -= size
    n = len(windows)
    inputs = np.full((n, seq_len), pad_id, dtype=np.int32)
    targets = np.full((n, seq_len), IGNORE, dtype=np.int32)
    documents = np.full((n, seq_len), -1, dtype=np.int32)
    for w, members in enumerate(windows):
        at = 0
        for index, x, y in members:
            inputs[w, at : at + len(x)], targets[w, at : at + len(y)], documents[w, at : at + len(x)] = x, y, index
            at += len(x)
    counts.update(windows=n, target_positions=int((targets != IGNORE).sum()), padding_positions=int((documents < 0).sum()))
    return Packed(inputs, targets, documents, counts)
