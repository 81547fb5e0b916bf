"""Readers and text clean-up for ``collector=books``.

Each reader turns one file into a ``Book``: its text as paragraphs separated by blank
lines, plus the title and author where the file says them. ebooklib, pypdf, trafilatura
and charset-normalizer (through ``_decode``) are imported inside the reader that needs
them, so importing the plugin stays cheap.

A reader raises ``Unreadable(reason)`` for a file it cannot use; the collector counts
the reason and goes on.
"""

from __future__ import annotations

import contextlib
import logging
import re
import statistics
import warnings
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable

log = logging.getLogger("lmforge")

class Unreadable(Exception):
    """A file that yields no text; ``reason`` becomes ``stats["skipped:<reason>"]``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Book:
    text: str
    meta: dict[str, str] = field(default_factory=dict)  # title, author when found


# --- re-flow -------------------------------------------------------------------------

# a letter, one hyphen at the end of a line, and a lower-case letter opening the next:
# the typesetter's split of one word ("exam-\nple"), not a dash ("--"), a number range
# or a real hyphen inside a line ("well-known")
_SPLIT_WORD = re.compile(r"(?<=[^\W\d_])-[ \t]*\n[ \t]*(?=[^\W\d_])")
_SPACES = re.compile(r"[ \t\u00a0]+")
_PAGE_NUMBER = re.compile(r"[-\u2013\s]*(?:\d{1,4}|[ivx]{1,6})[-\u2013\s]*")  # "12", "- 12 -", "xiv"
# markdown lines that must keep their own line when a paragraph is re-flowed
_MD_BLOCK_LINE = re.compile(r"\s*(?:#{1,6}\s|>|\|)")
_MD_LIST_ITEM = re.compile(r"\s*(?:[-*+]|\d{1,3}[.)])\s")
_MD_FENCE = re.compile(r"\s*(```|~~~)")


def dehyphenate(text: str) -> str:
    """Join words hyphenated across a line break: ``"exam-\\nple"`` -> ``"example"``."""
    return _SPLIT_WORD.sub(lambda m: "" if text[m.end()].islower() else m.group(0), text)


def reflow(text: str, *, markdown: bool = False) -> str:
    """Join hard-wrapped lines into paragraphs; blank lines separate paragraphs.

    With ``markdown``, fenced code is kept verbatim and headings, list items, quotes and
    table rows keep their own lines.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n")
    paragraphs: list[str] = []
    lines: list[str] = []

    def flush() -> None:
        if lines:
            paragraphs.append(_SPACES.sub(" ", " ".join(lines)).strip())
            lines.clear()

    fence: list[str] | None = None
    for raw in text.split("\n"):
        if fence is not None:  # inside a fenced code block: verbatim
            fence.append(raw.rstrip())
            if _MD_FENCE.match(raw):
                paragraphs.append("\n".join(fence))
                fence = None
            continue
        line = raw.strip()
        if not line:
            flush()
        elif markdown and _MD_FENCE.match(raw):
            flush()
            fence = [raw.rstrip()]
        elif markdown and _MD_BLOCK_LINE.match(raw):
            flush()  # a heading, quote line or table row stands alone
            paragraphs.append(line)
        elif markdown and _MD_LIST_ITEM.match(raw):
            flush()  # a list item starts a line of its own and may wrap onto the next
            lines.append(line)
        else:
            lines.append(line)
    flush()
    if fence is not None:
        paragraphs.append("\n".join(fence))
    return "\n\n".join(p for p in paragraphs if p)


# --- Project Gutenberg -----------------------------------------------------------------

_PG_START = re.compile(
    r"^\W*(?:START OF (?:THE|THIS) PROJECT GUTENBERG|END\W*THE SMALL PRINT).*$",
    re.IGNORECASE | re.MULTILINE,
)  # the header ends here: the modern start line, or the end of the older small print
_PG_END = re.compile(
    r"^\W*(?:END OF (?:THE|THIS) PROJECT GUTENBERG|End of (?:the )?Project Gutenberg"
    r"|START:? FULL LICENSE|START\W*THE SMALL PRINT).*$",
    re.IGNORECASE | re.MULTILINE,
)  # the footer starts here: the end line, the older "End of the Project Gutenberg EBook"
_PG_FIELD = re.compile(r"^(Title|Author):[ \t]*(.+(?:\n[ \t]+\S.*)*)", re.MULTILINE)
_PG_CREDITS = re.compile(r"^\s*(?:Produced by|E-text prepared by|Transcribed from|Prepared by)\b", re.IGNORECASE)


def strip_gutenberg(text: str) -> tuple[str, dict[str, str], bool]:
    """Cut a Gutenberg header and licence footer; returns (body, title/author, found).

    Handles the current ``*** START OF THE PROJECT GUTENBERG EBOOK ... ***`` markers and
    the older ``THIS PROJECT GUTENBERG``, ``*END*THE SMALL PRINT!`` and ``End of the
    Project Gutenberg EBook`` variants. Text without any marker comes back unchanged.
    """
    start = _PG_START.search(text)
    end = _PG_END.search(text, start.end() if start else 0)
    if start is None and end is None:
        return text, {}, False
    header = text[: start.start()] if start else text[: min(len(text), 5000)]
    meta = {k.lower(): _SPACES.sub(" ", v.replace("\n", " ")).strip() for k, v in _PG_FIELD.findall(header)}
    body = text[start.end() if start else 0 : end.start() if end else len(text)]
    # the volunteers' credit line that follows the start marker is not part of the book
    parts = re.split(r"\n\s*\n", body.strip("\n"), maxsplit=1)
    if len(parts) == 2 and _PG_CREDITS.match(parts[0]):
        body = parts[1]
    return body, meta, True


# --- HTML ------------------------------------------------------------------------------

_BLOCKS = {
    "p", "div", "section", "article", "blockquote", "pre", "li", "ul", "ol", "table", "tr",
    "h1", "h2", "h3", "h4", "h5", "h6", "br", "hr", "dd", "dt", "figcaption", "header", "footer",
}  # fmt: skip
_HIDDEN = {"script", "style", "head", "title", "nav", "noscript", "svg"}


class _TextParser(HTMLParser):
    """Block elements become paragraphs; scripts, styles and navigation are dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self.current: list[str] = []
        self.hidden = 0
        self.title: list[str] = []
        self.in_title = False
        self.author = ""

    def _flush(self) -> None:
        text = _SPACES.sub(" ", " ".join(self.current).replace("\n", " ")).strip()
        if text:
            self.paragraphs.append(text)
        self.current = []

    def handle_starttag(self, tag, attrs):
        if tag == "meta":
            values = dict(attrs)
            if (values.get("name") or "").lower() in ("author", "dc.creator") and values.get("content"):
                self.author = self.author or values["content"].strip()
        if tag == "title":
            self.in_title = True
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag in _BLOCKS:
            self._flush()

    def handle_startendtag(self, tag, attrs):  # <br/>, <head/>, <title/>
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCKS:
            self._flush()

    def handle_data(self, data):
        if self.in_title:
            self.title.append(data)
        elif not self.hidden:
            self.current.append(data)

    def result(self) -> tuple[str, dict[str, str]]:
        self._flush()
        meta = {}
        if title := _SPACES.sub(" ", " ".join(self.title)).strip():
            meta["title"] = title
        if self.author:
            meta["author"] = self.author
        return "\n\n".join(self.paragraphs), meta


def html_text(markup: str) -> tuple[str, dict[str, str]]:
    """The paragraphs of an HTML document and its <title>/author, without boilerplate removal."""
    parser = _TextParser()
    parser.feed(markup)
    parser.close()
    return parser.result()


# --- readers ---------------------------------------------------------------------------


def decode(raw: bytes) -> str:
    """The text of a file in any encoding (the collectors' shared decoder); raises ``Unreadable``."""
    from lmforge.plugins.collectors import _decode

    if _decode.looks_binary(raw):
        raise Unreadable("binary", "NUL bytes in a text file")
    text = _decode.decode(raw)
    if text is None:
        raise Unreadable("undecodable", "no text encoding fits")
    return text


def read_txt(path: Path) -> Book:
    text = decode(path.read_bytes())
    body, meta, _ = strip_gutenberg(text.replace("\r\n", "\n"))
    return Book(reflow(dehyphenate(body)), meta)


_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n(?:---|\.\.\.)\n", re.DOTALL)
_MD_TITLE = re.compile(r"^(?:#[ \t]+(.+?)[ \t#]*$|(\S.*)\n=+[ \t]*$)", re.MULTILINE)


def read_md(path: Path) -> Book:
    text = decode(path.read_bytes()).replace("\r\n", "\n")
    meta: dict[str, str] = {}
    if front := _FRONT_MATTER.match(text):
        for key, value in re.findall(r"^(title|author):[ \t]*(.+)$", front.group(1), re.MULTILINE):
            meta[key] = value.strip().strip("'\"")
        text = text[front.end() :]
    body, gutenberg, _ = strip_gutenberg(text)
    meta = {**gutenberg, **meta}
    if "title" not in meta and (heading := _MD_TITLE.search(body)):
        meta["title"] = (heading.group(1) or heading.group(2)).strip()
    return Book(reflow(body, markdown=True), meta)


def read_html(path: Path) -> Book:
    import trafilatura

    markup = decode(path.read_bytes())
    fallback, meta = html_text(markup)
    try:
        extracted = trafilatura.extract(markup, include_comments=False, include_tables=True, deduplicate=False)
        found = trafilatura.extract_metadata(markup)
    except Exception:  # lxml chokes on some markup; the plain parser still reads it
        extracted, found = None, None
    if found is not None:
        meta = {**({"author": found.author} if found.author else {}), **meta}
        if "title" not in meta and found.title:
            meta["title"] = found.title
    # trafilatura drops navigation and footers; it gives up on very short pages
    text = "\n\n".join(line.strip() for line in extracted.splitlines() if line.strip()) if extracted else fallback
    return Book(reflow(text), meta)


def read_epub(path: Path) -> Book:
    import ebooklib
    from ebooklib import epub

    try:
        book = epub.read_epub(str(path), options={"ignore_ncx": True})
    except Exception as exc:  # ebooklib raises zipfile, lxml and its own errors alike
        raise Unreadable("corrupt", f"{type(exc).__name__}: {exc}") from None
    meta = {}
    for key, dc in (("title", "title"), ("author", "creator")):
        values = [v for v, _ in book.get_metadata("DC", dc) if v and v.strip()]
        if values:
            meta[key] = "; ".join(v.strip() for v in values)
    chapters = []
    for idref, _linear in book.spine:  # reading order
        item = book.get_item_with_id(idref)
        if item is None or isinstance(item, epub.EpubNav) or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        text, _ = html_text(item.get_content().decode("utf-8", errors="replace"))
        if text.strip():
            chapters.append(text)
    return Book(reflow("\n\n".join(chapters)), meta)


def _page_lines(page) -> list[str]:
    """A page's text lines, with a blank line wherever the vertical gap is a paragraph's.

    pypdf reports each text run with its matrices; a gap between lines well above the
    page's usual line spacing starts a new paragraph.
    """
    lines: list[list] = [["", None]]  # [text, y of the line's baseline]

    def visit(text, cm, tm, font_dict, font_size):
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        for i, piece in enumerate(text.split("\n")):
            if i:
                lines.append(["", None])
            if piece and lines[-1][1] is None:
                lines[-1][1] = y
            lines[-1][0] += piece

    page.extract_text(visitor_text=visit)
    kept = [(t.strip(), y) for t, y in lines if t.strip() and not _PAGE_NUMBER.fullmatch(t)]
    gaps = [a[1] - b[1] for a, b in zip(kept, kept[1:]) if a[1] is not None and b[1] is not None and a[1] > b[1]]
    spacing = statistics.median(gaps) if len(gaps) >= 2 else None
    out: list[str] = []
    for i, (text, y) in enumerate(kept):
        prev = kept[i - 1][1] if i else None
        if spacing and y is not None and prev is not None and prev - y > 1.4 * spacing:
            out.append("")
        out.append(text)
    return out


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _warnings_named(path: Path):
    """Re-log pypdf's warnings (through its loggers and ``warnings``) with the file's name.

    pypdf says "incorrect startxref pointer(3)" without saying of which PDF; in a folder
    of thousands, that is no help. The collector reads one file at a time.
    """
    pypdf_log, captured = logging.getLogger("pypdf"), _Records()
    propagate, pypdf_log.propagate = pypdf_log.propagate, False
    pypdf_log.addHandler(captured)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                for record in captured.records:
                    log.log(record.levelno, "books: %s: %s", path, record.getMessage())
                for warning in caught:
                    log.warning("books: %s: %s", path, warning.message)
    finally:
        pypdf_log.removeHandler(captured)
        pypdf_log.propagate = propagate


def read_pdf(path: Path) -> Book:
    with _warnings_named(path):
        return _read_pdf(path)


def _read_pdf(path: Path) -> Book:
    import pypdf

    try:
        reader = pypdf.PdfReader(str(path))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")  # many PDFs are encrypted with an empty password
            except Exception as exc:  # an AES one needs pypdf's optional crypto dependency
                raise Unreadable("encrypted", str(exc)) from None
            if not opened:
                raise Unreadable("encrypted", "needs a password")
        meta = {}
        info = reader.metadata
        for key, value in (("title", info and info.title), ("author", info and info.author)):
            if isinstance(value, str) and value.strip():
                meta[key] = value.strip()
        # pages join with a line break, not a blank line: paragraphs run across pages
        lines = [line for page in reader.pages for line in _page_lines(page)]
    except Unreadable:
        raise
    except Exception as exc:  # a damaged PDF fails anywhere in pypdf, with any error type
        raise Unreadable("corrupt", f"{type(exc).__name__}: {exc}") from None
    return Book(reflow(dehyphenate("\n".join(lines))), meta)


READERS: dict[str, Callable[[Path], Book]] = {
    ".txt": read_txt,
    ".text": read_txt,
    ".md": read_md,
    ".markdown": read_md,
    ".html": read_html,
    ".htm": read_html,
    ".xhtml": read_html,
    ".epub": read_epub,
    ".pdf": read_pdf,
}


def read(path: Path) -> Book:
    """Read one file with the reader for its extension; raises ``Unreadable``."""
    try:
        book = READERS[path.suffix.lower()](path)
    except OSError as exc:
        raise Unreadable("unreadable", str(exc)) from None
    if not book.text.strip():
        raise Unreadable("no_text", "nothing readable in it (a scanned PDF has only images)")
    return book
