"""``tokenizer=word``: a word-level vocabulary of spaCy tokens.

Training runs spaCy's rule-based tokenizer (``spacy.blank(lang)``: no model to download)
over the corpus and keeps the most frequent words; rarer ones become ``[UNK]``.
Whitespace tokens are not words and are dropped, so decoding joins words with single
spaces: text round-trips only up to whitespace and unknown words.

Encoding must give the same ids in ``transformers``, so it runs through a Hugging Face
``tokenizers`` pipeline, not through spaCy. Its pre-tokenizer approximates spaCy's split
with a regex applied to each whitespace-separated chunk:

- punctuation at either end of a chunk comes off one character at a time, as spaCy's
  prefix and suffix rules do (``(a,`` -> ``(``, ``a``, ``,``), and so do leading
  underscores; punctuation inside a chunk stays (``foo(x`` and ``os.path`` are one word);
- runs of dots or hyphens (``...``, ``--``) stay whole, as do spaCy's special cases made
  only of punctuation (``''``, ``):``, emoticons), read from the spaCy tokenizer at training;
- a hyphen between letters is a word of its own (``well-known``), and for English the
  clitics ``n't``, ``'s``, ``'re``, ``'ve``, ``'ll``, ``'d`` and ``'m`` split off.

On the standard library it reproduces about 97% of spaCy's tokens; the rest (abbreviations
such as ``e.g.``, some infixes around ``=`` and ``/``) split slightly differently, so a
few words counted in training are never produced and a few produced are [UNK].
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterator

from lmforge import hookimpl
from lmforge.plugins.preprocessors._spacy import spacy_language_exists
from lmforge.plugins.tokenizers._hf import HFTokenizer, check_counts, check_special_tokens

LETTER = r"[^\W\d_]"
CLITIC = r"n't(?!\w)|'(?:s|re|ve|ll|d|m)(?!\w)"
PIPE_BATCH = 256  # texts per spaCy batch


def split_pattern(punctuation_cases: list[str], english: bool) -> str:
    """The regex whose matches in a whitespace-free chunk are spaCy's tokens, nearly."""
    stop = [CLITIC] if english else []
    stop += [rf"(?<={LETTER})-{LETTER}", r"[^\w\s]*(?!\S)"]  # an infix hyphen, or only punctuation to the chunk's end
    word = rf"[^\W_](?:\S*?\w)??(?={'|'.join(stop)})"  # shortest run that ends on a word character before a stop
    cases = sorted(punctuation_cases, key=lambda s: (-len(s), s))
    return "|".join([*map(re.escape, cases), *([CLITIC] if english else []), word, r"\.{2,}|-{2,}", r"[^\w\s]|_"])


@dataclass
class WordConfig:
    lang: str = "en"
    vocab_size: int = 8192
    min_frequency: int = 2
    special_tokens: Dict[str, str] = field(default_factory=lambda: {"pad": "[PAD]", "unk": "[UNK]", "eos": "[EOS]"})

    def __post_init__(self) -> None:
        check_special_tokens("word", self.special_tokens, required=("unk",))
        if self.vocab_size <= len(self.special_tokens):
            raise ValueError(f"vocab_size={self.vocab_size} leaves no room beside the {len(self.special_tokens)} special tokens")
        check_counts(self, "min_frequency")
        if not spacy_language_exists(self.lang):
            raise ValueError(f"tokenizer.lang={self.lang!r}: must be a language spaCy knows; e.g. tokenizer.lang=en")


class Word(HFTokenizer):
    name = "word"
    Config = WordConfig

    def cache_token(self) -> str:
        from importlib.metadata import version

        return f"spacy-{version('spacy')}"  # spaCy's tokenizer rules change between releases

    def _spacy(self):
        import spacy

        try:
            return spacy.blank(self.config.lang)
        except ImportError as e:
            raise ValueError(f"tokenizer.lang={self.config.lang!r} is not a language spaCy knows ({e}); use a code such as 'en' or 'de'") from e

    def train(self, texts: Iterator[str]) -> None:
        from tokenizers import Regex
        from tokenizers import Tokenizer as HFModel
        from tokenizers import models, pre_tokenizers

        nlp = self._spacy()
        counts: Counter = Counter()
        for doc in nlp.tokenizer.pipe(texts, batch_size=PIPE_BATCH):  # the tokenizer alone has no max_length
            counts.update(t.text for t in doc if not t.is_space)
        c = self.config
        specials = self._special_list()
        room = c.vocab_size - len(specials)
        words = [w for w, n in sorted(counts.items(), key=lambda wn: (-wn[1], wn[0])) if n >= c.min_frequency and w not in specials]
        vocab = {token: i for i, token in enumerate([*specials, *words[:room]])}

        tok = HFModel(models.WordLevel(vocab, unk_token=c.special_tokens["unk"]))
        punctuation_cases = [k for k in nlp.tokenizer.rules if len(k) > 1 and not any(ch.isalnum() or ch == "_" or ch.isspace() for ch in k)]
        pattern = split_pattern(punctuation_cases, english=c.lang == "en")
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(pattern), behavior="isolated")]
        )
        tok.add_special_tokens(specials)  # already in the vocabulary: this only marks them special
        self.tok = tok


@hookimpl
def register_tokenizers(register):
    register(Word)
