"""What the spaCy steps (``stopwords``, ``stem``, ``lemma``) share.

- ``SpacyStep``, their base: it skips broken documents, cuts long ones into chunks below
  spaCy's ``max_length``, streams the chunks through ``nlp.pipe`` and joins each
  document back together from what the step makes of its tokens.
- ``invalid_reason``: the validity check that sorts out text that was binary or badly
  decoded before it reached the corpus.
- ``chunks``: the cutting, at paragraph, line or word boundaries.
- Loading a blank or a named pipeline, and the cheap checks the steps' configs run
  before any work starts.

Importing this module is cheap: spaCy is imported by ``SpacyStep.setup``, in each worker.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from collections import Counter, deque
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from lmforge.contracts import Document, Preprocessor
from lmforge.errors import ConfigError

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

# A document is broken when more than this share of its characters is U+FFFD (bytes that
# did not decode) or C0 control characters other than whitespace (binary content).
HEAVY = 0.01
# Longest piece handed to spaCy at once. Well below its max_length (1,000,000): the
# memory of a Doc grows with its length, and smaller pieces batch better in nlp.pipe.
CHUNK_CHARS = 100_000
BATCH_SIZE = 64  # texts per nlp.pipe batch, for steps that do not configure it

SURROGATE = re.compile("[\ud800-\udfff]")  # left by surrogateescape decoding of non-UTF-8 bytes
BINARY_CONTROL = re.compile("[\x00-\x08\x0e-\x1f]")


def invalid_reason(text: str) -> str | None:
    """Why ``text`` cannot be processed as text (``"invalid_utf8"``, ``"binary"``), or None.

    Documents are ``str`` already, so the bytes they came from are gone; what remains of
    a bad decode is lone surrogates or many replacement characters, and of a binary file
    NULs and other control characters.
    """
    if not text.isascii():
        if SURROGATE.search(text) or text.count("\ufffd") > HEAVY * len(text):
            return "invalid_utf8"
    if BINARY_CONTROL.search(text) and sum(1 for _ in BINARY_CONTROL.finditer(text)) > HEAVY * len(text):
        return "binary"
    return None


def chunks(text: str, limit: int) -> Iterator[str]:
    """Consecutive pieces of ``text``, each at most ``limit`` characters, that join back to it.

    A piece ends after the last paragraph break in its second half, else the last line
    break, else the last space or tab; only a text with no whitespace there is cut
    mid-word. Cutting after whitespace leaves spaCy's tokenization unchanged.
    """
    start = 0
    while len(text) - start > limit:
        end = start + limit
        for sep in ("\n\n", "\n", " ", "\t"):
            cut = text.rfind(sep, start + limit // 2, end)
            if cut != -1:
                end = cut + len(sep)
                break
        yield text[start:end]
        start = end
    yield text[start:]


def spacy_language_exists(lang: str) -> bool:
    """Whether spaCy ships language ``lang``, checked without importing spaCy."""
    spec = importlib.util.find_spec("spacy")
    return bool(spec and spec.origin and lang.isidentifier() and (Path(spec.origin).parent / "lang" / lang).is_dir())


def lookup_table_exists(lang: str) -> bool:
    """Whether spacy-lookups-data holds a lemma lookup table for ``lang``, without importing it."""
    spec = importlib.util.find_spec("spacy_lookups_data")
    return bool(spec and spec.origin and (Path(spec.origin).parent / "data" / f"{lang}_lemma_lookup.json.gz").is_file())


def pipeline_installed(name: str) -> bool:
    """Whether ``spacy.load(name)`` can find the pipeline: an installed package or a folder.

    The same test as ``spacy.util.is_package``, without importing spaCy.
    """
    if Path(name).expanduser().is_dir():
        return True
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def missing_pipeline(name: str) -> str:
    return (
        f"the spaCy pipeline {name!r} is not installed. Install it with `python -m spacy download {name}` "
        f"(it needs network access once), or set pipeline to null to use the offline lookup lemmatizer"
    )


def bad_option(key: str, message: str) -> ValueError:
    """A config error about one option that the Hydra bridge reports under its full key
    (``preprocess.steps[1].pipeline``); outside the bridge it is a plain ValueError."""
    from omegaconf.errors import ValidationError

    error = ValidationError(message)
    error.full_key = key
    return error


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def load_blank(lang: str, lemmatizer: bool = False) -> "Language":
    """``spacy.blank(lang)``, with a lookup lemmatizer whose tables come from spacy-lookups-data."""
    import spacy

    nlp = spacy.blank(lang)
    if lemmatizer:
        nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
        try:
            nlp.initialize()
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"lang={lang!r}: spaCy has no lookup lemma tables for it ({exc}); choose another lang or a trained pipeline") from None
    return nlp


def load_named(name: str, keep: Iterable[str]) -> "Language":
    """``spacy.load(name)`` with only the components whose factory is in ``keep`` enabled."""
    if not pipeline_installed(name):
        raise ConfigError(f"pipeline={name!r}: {missing_pipeline(name)}.")
    import spacy

    nlp = spacy.load(name)
    keep = set(keep)
    for component in nlp.pipe_names:
        if nlp.get_pipe_meta(component).factory not in keep:
            nlp.disable_pipe(component)
    return nlp


class SpacyStep(Preprocessor):
    """Base of the steps that work on spaCy tokens.

    A subclass builds its pipeline in ``load`` and turns each processed chunk back into
    text in ``rewrite`` (or in ``rewrite_chunk``, which also gets the chunk's text).
    Broken documents are dropped as ``dropped:invalid_utf8`` or ``dropped:binary``, and
    a document left with nothing but whitespace as ``dropped:empty_after_<name>``.
    """

    batch_size: int = BATCH_SIZE
    libraries: tuple[str, ...] = ("spacy",)  # distributions whose version changes the output

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.nlp: Language | None = None  # built by setup(), in the process that uses it

    def __getstate__(self) -> dict:
        return {"config": self.config, "nlp": None}  # what setup() builds is rebuilt, never shipped

    def cache_token(self) -> str:
        return " ".join(f"{name}={_version(name)}" for name in self.libraries)

    def load(self) -> "Language":
        raise NotImplementedError

    def rewrite(self, doc: "Doc") -> str:
        raise NotImplementedError

    def rewrite_chunk(self, doc: "Doc", text: str) -> str:
        """``rewrite``, given also the text ``doc`` was made from (``doc.text``, which spaCy
        would rebuild token by token): a step that changes few tokens splices its changes
        into ``text`` instead of joining every token."""
        return self.rewrite(doc)

    def setup(self) -> None:
        self.nlp = self.load()

    def process(self, docs: Iterable[Document], stats: Counter) -> Iterator[Document]:
        if self.nlp is None:
            self.setup()
        limit = min(CHUNK_CHARS, self.nlp.max_length)
        pending: deque[tuple[Document, int]] = deque()  # documents in flight, with their chunk counts
        sources: deque[str] = deque()  # the texts in flight, one per chunk

        def texts() -> Iterator[str]:
            for doc in docs:
                if reason := invalid_reason(doc.text):
                    stats[f"dropped:{reason}"] += 1
                    continue
                pieces = [doc.text] if len(doc.text) <= limit else list(chunks(doc.text, limit))
                pending.append((doc, len(pieces)))
                sources.extend(pieces)
                yield from pieces

        parts: list[str] = []
        for processed in self.nlp.pipe(texts(), batch_size=self.batch_size):
            parts.append(self.rewrite_chunk(processed, sources.popleft()))
            doc, n = pending[0]  # nlp.pipe keeps order, so the oldest document is this one
            if len(parts) < n:
                continue
            pending.popleft()
            doc.text, parts = "".join(parts), []
            if doc.text.strip():
                yield doc
            else:
                stats[f"dropped:empty_after_{self.name}"] += 1
