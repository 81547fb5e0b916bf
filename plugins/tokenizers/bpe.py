"""``tokenizer=bpe``: byte-level BPE (GPT-2 style) trained with Hugging Face tokenizers.

Byte-level means every string round-trips, whatever its script, with no unknown token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator

from lmforge import hookimpl
from lmforge.plugins.tokenizers._hf import HFTokenizer, check_counts, check_special_tokens


@dataclass
class BPEConfig:
    vocab_size: int = 4096
    min_frequency: int = 2
    special_tokens: Dict[str, str] = field(default_factory=lambda: {"eos": "<|endoftext|>", "pad": "<|pad|>"})

    def __post_init__(self) -> None:
        check_special_tokens("bpe", self.special_tokens)
        floor = 256 + len(self.special_tokens)
        if self.vocab_size < floor:
            raise ValueError(f"vocab_size={self.vocab_size} is below the 256 bytes plus special tokens ({floor})")
        check_counts(self, "min_frequency")


class BPE(HFTokenizer):
    name = "bpe"
    Config = BPEConfig

    def train(self, texts: Iterator[str]) -> None:
        from tokenizers import Tokenizer as HFModel
        from tokenizers import decoders, models, pre_tokenizers, trainers

        tok = HFModel(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=self.config.vocab_size,
            min_frequency=self.config.min_frequency,
            special_tokens=self._special_list(),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        self.tok = tok


@hookimpl
def register_tokenizers(register):
    register(BPE)
