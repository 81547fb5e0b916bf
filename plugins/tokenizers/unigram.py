"""``tokenizer=unigram``: a SentencePiece-style unigram language model, trained with
Hugging Face tokenizers.

Spaces become ``▁`` and start each piece (the Metaspace pre-tokenizer), one ``▁`` is put
before the text, and the trainer keeps the pieces that best explain the corpus under a
unigram model (Kudo, 2018). Characters never seen in training become ``<unk>``, or with
``byte_fallback`` their UTF-8 bytes as ``<0x00>``..``<0xFF>`` pieces, as Llama's
SentencePiece models do. Decoding drops the space put before the text, so a text that
starts with a space loses it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, Iterator

from lmforge import hookimpl
from lmforge.plugins.tokenizers._hf import HFTokenizer, check_counts, check_special_tokens

BYTE_PIECES = [f"<0x{b:02X}>" for b in range(256)]
# Byte pieces sit in the model's vocabulary like any other piece; scoring them far below
# the rarest learned piece keeps them for unknown characters, never for the literal text "<0x41>"
BYTE_PENALTY = 1000.0


@dataclass
class UnigramConfig:
    vocab_size: int = 4096
    max_piece_length: int = 16
    shrinking_factor: float = 0.75
    n_sub_iterations: int = 2
    byte_fallback: bool = False
    special_tokens: Dict[str, str] = field(default_factory=lambda: {"unk": "<unk>", "eos": "</s>", "pad": "<pad>"})

    def __post_init__(self) -> None:
        check_special_tokens("unigram", self.special_tokens, required=("unk",))
        floor = len(self.special_tokens) + (256 if self.byte_fallback else 0) + 1
        if self.vocab_size < floor:
            with_bytes = " and the 256 byte pieces of byte_fallback" if self.byte_fallback else ""
            raise ValueError(f"vocab_size={self.vocab_size} leaves no room beside the special tokens{with_bytes}; use at least {floor}")
        check_counts(self, "max_piece_length", "n_sub_iterations")
        if not 0.0 < self.shrinking_factor < 1.0:
            raise ValueError(f"shrinking_factor={self.shrinking_factor}: must be above 0 and below 1; e.g. shrinking_factor=0.75")


class Unigram(HFTokenizer):
    name = "unigram"
    Config = UnigramConfig

    def train(self, texts: Iterator[str]) -> None:
        from tokenizers import Tokenizer as HFModel
        from tokenizers import decoders, models, pre_tokenizers, trainers

        c = self.config
        tok = HFModel(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        trainer = trainers.UnigramTrainer(
            vocab_size=c.vocab_size - (len(BYTE_PIECES) if c.byte_fallback else 0),
            special_tokens=self._special_list(),
            unk_token=c.special_tokens["unk"],
            max_piece_length=c.max_piece_length,
            shrinking_factor=c.shrinking_factor,
            n_sub_iterations=c.n_sub_iterations,
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        if c.byte_fallback:
            self._add_byte_pieces(tok)
        self.tok = tok

    def _add_byte_pieces(self, tok) -> None:
        """Append the 256 byte pieces to the trained vocabulary and switch byte fallback on."""
        from tokenizers import decoders, models

        model = json.loads(tok.to_str())["model"]
        vocab = [tuple(piece) for piece in model["vocab"]]
        known = {piece for piece, _ in vocab}
        floor = min(score for _, score in vocab) - BYTE_PENALTY
        vocab += [(piece, floor) for piece in BYTE_PIECES if piece not in known]
        tok.model = models.Unigram(vocab, unk_id=model["unk_id"], byte_fallback=True)
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), tok.decoder])


@hookimpl
def register_tokenizers(register):
    register(Unigram)
