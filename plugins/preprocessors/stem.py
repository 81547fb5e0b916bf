"""``stem``: Snowball stemming of every word, leaving punctuation and whitespace alone.

Text is split into tokens by spaCy's tokenizer for the stemmer's language (the
multi-language one where spaCy has none). Snowball works on lowercase words; a stem
that is a prefix of the word keeps the word's casing ("Running" -> "Run"), any other is
written in lowercase ("Happy" -> "happi").
"""

from __future__ import annotations

from dataclasses import dataclass

from lmforge import hookimpl
from lmforge.plugins.preprocessors._spacy import SpacyStep, bad_option

# Snowball language -> spaCy language for tokenizing; "xx" (multi-language) for the rest
SPACY_LANGS = {
    "arabic": "ar", "armenian": "hy", "basque": "eu", "catalan": "ca", "czech": "cs", "danish": "da",
    "dutch": "nl", "dutch_porter": "nl", "english": "en", "estonian": "et", "finnish": "fi", "french": "fr",
    "german": "de", "greek": "el", "hindi": "hi", "hungarian": "hu", "indonesian": "id", "irish": "ga",
    "italian": "it", "lithuanian": "lt", "nepali": "ne", "norwegian": "nb", "persian": "fa", "polish": "pl",
    "porter": "en", "portuguese": "pt", "romanian": "ro", "russian": "ru", "serbian": "sr", "spanish": "es",
    "swedish": "sv", "tamil": "ta", "turkish": "tr",
}
CACHE_WORDS = 200_000  # distinct words whose stems are remembered; Snowball in Python is slow


@dataclass
class StemConfig:
    language: str = "english"

    def __post_init__(self) -> None:
        import snowballstemmer  # small and pure Python

        if self.language not in snowballstemmer.algorithms():
            options = ", ".join(snowballstemmer.algorithms())
            raise bad_option("language", f"Snowball has no stemmer {self.language!r}: use one of {options}")


class Stem(SpacyStep):
    name = "stem"
    Config = StemConfig
    libraries = ("spacy", "snowballstemmer")

    def load(self):
        import snowballstemmer

        from lmforge.plugins.preprocessors._spacy import load_blank

        self.stemmer = snowballstemmer.stemmer(self.config.language)
        self.stems: dict[str, str] = {}
        return load_blank(SPACY_LANGS.get(self.config.language, "xx"))

    def stem(self, word: str) -> str:
        if (stem := self.stems.get(word)) is None:
            lower = word.lower()
            stem = self.stemmer.stemWord(lower)
            if lower.startswith(stem) and len(word) == len(lower):
                stem = word[: len(stem)]
            if len(self.stems) >= CACHE_WORDS:
                self.stems.clear()
            self.stems[word] = stem
        return stem

    def rewrite(self, doc) -> str:
        return "".join([(self.stem(t.text) if t.is_alpha else t.text) + t.whitespace_ for t in doc])


@hookimpl
def register_preprocessors(register):
    register(Stem)
