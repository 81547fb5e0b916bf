"""The functions of the running interpreter's standard library, for the built-in tasks' demos.

Each public function or method with a docstring, read with ``ast`` (nothing is imported):
its dotted name, its package, its source without the docstring, and the docstring. The
files are those ``collector=stdlib`` reads. Parsing the whole library takes seconds, so
the list is cached as JSON in the stage cache folder (``$LMFORGE_CACHE_DIR``, else
``~/.cache/lmforge``), keyed on the Python version, and kept in memory once read.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

FORMAT = 2  # bump when what is harvested changes: the cached file is then rebuilt
MAX_LINES = 40  # functions longer than this (without the docstring) are left out: the demos stay short
# Ten of the largest packages (the classify demo's classes) and well-known modules. Parsing
# these instead of the whole library (about 4,000 functions) keeps a first build to a second.
PACKAGES = frozenset(
    "tkinter idlelib asyncio logging xml multiprocessing unittest email http importlib "
    "json textwrap shutil string functools collections pathlib random statistics difflib "
    "csv argparse calendar fractions heapq bisect glob fnmatch base64 ipaddress gzip zipfile "
    "tarfile configparser pprint copy inspect dataclasses enum contextlib urllib".split()
)


@dataclass(frozen=True)
class Function:
    name: str  # dotted: json.dumps, email.message.Message.get_payload
    package: str  # the top-level package or module: json, email
    source: str  # the def line and body, dedented, without the docstring
    doc: str  # the docstring, cleaned (inspect.cleandoc)

    @property
    def summary(self) -> str:
        """The docstring's first line."""
        return self.doc.strip().splitlines()[0].strip()

    @property
    def first_sentence(self) -> str:
        """The docstring's first sentence, across lines of its first paragraph."""
        paragraph = " ".join(self.doc.strip().split("\n\n")[0].split())
        match = re.match(r"(.+?[.!?])(\s|$)", paragraph)
        return (match.group(1) if match else paragraph).strip()


def cache_file() -> Path:
    root = Path(os.environ.get("LMFORGE_CACHE_DIR") or Path.home() / ".cache" / "lmforge")
    return root / "tasks" / f"stdlib-functions-{FORMAT}-{platform.python_implementation()}-{platform.python_version()}.json"


@lru_cache(maxsize=None)
def functions() -> tuple[Function, ...]:
    """Every harvested function, in the order of the files and of the source.

    Read once per process: from the cache file when there is one, else by parsing.
    """
    cache = cache_file()
    if cache.is_file():
        try:
            return tuple(Function(**item) for item in json.loads(cache.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            pass  # a damaged cache is rebuilt
    found = tuple(harvest())
    try:
        from lmforge.files import atomic_write_json

        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cache, [asdict(f) for f in found])
    except OSError:
        pass  # a read-only cache folder only costs the parse next time
    return found


def harvest() -> list[Function]:
    from lmforge.plugins.collectors.stdlib import Stdlib

    collector = Stdlib()
    root = collector.root
    found, seen = [], set()
    for path in collector.files():
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
        if not parts or parts[0] not in PACKAGES or any(p.startswith("_") or not p.isidentifier() for p in parts):
            continue  # private modules (_pydecimal), and files that are not modules
        try:
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        lines = text.splitlines()
        module = ".".join(parts)
        for node, owner in _public_functions(tree):
            doc = ast.get_docstring(node)
            first = node.body[0]
            if not doc or not doc.strip() or len(node.body) < 2:
                continue  # no docstring, or nothing but one
            body = lines[node.lineno - 1 : first.lineno - 1] + lines[first.end_lineno : node.end_lineno]
            if len(body) > MAX_LINES:
                continue
            indent = min((len(l) - len(l.lstrip()) for l in body if l.strip()), default=0)
            source = "\n".join(l[indent:] for l in body).strip("\n")
            name = ".".join([module, *owner, node.name])
            if name not in seen:  # a function defined twice (per platform): the first one
                seen.add(name)
                found.append(Function(name=name, package=parts[0], source=source, doc=doc))
    return found


def _public_functions(tree: ast.Module):
    """Top-level functions and the methods of top-level classes, when none of the names is private."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            yield node, []
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not item.name.startswith("_"):
                    yield item, [node.name]


def words(identifier: str) -> str:
    """An identifier as words: ``get_close_matches`` and ``getCloseMatches`` -> "get close matches"."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", identifier.replace("_", " "))
    return " ".join(spaced.lower().split())
