"""``collector=code``: source files from local trees and git repositories.

Each entry of ``repos`` is a local folder, read in place, or a URL, cloned with
``git clone --depth 1`` into the stage's workdir (a resumed run reuses the clone). The
files git tracks are read in sorted order; those of the chosen ``languages`` become
documents; the rest are counted by reason: ``vendored``, ``generated`` (markers such as
"DO NOT EDIT" in the header, lock files), ``language`` (not chosen), ``oversized``,
``binary``, ``minified``, ``empty``, ``symlink``, ``submodule``, ``missing``, ``bad_path``, and named
in ``skipped.jsonl``. ``Document.license`` is the file's own ``SPDX-License-Identifier``
header, else the licence of the repository's LICENSE/COPYING file.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List

from lmforge import hookimpl
from lmforge.contracts import Collector, Document
from lmforge.engine.config import bad_value, check_count
from lmforge.errors import ConfigError
from lmforge.plugins.collectors import _code  # standard library only: cheap to import

log = logging.getLogger("lmforge")


@dataclass
class CodeConfig:
    repos: List[str] = field(default_factory=list)
    languages: List[str] = field(default_factory=lambda: ["python", "javascript", "typescript", "rust", "go", "c", "cpp", "java", "shell"])
    max_file_bytes: int = 1_000_000
    max_line_length: int = 1000
    max_avg_line_length: int = 100

    def __post_init__(self) -> None:
        # an empty list of repos is allowed here (the default must build) and refused when collecting
        if any(not spec.strip() for spec in self.repos):
            raise bad_value("repos", self.repos, "an entry is empty; each is a local folder or a git URL", ["~/src/project"])
        self.languages = [lang.lower() for lang in self.languages]
        if not self.languages:
            raise bad_value("languages", self.languages, f"must name one or more of {', '.join(sorted(_code.LANGUAGES))}", ["python"])
        if unknown := [lang for lang in self.languages if lang not in _code.LANGUAGES]:
            raise bad_value("languages", self.languages, f"unknown {', '.join(unknown)}; choose from {', '.join(sorted(_code.LANGUAGES))}", ["python"])
        check_count(self, "max_file_bytes", 1, 1_000_000)
        check_count(self, "max_line_length", 1, 1000)
        check_count(self, "max_avg_line_length", 1, 100)


class Code(Collector):
    name = "code"
    Config = CodeConfig

    def _specs(self) -> list[str]:
        if not self.config.repos:
            raise ConfigError("collector.repos is empty: list local folders or git URLs, as 'collector.repos=[\"~/src/project\"]'")
        return list(dict.fromkeys(self.config.repos))  # a repository listed twice is read once

    def cache_token(self) -> str:
        """Local repositories: HEAD and tracked files' sizes and times, so commits or edits
        recollect. A URL counts by itself, without asking the network: a cached clone is
        reused offline, and a fresh one needs another URL (a tag or commit in it) or the
        stage cache cleared."""
        digest = hashlib.sha256()
        specs = self._specs()
        for spec, name in zip(specs, _code.repo_names(specs)):
            if _code.is_url(spec):
                digest.update(f"{spec}\n".encode())
                continue
            repo = _code.Repo.open(spec, name, workdir=Path())
            digest.update(f"{spec}\0{repo.commit}\n".encode())
            for path in repo.files():
                try:
                    stat = (repo.root / path).lstat()
                except OSError:
                    continue
                digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

    def documents(self, workdir: Path, stats: Counter) -> Iterator[Document]:
        from lmforge.plugins.collectors._skiplog import SkipLog

        specs = self._specs()
        with SkipLog(workdir) as skipped:
            for spec, name in zip(specs, _code.repo_names(specs)):
                yield from self._repo_documents(spec, name, workdir, stats, skipped)

    def _repo_documents(self, spec: str, name: str, workdir: Path, stats: Counter, skipped) -> Iterator[Document]:
        repo = _code.Repo.open(spec, name, workdir)
        tracked = repo.files()
        license = _code.repo_license(repo.root, tracked)
        log.info("code: %s at %s, %d files, licence %s", spec, repo.commit[:12] or "(no commit)", len(tracked), license or "unknown")
        for path in tracked:
            language = _code.language(path)
            text, reason = self._read(repo.root / path, path, language)
            if reason:
                stats[f"skipped:{reason}"] += 1
                skipped.add(repo.uri(path), reason)
                continue
            yield Document(
                id=f"code/{repo.name}/{path}",
                text=text,
                source=self.name,
                uri=repo.uri(path),
                license=_code.spdx_header(text) or license,
                meta={"repo": repo.name, "path": path, "commit": repo.commit, "language": language},
            )

    def _read(self, file: Path, path: str, language: str | None) -> tuple[str, str | None]:
        """The file's text, or "" and the reason it is skipped."""
        if not path.isprintable():  # a name that is not UTF-8 (or holds controls) makes no id
            return "", "bad_path"
        if reason := _code.path_skip(path):
            return "", reason
        if language not in self.config.languages:
            return "", "language"
        if file.is_symlink():  # its target may lie outside the repository
            return "", "symlink"
        if file.is_dir():  # a submodule: list it in repos to read it
            return "", "submodule"
        if not file.is_file():  # deleted since it was committed
            return "", "missing"
        try:
            if file.stat().st_size > self.config.max_file_bytes:
                return "", "oversized"
            raw = file.read_bytes()
        except OSError:
            return "", "unreadable"
        text = _code.decode(raw)
        if text is None:
            return "", "binary"
        reason = _code.content_skip(text, self.config.max_line_length, self.config.max_avg_line_length)
        return ("", reason) if reason else (text, None)


@hookimpl
def register_collectors(register):
    register(Code)
