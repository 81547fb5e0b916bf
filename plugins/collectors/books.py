"""``collector=books``: local e-books, articles and papers.

Reads ``.txt``, ``.md``, ``.html``, ``.epub`` and ``.pdf`` files from folders or globs,
in sorted order. Project Gutenberg headers and licence footers are cut, hard-wrapped
lines are joined into paragraphs (words hyphenated across a line break are mended), and
the title and author go into ``meta`` where the file names them. A file that cannot be
read is skipped and counted by reason: ``corrupt``, ``encrypted``, ``binary``,
``undecodable``, ``unreadable`` or ``no_text`` (a scanned PDF), as
``stats["skipped:corrupt"]``, and named with its reason in ``skipped.jsonl``. The readers live in ``_books`` and import ebooklib, pypdf
and trafilatura only when used.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List

from lmforge import hookimpl
from lmforge.contracts import Collector, Document
from lmforge.engine.config import bad_value
from lmforge.errors import ConfigError

log = logging.getLogger("lmforge")

# extension -> the format recorded in meta; every one has a reader in _books
FORMATS = {
    ".txt": "txt", ".text": "txt", ".md": "md", ".markdown": "md",
    ".html": "html", ".htm": "html", ".xhtml": "html", ".epub": "epub", ".pdf": "pdf",
}  # fmt: skip


@dataclass
class BooksConfig:
    paths: List[str] = field(default_factory=list)
    extensions: List[str] = field(default_factory=lambda: [".txt", ".md", ".html", ".epub", ".pdf"])

    def __post_init__(self) -> None:
        # an empty list of paths is allowed here (the default must build) and refused when collecting
        if any(not entry.strip() for entry in self.paths):
            raise bad_value("paths", self.paths, "an entry is empty; each is a folder or a glob of files", ["~/books"])
        self.extensions = [e.lower() if e.startswith(".") else f".{e.lower()}" for e in self.extensions]
        if not self.extensions:
            raise bad_value("extensions", self.extensions, f"must name one or more of {', '.join(FORMATS)}", [".txt"])
        if unknown := [e for e in self.extensions if e not in FORMATS]:
            raise bad_value(
                "extensions", self.extensions, f"no reader for {', '.join(unknown)}; the books collector reads {', '.join(FORMATS)}", [".txt", ".epub"]
            )


class Books(Collector):
    name = "books"
    Config = BooksConfig

    def files(self) -> list[tuple[Path, str]]:
        """Every file to read with its id path (``<folder name>/<path inside it>``), in order.

        Entries of ``paths`` are taken in the order given, the files of each in sorted
        order; a file reached twice is read once.
        """
        if not self.config.paths:
            raise ConfigError("collector.paths is empty: list the folders or globs to read, as 'collector.paths=[\"~/books\"]'")
        wanted = set(self.config.extensions)
        found: list[tuple[Path, str]] = []
        seen: set[Path] = set()
        for entry in self.config.paths:
            pattern = os.path.expanduser(entry)
            if glob.has_magic(pattern):
                root = Path(_static_prefix(pattern))
                matches = [Path(p) for p in sorted(glob.glob(pattern, recursive=True))]
            else:
                root, matches = Path(pattern), [Path(pattern)]
                if root.is_file():
                    root = root.parent
            if not matches:
                raise ConfigError(f"collector.paths: {entry!r} matches no file or folder; check the path")
            candidates = []
            for match in matches:
                if match.is_dir():
                    candidates += _walk(match)
                elif not match.exists():
                    raise ConfigError(f"collector.paths: {entry!r} does not exist; check the path")
                else:
                    candidates.append(match)
            for path in candidates:
                key = path.resolve()
                if path.suffix.lower() in wanted and key not in seen:
                    seen.add(key)
                    found.append((path, f"{root.resolve().name}/{path.relative_to(root).as_posix()}"))
        return found

    def cache_token(self) -> str:
        """The listed files' names, sizes and modification times: new or edited books recollect."""
        digest = hashlib.sha256()
        for path, rel in self.files():
            stat = path.stat()
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

    def documents(self, workdir: Path, stats: Counter) -> Iterator[Document]:
        from lmforge.plugins.collectors import _books
        from lmforge.plugins.collectors._skiplog import SkipLog

        ids: set[str] = set()
        with SkipLog(workdir) as skipped:
            for path, rel in self.files():
                if not rel.isprintable():  # a file name that is not UTF-8 cannot make an id
                    stats["skipped:bad_path"] += 1
                    skipped.add(str(path), "bad_path")
                    continue
                try:
                    book = _books.read(path)
                except _books.Unreadable as exc:
                    log.debug("books: skipped %s (%s)", path, exc)
                    stats[f"skipped:{exc.reason}"] += 1
                    skipped.add(str(path), exc.reason, str(exc))
                    continue
                yield self._document(path, rel, book, ids)

    def _document(self, path: Path, rel: str, book, ids: set[str]) -> Document:
        """The book's document; ``ids`` holds the ids given so far, and gets this one."""
        doc_id = f"books/{rel}"
        n = 1
        while doc_id in ids:  # two folders of the same name hold the same path
            n += 1
            doc_id = f"books/{rel}#{n}"
        ids.add(doc_id)
        return Document(
            id=doc_id,
            text=book.text,
            source=self.name,
            uri=path.resolve().as_uri(),
            meta={"path": rel, "format": FORMATS[path.suffix.lower()], **book.meta},
        )


def _static_prefix(pattern: str) -> str:
    """The folder part of a glob before its first wildcard: ids are relative to it."""
    parts = Path(pattern).parts
    fixed = parts[: next(i for i, p in enumerate(parts) if glob.has_magic(p))]
    return str(Path(*fixed)) if fixed else "."


def _walk(folder: Path) -> list[Path]:
    """Files under ``folder`` in sorted order, skipping hidden files and folders."""
    out = []
    for here, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(here, n) for n in sorted(names) if not n.startswith(".")]
    return sorted(out)


@hookimpl
def register_collectors(register):
    register(Books)
