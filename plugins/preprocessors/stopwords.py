"""``stopwords``: removes stop words, using spaCy's list for the language.

Text is split into tokens by spaCy's tokenizer for ``lang`` and joined back with each
kept token's trailing whitespace, so line breaks and indentation survive. Matching is
case-insensitive. ``extra`` adds words to the list and ``keep`` takes words off it (to
keep negations such as "not", say).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lmforge import hookimpl
from lmforge.plugins.preprocessors._spacy import SpacyStep, bad_option, spacy_language_exists


@dataclass
class StopwordsConfig:
    lang: str = "en"
    extra: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not spacy_language_exists(self.lang):
            raise bad_option("lang", f"spaCy has no language {self.lang!r}: use a code such as en, de, fr or xx (multi-language)")


class Stopwords(SpacyStep):
    name = "stopwords"
    Config = StopwordsConfig

    def load(self):
        from lmforge.plugins.preprocessors._spacy import load_blank

        nlp = load_blank(self.config.lang)
        self.stop = {w.lower() for w in nlp.Defaults.stop_words | set(self.config.extra)} - {w.lower() for w in self.config.keep}
        return nlp

    def rewrite(self, doc) -> str:
        stop = self.stop
        return "".join([t.text_with_ws for t in doc if t.lower_ not in stop])


@hookimpl
def register_preprocessors(register):
    register(Stopwords)
