"""``normalize``: Unicode normalization, control characters and whitespace.

The default ``whitespace: lines`` keeps indentation, because code is half of what
lmforge trains on: it strips trailing spaces, turns CRLF into LF and squeezes runs of
blank lines to one. ``collapse`` folds every run of whitespace to one space, for prose.
"""

from __future__ import annotations

import re
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


@dataclass
class NormalizeConfig:
    form: str = "NFC"
    lowercase: bool = False
    whitespace: str = "lines"
    strip_control: bool = True

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
