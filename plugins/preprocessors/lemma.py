"""``lemma``: replaces every word with its lemma ("geese" -> "goose", "were" -> "be").

Two modes, as spaCy has them:

- ``pipeline: null`` (the default) works offline: ``spacy.blank(lang)`` with a lookup
  lemmatizer, whose word -> lemma tables come from spacy-lookups-data. The tables are
  case-sensitive and keyed by lowercase words, which is why the ``lemma`` preset
  lowercases first.
- ``pipeline: en_core_web_sm`` (any installed trained pipeline, or its folder) uses the
  pipeline's rule lemmatizer, which picks lemmas by part of speech. Only the components
  that feed the lemmatizer run; the parser and entity recognizer stay off.

Punctuation and whitespace are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmforge import hookimpl
from lmforge.plugins.preprocessors._spacy import (
    SpacyStep,
    bad_option,
    lookup_table_exists,
    missing_pipeline,
    pipeline_installed,
    spacy_language_exists,
)

# factories a trained pipeline needs for its rule lemmatizer: shared embeddings, the
# tagger or morphologizer for the part of speech, the rules that map tags to it
LEMMA_FACTORIES = {"tok2vec", "transformer", "tagger", "morphologizer", "attribute_ruler", "lemmatizer", "trainable_lemmatizer"}


@dataclass
class LemmaConfig:
    lang: str = "en"
    pipeline: str | None = None
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.pipeline:
            if not pipeline_installed(self.pipeline):
                raise bad_option("pipeline", missing_pipeline(self.pipeline))
        elif not spacy_language_exists(self.lang):
            raise bad_option("lang", f"spaCy has no language {self.lang!r}: use a code such as en, de or fr")
        elif not lookup_table_exists(self.lang):
            raise bad_option("lang", f"spacy-lookups-data has no lemma lookup table for {self.lang!r}: choose another lang or name a trained pipeline")
        if self.batch_size < 1:
            raise bad_option("batch_size", f"batch_size must be at least 1, got {self.batch_size}")


class Lemma(SpacyStep):
    name = "lemma"
    Config = LemmaConfig

    @property
    def libraries(self) -> tuple[str, ...]:
        pipeline = self.config.pipeline
        package = (pipeline,) if pipeline and not Path(pipeline).expanduser().is_dir() else ()
        return ("spacy", "spacy-lookups-data", *package)

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    def load(self):
        from lmforge.plugins.preprocessors._spacy import load_blank, load_named

        if self.config.pipeline:
            return load_named(self.config.pipeline, LEMMA_FACTORIES)
        return load_blank(self.config.lang, lemmatizer=True)

    def rewrite(self, doc) -> str:
        parts: list[str] = []
        changed = glued = False  # the previous token's lemma differs from it; no space follows it
        for t in doc:
            text, lemma = t.text, t.lemma_ or t.text  # empty where no component set a lemma
            if glued and (changed or lemma != text) and lemma[0].isalnum() and parts[-1][-1:].isalnum():
                parts.append(" ")  # "don't" -> "do not", "I'm" -> "I be", not "donot", "Ibe"
            parts.append(lemma + t.whitespace_)
            changed, glued = lemma != text, not t.whitespace_
        return "".join(parts)


@hookimpl
def register_preprocessors(register):
    register(Lemma)
