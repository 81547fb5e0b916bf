"""What ``lmforge generate`` and ``lmforge chat`` share (and a server will): the sampling
flags, and a run opened for generation, which reads text the way the run read its corpus.

Imports torch through ``lmforge.engine.generate``: the commands import this module when
they run, never at discovery.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lmforge.engine.sampling import Sampling
from lmforge.errors import ConfigError, DataError, LmforgeError
from lmforge.runs import Run

if TYPE_CHECKING:
    import torch


def add_sampling_flags(parser: argparse.ArgumentParser, *, top_k_default: bool = True) -> None:
    """The sampling flags with ``Sampling``'s defaults, plus ``--checkpoint`` and ``--device``."""
    d = Sampling()
    parser.add_argument("--max-tokens", type=int, default=d.max_tokens, help=f"new tokens at most (default {d.max_tokens})")
    parser.add_argument("--temperature", type=float, default=d.temperature, help=f"0 is greedy (default {d.temperature})")
    parser.add_argument("--top-k", type=int, default=d.top_k if top_k_default else None, help=f"sample among the k likeliest tokens, 0 for all (default {d.top_k})")
    parser.add_argument("--top-p", type=float, default=d.top_p, help=f"nucleus sampling: the likeliest tokens holding this mass (default {d.top_p}, off)")
    parser.add_argument("--repetition-penalty", type=float, default=d.repetition_penalty, help=f"above 1 discourages repeats (default {d.repetition_penalty}, off)")
    parser.add_argument("--stop", action="append", default=[], metavar="SEQ", help="end before this text, which is not printed (repeatable)")
    parser.add_argument("--seed", type=int, help="the same seed gives the same text (default: a fresh one each time)")
    parser.add_argument("--checkpoint", help="a .ckpt file of the run (default: the one given as <run dir>, else checkpoints/last.ckpt)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps... (default auto: cuda when there is one, else cpu)")


def sampling_from(args: argparse.Namespace, **override) -> Sampling:
    values = dict(
        max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k if args.top_k is not None else Sampling.top_k,
        top_p=args.top_p, repetition_penalty=args.repetition_penalty, stop=tuple(args.stop), seed=args.seed,
    )
    return Sampling(**(values | override))


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise ConfigError(f"--device {device}: not usable here ({str(exc).splitlines()[0]}); pass --device cpu") from None
    return device


@dataclass
class Opened:
    """A run's model and tokenizer, loaded for generation."""

    run: Run
    model: "torch.nn.Module"

    @property
    def tokenizer(self):
        return self.run.tokenizer

    @property
    def context(self) -> int:
        """The model's context window: ``data.seq_len``, prompt and reply together."""
        return self.run.spec.data.seq_len

    @property
    def masked(self) -> bool:
        return self.run.spec.model.entry.cls.objective == "masked"

    def encode_masked(self, text: str, flag: str) -> list[int]:
        """``text`` with the tokenizer's mask token where words are missing, as ids: the text
        around each mask through the run's steps and tokenizer, each mask kept as the mask id.
        ``flag`` (``--fill-mask``, ``--text``) names the input in errors."""
        tokenizer = self.tokenizer
        mask = tokenizer.special_ids.get("mask")
        if mask is None:
            raise DataError(f"the run's tokenizer ({self.run.spec.tokenizer.name}) has no mask token: it cannot fill masks")
        token = tokenizer.decode([mask])
        pieces = text.split(token)
        if len(pieces) < 2:
            raise DataError(f'{flag} {text!r} has no {token}: write {token} where a word is missing, e.g. {flag} "the {token} sat"')
        ids: list[int] = []
        for i, piece in enumerate(pieces):  # the text around the masks goes through the run's steps; the masks stay
            if piece.strip():
                ids += tokenizer.encode_batch([self.clean(piece, "the text around a mask")])[0]
            if i < len(pieces) - 1:
                ids.append(mask)
        return ids

    def clean(self, text: str, what: str = "the prompt") -> str:
        """``text`` through the run's preprocessing steps. A step that drops it (a quality
        filter meant for documents) is reported on stderr, and the text is kept as typed."""
        if not text.strip():
            raise DataError(f"{what} is empty: give some text to continue")
        docs, dropped = self.run.preprocess([text], source="prompt")
        if not docs:
            reasons = ", ".join(k for k in dropped) or "no reason given"
            print(f"lmforge: note: the run's preprocessing drops {what} ({reasons}); it is used as typed", file=sys.stderr)
            return text
        cleaned = "".join(d.text for d in docs)
        # A prompt is not a whole document: it keeps the end it was typed with ("def " goes on
        # after the space), where a step trims a document's trailing space or closes its line
        cleaned = cleaned.rstrip() + text[len(text.rstrip()):]
        if not cleaned.strip():
            raise DataError(f"{what} is empty after the run's preprocessing steps: give some other text")
        return cleaned

    def encode(self, text: str, what: str = "the prompt") -> list[int]:
        """Token ids of already cleaned ``text``; too long for the context is an error naming it."""
        ids = self.tokenizer.encode_batch([text])[0]
        if not ids:
            raise DataError(f"{what} gives no tokens: give some other text")
        if len(ids) >= self.context:
            raise DataError(
                f"{what} is {len(ids)} tokens long, but the run's context is data.seq_len={self.context} tokens, prompt "
                f"and reply together: shorten it to under {self.context} tokens"
            )
        return ids


def open_run(run_dir: Path | str, checkpoint: str | None, device: str, *, command: str) -> Opened:
    """The run at ``run_dir`` with its model loaded; a masked LM is refused for ``generate``
    and ``chat`` (``command``) with the commands that do use it."""
    run = Run.open(run_dir)
    run.checkpoint(checkpoint)  # a missing checkpoint fails before torch loads the model
    opened = Opened(run, None)
    if opened.masked and command != "fill-mask":
        raise LmforgeError(
            f"{run.dir} trains model={run.spec.model.name}, a masked LM: it fills in blanks and does not generate text, so "
            f"`lmforge {command}` cannot use it. Use `lmforge generate {run.dir} --fill-mask \"text with [MASK]\"` for the "
            f"likeliest fillers of each mask, or `lmforge explain {run.dir}` to see what it attends to"
        )
    if command == "fill-mask" and not opened.masked:
        raise ConfigError(
            f"--fill-mask needs a masked LM (model=bert), but {run.dir} trains model={run.spec.model.name}, which "
            f"generates: drop --fill-mask and pass --prompt"
        )
    opened.model = run.model(checkpoint, device=resolve_device(device))
    return opened


def replace(sampling: Sampling, **changes) -> Sampling:
    """``sampling`` with ``changes``, checked again."""
    return dataclasses.replace(sampling, **changes)
