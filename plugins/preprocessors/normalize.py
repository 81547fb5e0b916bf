"""``normalize``: Unicode normalization, control characters and whitespace.

The default ``whitespace: lines`` keeps indentation, because code is half of what
lmforge trains on: it strips trailing spaces, turns CRLF into LF and squeezes runs of
blank lines to one. ``collapse`` folds every run of whitespace to one space, for prose.
``strip_punctuation`` removes every character of Unicode's punctuation categories (P*),
for the classic bag-of-words pipelines; it runs before the whitespace clean-up, so the
gaps it leaves are tidied too.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator

from lmforge import hookimpl
from lmforge.contracts import Document, Preprocessor

# C0/C1 controls except tab and newline, plus DEL
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)
BLANK_RUNS = re.compile(r"\n{3,}")
ANY_SPACE = re.compile(r"\s+")


@functools.cache
def punctuation() -> dict[int, None]:
    """A ``str.translate`` table deleting the Unicode categories P* (Pc, Pd, Ps, Pe, Pi, Pf, Po).

    Built once per process (a fraction of a second); translate beats a regex here by far.
    """
    return dict.fromkeys(c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c))[0] == "P")


@dataclass
class NormalizeConfig:
    form: str = "NFC"
    lowercase: bool = False
    whitespace: str = "lines"
    strip_control: bool = True
    strip_punctuation: bool = False

    def __post_init__(self) -> None:
        if self.form not in ("NFC", "NFKC", "NFD", "NFKD"):
            raise ValueError(f"form={self.form!r} is not a Unicode normal form: use NFC, NFKC, NFD or NFKD")
        if self.whitespace not in ("lines", "collapse", "keep"):
            raise ValueError(f"whitespace={self.whitespace!r}: use lines, collapse or keep")


class Normalize(Preprocessor):
    name = "normalize"
    Config = NormalizeConfig

    def normalize(self, text: str) -> str:
        c = self.config
        text = unicodedata.normalize(c.form, text.replace("\r\n", "\n").replace("\r", "\n"))
        if c.strip_control:
            text = CONTROL.sub("", text)
        if c.lowercase:
            text = text.lower()
        if c.strip_punctuation:
            text = text.translate(punctuation())
        if c.whitespace == "lines":
            text = BLANK_RUNS.sub("\n\n", TRAILING.sub("", text)).strip("\n") + "\n"
        elif c.whitespace == "collapse":
            text = ANY_SPACE.sub(" ", text).strip()
        return text

    def process(self, docs: Iterable[Document], stats: Counter) -> Iterator[Document]:
        for doc in docs:
            doc.text = self.normalize(doc.text)
            if not doc.text.strip():
                stats["dropped:empty_after_normalize"] += 1
                continue
            yield doc


@hookimpl
def register_preprocessors(register):
    register(Normalize)
