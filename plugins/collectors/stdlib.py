"""``collector=stdlib``: the running interpreter's standard library as a corpus.

About 12 MB of real Python code and docstrings (test folders excluded) that every
machine has, offline. Files are read in sorted order, so the corpus is the same for the
same Python version.
"""

from __future__ import annotations

import os
import platform
import re
import sysconfig
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional

from lmforge import hookimpl
from lmforge.contracts import Collector, Document
from lmforge.engine.config import bad_value, check_count

TEST_FOLDERS = {"test", "tests", "idle_test"}
NOT_STDLIB = {"site-packages", "dist-packages", "__pycache__"}


@dataclass
class StdlibConfig:
    include_tests: bool = False
    globs: List[str] = field(default_factory=lambda: ["**/*.py"])
    max_bytes: Optional[int] = None

    def __post_init__(self) -> None:
        if not self.globs or any(not g.strip() for g in self.globs):
            raise bad_value("globs", self.globs, "must list one or more non-empty patterns", ["**/*.py"])
        check_count(self, "max_bytes", 1, 10_000_000, optional=True)


def glob_regex(pattern: str) -> re.Pattern:
    """A glob as a regex over POSIX relative paths: ``**/`` spans folders, ``*`` does not."""
    out = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    return re.compile(out)


class Stdlib(Collector):
    name = "stdlib"
    Config = StdlibConfig

    @property
    def root(self) -> Path:
        return Path(sysconfig.get_paths()["stdlib"])

    def cache_token(self) -> str:
        return f"python-{platform.python_version()}-{platform.python_implementation()}"

    def sample_prompts(self) -> list[str]:
        return ["def ", "import ", "class "]

    def files(self) -> list[Path]:
        # os.walk prunes site-packages and test folders instead of globbing through them
        skip = NOT_STDLIB if self.config.include_tests else NOT_STDLIB | TEST_FOLDERS
        patterns = [glob_regex(g) for g in self.config.globs]
        found = []
        for folder, dirs, names in os.walk(self.root):
            dirs[:] = [d for d in dirs if d not in skip]
            rel = Path(folder).relative_to(self.root)
            found += [Path(folder, n) for n in names if any(p.fullmatch((rel / n).as_posix()) for p in patterns)]
        return sorted(found)

    def documents(self, workdir: Path, stats: Counter) -> Iterator[Document]:
        budget = self.config.max_bytes
        version = platform.python_version()
        for path in self.files():
            if budget is not None and path.stat().st_size > budget:
                stats["skipped:over_max_bytes"] += 1  # a smaller file further on may still fit
                continue
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                stats["skipped:not_utf8"] += 1
                continue
            if not text.strip():
                stats["skipped:empty"] += 1
                continue
            if budget is not None:
                budget -= len(raw)
            rel = path.relative_to(self.root).as_posix()
            yield Document(
                id=f"stdlib/{rel}",
                text=text,
                source=self.name,
                uri=path.as_uri(),
                license="PSF-2.0",
                meta={"python": version, "path": rel},
            )


@hookimpl
def register_collectors(register):
    register(Stdlib)
