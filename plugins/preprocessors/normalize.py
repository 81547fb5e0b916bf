"""``normalize``: Unicode normalization, control characters and whitespace.

The default ``whitespace: lines`` keeps indentation, because code is half of what
lmforge trains on: it strips trailing spaces, turns CRLF into LF and squeezes runs of
blank lines to one. ``collapse`` folds every run of whitespace to one space, for prose.
``strip_punctuation`` removes every character of Unicode's punctuation categories (P*),
for the classic bag-of-words pipelines; it runs before the whitespace clean-up, so the
gaps it leaves are tidied too.

``strip_format_chars`` removes the invisible format characters (Unicode category Cf):
zero-width spaces, word joiners, soft hyphens, a U+FEFF inside the text, bidirectional
controls, tag characters. They split words the tokenizer should see whole and hide text
from filters. Kept: a zero-width joiner or non-joiner between two non-ASCII characters
(emoji sequences such as 👨‍👩‍👧, Persian and Indic spelling), the tag sequence of a
subdivision flag (🏴 + tags), and the Cf characters that are visible or lay out a script
(Arabic number signs, Egyptian hieroglyph and musical format controls). Tab and newline
are not format characters and stay.
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
JOINERS = {"\u200c", "\u200d"}  # ZWNJ, ZWJ: spelling in Persian and Indic scripts, glue in emoji
# Cf characters that are visible (prepended concatenation marks) or lay out a script
KEEP_FORMAT = {
    *range(0x0600, 0x0606), 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2, 0x110BD, 0x110CD,
    *range(0x13430, 0x13460), *range(0x1BCA0, 0x1BCA4), *range(0x1D173, 0x1D17B),
}  # fmt: skip
FLAG_TAGS = "\U0001F3F4[\U000E0020-\U000E007E]+\U000E007F"  # a subdivision flag, such as Scotland's


@functools.cache
def punctuation() -> dict[int, None]:
    """A ``str.translate`` table deleting the Unicode categories P* (Pc, Pd, Ps, Pe, Pi, Pf, Po).

    Built once per process (a fraction of a second); translate beats a regex here by far.
    """
    return dict.fromkeys(c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c))[0] == "P")


@functools.cache
def format_chars() -> re.Pattern:
    """A flag's tag sequence (kept whole) or one format character (Cf) that may go."""
    ranges: list[list[int]] = []
    for c in range(sys.maxunicode + 1):
        if unicodedata.category(chr(c)) == "Cf" and c not in KEEP_FORMAT:
            if ranges and ranges[-1][1] == c - 1:
                ranges[-1][1] = c
            else:
                ranges.append([c, c])
    members = "".join(re.escape(chr(a)) + (f"-{re.escape(chr(b))}" if b > a else "") for a, b in ranges)
    return re.compile(f"{FLAG_TAGS}|[{members}]")


def _joins(ch: str) -> bool:
    return ch > "\x7f" and not ch.isspace() and unicodedata.category(ch) != "Cf"


def _format_char(m: re.Match) -> str:
    found, text = m.group(), m.string
    if len(found) > 1:  # a flag's tag sequence
        return found
    if found in JOINERS and m.start() > 0 and m.end() < len(text) and _joins(text[m.start() - 1]) and _joins(text[m.end()]):
        return found
    return ""


def strip_format(text: str) -> str:
    """``text`` without its invisible format characters (see the module's docstring)."""
    return format_chars().sub(_format_char, text)


@dataclass
class NormalizeConfig:
    form: str = "NFC"
    lowercase: bool = False
    whitespace: str = "lines"
    strip_control: bool = True
    strip_format_chars: bool = True
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
        if c.strip_format_chars:
            text = strip_format(text)
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
