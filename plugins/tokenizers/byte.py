"""``tokenizer=byte``: one token per UTF-8 byte, plus special tokens. Needs no training.

Byte ``b`` has id ``b``; the special tokens follow from 256. It is saved as a Hugging
Face byte-level BPE with no merges, so ``transformers`` loads it like any other
``tokenizer.json``, and every string round-trips exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict

from lmforge import hookimpl
from lmforge.plugins.tokenizers._hf import HFTokenizer, check_special_tokens


@dataclass
class ByteConfig:
    special_tokens: Dict[str, str] = field(default_factory=lambda: {"eos": "<|endoftext|>", "pad": "<|pad|>"})

    def __post_init__(self) -> None:
        check_special_tokens("byte", self.special_tokens, required=("eos", "pad"))


def byte_alphabet() -> list[str]:
    """The printable character GPT-2's byte-level scheme maps each byte to, indexed by byte.

    Bytes that are printable Latin-1 map to themselves; the rest are shifted to 256 and up.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(shifted)) for b in range(256)]


class Byte(HFTokenizer):
    name = "byte"
    Config = ByteConfig
    trainable = False

    def _ready(self):
        if self.tok is None:
            self.tok = self._build()
        return self.tok

    def _build(self):
        from tokenizers import Tokenizer as HFModel
        from tokenizers import decoders, models, pre_tokenizers

        alphabet = byte_alphabet()
        tok = HFModel(models.BPE({ch: b for b, ch in enumerate(alphabet)}, merges=[]))
        # no regex split: with no merges the pieces would not change the ids, only cost time
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens(self._special_list())
        return tok

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # The ids of a text without special-token strings are its UTF-8 bytes, which Python
        # computes far faster than the BPE machinery; texts that contain one go through the
        # Hugging Face tokenizer, which splits the special tokens out exactly as transformers does.
        specials = self._special_list()
        plain = [not any(s in t for s in specials) for t in texts]
        if all(plain):
            return [list(t.encode("utf-8")) for t in texts]
        slow = iter(super().encode_batch([t for t, p in zip(texts, plain) if not p]))
        return [list(t.encode("utf-8")) if p else next(slow) for t, p in zip(texts, plain)]


@hookimpl
def register_tokenizers(register):
    register(Byte)
