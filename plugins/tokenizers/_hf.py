"""Shared plumbing for tokenizers backed by Hugging Face ``tokenizers``.

Subclasses build and train ``self.tok`` (a ``tokenizers.Tokenizer``); this base saves,
loads, encodes and decodes it. ``tokenizers`` is imported on first use, not at discovery.

Every kind encodes with ``add_special_tokens=False`` and saves no post-processor: the
tokenize stage appends the document separator itself, so the saved ``tokenizer.json``
gives the same ids in ``transformers.PreTrainedTokenizerFast`` with
``add_special_tokens=False``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable

from lmforge.contracts import Tokenizer


def check_special_tokens(kind: str, special_tokens: dict[str, str], required: Iterable[str] = ()) -> None:
    """Refuse a ``special_tokens`` mapping that lacks a role the model needs or reuses a token."""
    missing = [role for role in required if not special_tokens.get(role)]
    if missing:
        roles = ", ".join(repr(r) for r in missing)
        raise ValueError(
            f"tokenizer={kind}: special_tokens has no token for the role(s) {roles}; "
            f"add one, as tokenizer.special_tokens.{missing[0]}=..."
        )
    for role, token in special_tokens.items():
        if not token:
            raise ValueError(f"special_tokens.{role}='': a special token must be a non-empty string; e.g. special_tokens.{role}=<{role}>")
    tokens = list(special_tokens.values())
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"tokenizer={kind}: special_tokens gives the same token to two roles: {special_tokens}")


def check_counts(config: Any, *keys: str) -> None:
    """Each of ``keys`` must be at least 1; the message suggests the field's default."""
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    for key in keys:
        if (value := getattr(config, key)) < 1:
            raise ValueError(f"{key}={value}: must be at least 1; e.g. {key}={defaults[key]}")


class HFTokenizer(Tokenizer):
    tok: Any = None  # tokenizers.Tokenizer once trained or loaded

    def _ready(self):
        if self.tok is None:
            raise RuntimeError(f"tokenizer {self.name!r} is neither trained nor loaded")
        return self.tok

    def _special_list(self) -> list[str]:
        """The special tokens in config order: trainers give them the first ids in this order."""
        return list(self.config.special_tokens.values())

    def save(self, path: Path) -> None:
        # tokenizers writes in place; write beside the target and rename so a crash leaves no half file
        tmp = Path(path).with_name(Path(path).name + ".tmp")
        self._ready().save(str(tmp))
        tmp.replace(path)

    def load(self, path: Path) -> None:
        from tokenizers import Tokenizer as HFModel

        self.tok = HFModel.from_file(str(path))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        tok = self._ready()
        fast = getattr(tok, "encode_batch_fast", None)  # skips offset tracking (tokenizers >= 0.21)
        encodings = (fast or tok.encode_batch)(texts, add_special_tokens=False)
        return [e.ids for e in encodings]

    def decode(self, ids: list[int]) -> str:
        return self._ready().decode(list(ids), skip_special_tokens=False)

    @property
    def vocab_size(self) -> int:
        return self._ready().get_vocab_size(with_added_tokens=True)

    @property
    def special_ids(self) -> dict[str, int]:
        tok = self._ready()
        ids = {role: tok.token_to_id(token) for role, token in self.config.special_tokens.items()}
        return {role: i for role, i in ids.items() if i is not None}
