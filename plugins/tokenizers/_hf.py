"""Shared plumbing for tokenizers backed by Hugging Face ``tokenizers``.

Subclasses build and train ``self.tok`` (a ``tokenizers.Tokenizer``); this base saves,
loads, encodes and decodes it. ``tokenizers`` is imported on first use, not at discovery.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.contracts import Tokenizer


class HFTokenizer(Tokenizer):
    tok: Any = None  # tokenizers.Tokenizer once trained or loaded

    def _ready(self):
        if self.tok is None:
            raise RuntimeError(f"tokenizer {self.name!r} is neither trained nor loaded")
        return self.tok

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
