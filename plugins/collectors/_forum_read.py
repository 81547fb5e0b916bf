"""The forum collector's readers: paths, formats, pseudonyms, HTML to text, and one
streaming reader per dump format. Each reader yields ``Post`` objects from one file."""

from __future__ import annotations

import codecs
import csv
import glob
import hashlib
import hmac
import html
import io
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterable, Iterator

from lmforge.errors import ConfigError

# Pushshift's dumps are compressed with a 2 GiB window, beyond zstd's default limit
ZSTD_MAX_WINDOW = 2**31
COMPRESSED = (".zst", ".zstd", ".gz")
SNIFF_BYTES = 1 << 20  # how much of a dump shows its encoding
# text that stands for content gone from the site, lower-cased
GONE = {"[deleted]": "deleted", "[removed]": "removed", "[ removed by reddit ]": "removed", "[removed by reddit]": "removed"}
MENTION = re.compile(r"(?<![\w/])/?u/([A-Za-z0-9_-]{3,20})\b")
TRUE = {"1", "true", "t", "yes", "y"}


@dataclass
class Post:
    """One post as the index stores it; ``author`` is already a pseudonym."""

    id: str
    root: str | None  # the thread's id; None until resolved from parents (generic dumps)
    parent: str | None
    author: str = ""
    title: str = ""
    text: str = ""
    created: Any = None
    rank: float = 0.0  # siblings are ordered by (rank, created, reading order)
    dropped: str | None = None  # the reason a deleted or removed post was dropped
    extra: dict = field(default_factory=dict)  # thread-level facts: subreddit, site, tags


# Paths -------------------------------------------------------------------------------


def expand_paths(entries: Iterable[str]) -> list[Path]:
    """Files, folders (read recursively) and glob patterns, each sorted, in config order."""
    found: list[Path] = []
    for entry in entries:
        path = Path(entry).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif matches := sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()):
            found += matches
        else:
            raise ConfigError(f"collector.paths: {entry} matches no file; give dump files, folders or glob patterns that exist")
    return found


def fingerprint(paths: list[Path]) -> str:
    parts = []
    for path in paths:
        st = path.stat()
        parts.append(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return ";".join(parts)


def _inner_name(path: Path) -> str:
    name = path.name.lower()
    for suffix in COMPRESSED:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def open_binary(path: Path):
    """The file's bytes, decompressed as a stream when it ends in .zst or .gz."""
    name = path.name.lower()
    if name.endswith((".zst", ".zstd")):
        import zstandard

        return zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(open(path, "rb"), closefd=True)
    if name.endswith(".gz"):
        import gzip

        return gzip.open(path, "rb")
    return open(path, "rb")


def open_text(path: Path):
    """The file as text, in the encoding its first MiB shows (UTF-8 unless it is not)."""
    with open_binary(path) as f:
        sample = f.read(SNIFF_BYTES)
    return io.TextIOWrapper(open_binary(path), encoding=text_encoding(sample), errors="replace", newline="")


def text_encoding(sample: bytes) -> str:
    """The codec of a dump from its first bytes: a BOM's, UTF-8, else the shared detector's.

    A CSV exported from a spreadsheet is often windows-1252; JSON lines should be UTF-8
    but are not always. Undecodable bytes further on become U+FFFD.
    """
    from lmforge.plugins.collectors import _decode

    for bom, name in _decode.BOMS:
        if sample.startswith(bom):  # the codecs that read and drop their own BOM
            return {"utf-8": "utf-8-sig"}.get(name, name[:6])  # utf-16-le -> utf-16
    try:  # the sample may end inside a character: decode it as a stream that goes on
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8-sig"
    except UnicodeDecodeError:
        pass
    return _decode.detect(sample) or "utf-8"


def detect_format(path: Path) -> str:
    """The format of one file from its name; JSON lines are looked into for Reddit fields."""
    name = _inner_name(path)
    if name.endswith(".xml"):
        return "stackexchange"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    # Pushshift names its dumps RC_2019-04.zst: JSON lines with no inner extension
    if name.endswith((".jsonl", ".json", ".ndjson")) or name != path.name.lower():
        with open_text(path) as f:
            for line in f:
                if line.strip():
                    try:
                        record = json.loads(line)
                    except ValueError:
                        break
                    is_reddit = isinstance(record, dict) and "subreddit" in record and ("link_id" in record or "title" in record)
                    return "reddit" if is_reddit else "jsonl"
        return "jsonl"
    raise ConfigError(
        f"collector.format=auto cannot tell the format of {path} from its name "
        f"(.jsonl, .csv, .parquet, .xml, optionally .zst or .gz): set collector.format"
    )


# Pseudonyms and text -----------------------------------------------------------------


class Pseudonyms:
    """``user_<6 hex>``: HMAC-SHA256 of the case-folded name, keyed by the salt.

    Stable across documents and runs for the same salt. Six hex digits keep the text
    short; two authors sharing a pseudonym somewhere in a large corpus is harmless, and
    within one thread (the span a reader follows) a clash is very unlikely.
    """

    def __init__(self, salt: str) -> None:
        self.key = salt.encode("utf-8")
        self.cache: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if not name.strip():
            return "[unknown]"
        if name.strip().lower() in GONE:
            return "[deleted]"
        if (known := self.cache.get(name)) is None:
            digest = hmac.new(self.key, name.strip().casefold().encode("utf-8"), hashlib.sha256).hexdigest()
            known = f"user_{digest[:6]}"
            if len(self.cache) < 100_000:  # bounded: a dump has millions of authors
                self.cache[name] = known
        return known

    def mentions(self, text: str) -> str:
        """Replace every ``u/<name>`` mention, of known authors or not."""
        return MENTION.sub(lambda m: f"u/{self(m.group(1))}", text)


class _HTMLText(HTMLParser):
    """Stack Exchange bodies as plain text: paragraphs, list items, code kept verbatim."""

    BLOCK = {"p", "div", "pre", "blockquote", "ul", "ol", "table", "tr", "hr", "h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.pre = 0

    def _at_line_start(self) -> bool:
        return not self.parts or self.parts[-1].endswith("\n")

    def handle_starttag(self, tag, attrs):
        if tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in self.BLOCK:
            self.parts.append("\n\n")
        if tag == "pre":
            self.pre += 1
        elif tag == "code" and not self.pre:
            self.parts.append("`")

    def handle_endtag(self, tag):
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        elif tag == "code" and not self.pre:
            self.parts.append("`")
        if tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if not self.pre:
            data = re.sub(r"\s+", " ", data)
            if self._at_line_start():
                data = data.lstrip()
        self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = _HTMLText()
    parser.feed(markup)
    parser.close()
    text = re.sub(r"[ \t]+\n", "\n", "".join(parser.parts))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _key(value: Any) -> str | None:
    """An id or parent id as text: None for missing, 12.0 -> '12'."""
    if value is None or value == "":
        return None
    if isinstance(value, float):
        if value != value:  # NaN: a missing value in a float column
            return None
        if value.is_integer():
            value = int(value)
    return str(value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in TRUE
    return bool(value) and value == value


def _gone(text: str) -> str | None:
    return GONE.get(text.strip().lower()) if len(text) < 32 else None


def _plain(value: Any) -> Any:
    """A JSON-ready creation time: numbers and strings as they are, datetimes as ISO text."""
    if value is None or isinstance(value, (int, float, str)):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _created_key(value: Any) -> tuple:
    """Numbers (Unix times) and strings (ISO dates) both sort, numbers first."""
    if isinstance(value, (int, float)) and value == value:
        return (0, float(value), "")
    if isinstance(value, str):
        try:
            return (0, float(value), "")
        except ValueError:
            return (1, 0.0, value)
    return (2, 0.0, "")


# Readers: each yields Posts from one file --------------------------------------------


def jsonl_records(path: Path, stats: Counter) -> Iterator[dict]:
    with open_text(path) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                stats["skipped:bad_record"] += 1
                continue
            if isinstance(record, dict):
                yield record
            else:
                stats["skipped:bad_record"] += 1


def csv_records(path: Path, stats: Counter) -> Iterator[dict]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # forum posts outgrow the 128 KiB default
    with open_text(path) as f:
        yield from csv.DictReader(f)


def parquet_records(path: Path, stats: Counter, columns: Iterable[str]) -> Iterator[dict]:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    wanted = [c for c in dict.fromkeys(columns) if c in file.schema_arrow.names]
    for batch in file.iter_batches(batch_size=1024, columns=wanted):
        yield from batch.to_pylist()


def generic_posts(records: Iterable[dict], fields: dict[str, str], pseudo: Pseudonyms, stats: Counter, origin: str) -> Iterator[Post]:
    col = {k: fields.get(k, k) for k in ("id", "text", "author", "parent", "title", "created", "deleted")}
    for n, rec in enumerate(records):
        post = Post(
            id=_key(rec.get(col["id"])) or f"{origin}:{n}",  # no id column: the row's place
            root=None,
            parent=_key(rec.get(col["parent"])),
            created=_plain(rec.get(col["created"])),
        )
        text = rec.get(col["text"])
        text = "" if text is None else str(text)
        post.dropped = "deleted" if _truthy(rec.get(col["deleted"])) else _gone(text) or (None if text.strip() else "empty")
        if not post.dropped:
            post.author = pseudo(str(rec.get(col["author"]) or ""))
            post.title = pseudo.mentions(str(rec.get(col["title"]) or "").strip())
            post.text = pseudo.mentions(text.strip())
        yield post


def reddit_posts(records: Iterable[dict], pseudo: Pseudonyms, stats: Counter) -> Iterator[Post]:
    """Submissions (``t3_``) and comments (``t1_``), threaded by ``link_id``."""
    for rec in records:
        rid = _key(rec.get("id"))
        if rid is None:
            stats["skipped:bad_record"] += 1
            continue
        extra = {"subreddit": rec["subreddit"]} if rec.get("subreddit") else {}
        if "link_id" in rec:  # a comment
            post = Post(id=f"t1_{rid}", root=_key(rec.get("link_id")), parent=_key(rec.get("parent_id")), extra=extra)
            text = html.unescape(rec.get("body") or "")
            post.dropped = _gone(text)
            title = ""
        elif "title" in rec:  # a submission; a link post's body is its URL
            post = Post(id=f"t3_{rid}", root=f"t3_{rid}", parent=None, extra=extra)
            text = html.unescape(rec.get("selftext") or ("" if rec.get("is_self") else rec.get("url") or ""))
            title = html.unescape(rec.get("title") or "")
            removed = rec.get("removed_by_category")
            post.dropped = _gone(text) or (("deleted" if removed == "deleted" else "removed") if removed else None)
        else:
            stats["skipped:bad_record"] += 1
            continue
        if post.root is None:
            stats["skipped:bad_record"] += 1
            continue
        post.created = _plain(rec.get("created_utc"))
        if not post.dropped:
            post.author = pseudo(str(rec.get("author") or ""))
            post.title = pseudo.mentions(title.strip())
            post.text = pseudo.mentions(text.strip())
            if not post.text and not post.title:
                post.dropped = "empty"
        yield post


def stackexchange_posts(path: Path, pseudo: Pseudonyms, stats: Counter) -> Iterator[Post]:
    """Questions (PostTypeId 1) and answers (2) of a ``Posts.xml``; answers by score.

    The site is the name of the folder holding ``Posts.xml`` (as unpacked from
    ``cooking.stackexchange.com.7z``); post ids are numbered per site, so it prefixes them.
    """
    from defusedxml.ElementTree import iterparse

    site = path.parent.name or "stackexchange"
    with open_binary(path) as f:
        context = iterparse(f, events=("start", "end"))
        _, root = next(context)
        for event, elem in context:
            if event != "end" or elem.tag != "row":
                continue
            row = dict(elem.attrib)
            root.clear()  # iterparse keeps every parsed element under the root otherwise
            kind = row.get("PostTypeId")
            if kind not in ("1", "2"):
                stats["skipped:not_question_or_answer"] += 1
                continue
            pid = f"{site}/{row.get('Id')}"
            if kind == "1":
                tags = [t for t in re.split(r"[<>|]", row.get("Tags") or "") if t]
                post = Post(id=pid, root=pid, parent=None, extra={"site": site, "tags": tags})
            else:
                parent = f"{site}/{row.get('ParentId')}"
                post = Post(id=pid, root=parent, parent=parent, extra={"site": site})
            post.created = row.get("CreationDate")
            try:
                post.rank = -float(row.get("Score") or 0) if kind == "2" else 0.0
            except ValueError:
                post.rank = 0.0
            if row.get("DeletionDate"):
                post.dropped = "deleted"
            else:
                text = html_to_text(row.get("Body") or "")
                post.dropped = _gone(text) or (None if text else "empty")
            if not post.dropped:
                post.author = pseudo(row.get("OwnerUserId") or row.get("OwnerDisplayName") or "")
                post.title = pseudo.mentions(html.unescape(row.get("Title") or "").strip())
                post.text = pseudo.mentions(text)
            yield post
