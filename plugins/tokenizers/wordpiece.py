"""``tokenizer=wordpiece``: BERT-style WordPiece trained with Hugging Face tokenizers.

Text is cleaned, optionally lower-cased and stripped of accents by BERT's normalizer and
split on whitespace and punctuation by BERT's pre-tokenizer; words are then split into
the longest pieces of the vocabulary, continuation pieces carrying the ``##`` prefix.
Characters never seen in training become ``[UNK]``, and decoding does not restore case
or whitespace: it is an encoder's tokenizer, not a byte-exact one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, Optional

from lmforge import hookimpl
from lmforge.plugins.tokenizers._hf import HFTokenizer, check_counts, check_special_tokens


@dataclass
class WordPieceConfig:
    vocab_size: int = 4096
    min_frequency: int = 2
    lowercase: bool = True
    strip_accents: Optional[bool] = None
    clean_text: bool = True
    handle_chinese_chars: bool = True
    limit_alphabet: int = 1000
    continuing_subword_prefix: str = "##"
    special_tokens: Dict[str, str] = field(
        default_factory=lambda: {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
    )

    def __post_init__(self) -> None:
        check_special_tokens("wordpiece", self.special_tokens, required=("unk",))
        if self.vocab_size <= len(self.special_tokens):
            raise ValueError(f"vocab_size={self.vocab_size} leaves no room beside the {len(self.special_tokens)} special tokens")
        check_counts(self, "min_frequency")
        check_counts(self, "limit_alphabet")
        if not self.continuing_subword_prefix:
            raise ValueError("continuing_subword_prefix='': must mark the pieces that continue a word; e.g. continuing_subword_prefix=##")


class WordPiece(HFTokenizer):
    name = "wordpiece"
    Config = WordPieceConfig

    def train(self, texts: Iterator[str]) -> None:
        from tokenizers import Tokenizer as HFModel
        from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

        c = self.config
        tok = HFModel(models.WordPiece(unk_token=c.special_tokens["unk"], continuing_subword_prefix=c.continuing_subword_prefix))
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=c.clean_text,
            handle_chinese_chars=c.handle_chinese_chars,
            strip_accents=c.strip_accents,
            lowercase=c.lowercase,
        )
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix=c.continuing_subword_prefix)
        trainer = trainers.WordPieceTrainer(
            vocab_size=c.vocab_size,
            min_frequency=c.min_frequency,
            special_tokens=self._special_list(),
            limit_alphabet=c.limit_alphabet,
            continuing_subword_prefix=c.continuing_subword_prefix,
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        self.tok = tok


@hookimpl
def register_tokenizers(register):
    register(WordPiece)
