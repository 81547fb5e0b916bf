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
            raise ValueError(f"batch_size={self.batch_size}: must be at least 1; e.g. batch_size=256")


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
        return self.rewrite_chunk(doc, doc.text)

    def rewrite_chunk(self, doc, text: str) -> str:
        """``text`` with each word replaced by its lemma; only the tokens that change, and
        the glued boundaries next to them, cost Python work (a few percent of the tokens)."""
        import numpy as np
        from spacy.attrs import IDX, LEMMA, ORTH, SPACY

        rows = doc.to_array([ORTH, LEMMA, SPACY, IDX])  # (N, 4) string hashes, flag, char offset
        orth, lemma, spaced, starts = rows[:, 0], rows[:, 1], rows[:, 2].astype(bool), rows[:, 3].astype(np.int64)
        changed = (lemma != 0) & (lemma != orth)  # (N,) a lemma of 0 is unset: the word stays
        if not changed.any():
            return text
        ends = np.append(starts[1:], len(text)) - spaced  # (N,) a trailing space is one " "
        # a glued pair of which one side changes may need a space between them:
        # "don't" -> "do not", "I'm" -> "I be", not "donot", "Ibe"
        check = np.zeros_like(changed)
        check[1:] = ~spaced[:-1] & (changed[:-1] | changed[1:])
        todo = np.flatnonzero(changed | check)
        prev = np.maximum(todo - 1, 0)
        strings = doc.vocab.strings
        parts: list[str] = []
        pos = 0  # end of the text copied so far
        for start, end, new, glued, p_start, p_end, p_new in zip(
            starts[todo].tolist(), ends[todo].tolist(), np.where(changed[todo], lemma[todo], 0).tolist(), check[todo].tolist(),
            starts[prev].tolist(), ends[prev].tolist(), np.where(changed[prev], lemma[prev], 0).tolist(),
        ):
            parts.append(text[pos:start])
            word = strings[new] if new else text[start:end]
            if glued and word[0].isalnum() and (strings[p_new] if p_new else text[p_start:p_end])[-1:].isalnum():
                parts.append(" ")
            if new:
                parts.append(word)
            pos = end if new else start
        parts.append(text[pos:])
        return "".join(parts)


@hookimpl
def register_preprocessors(register):
    register(Lemma)
