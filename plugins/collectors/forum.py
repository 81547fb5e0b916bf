"""``collector=forum``: user-generated content, rebuilt into conversations.

Reads generic dumps (JSONL, CSV, Parquet, with a field mapping), Reddit dumps (JSONL,
Pushshift's zstd-compressed ``.zst`` included) and Stack Exchange ``Posts.xml``. Posts
are grouped into threads, so one document is one conversation: a submission and its
comment tree, or a question and its answers. Deleted and removed posts are dropped and
counted; authors become stable pseudonyms (``user_3fa2c1``, an HMAC of the name keyed
by ``salt``). The readers, the on-disk thread index and the rendering live in
``_forum``, imported only when documents are read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List

from lmforge import hookimpl
from lmforge.contracts import Collector, Document

FORMATS = ("auto", "jsonl", "csv", "parquet", "reddit", "stackexchange")
FIELDS = ("id", "text", "author", "parent", "title", "created", "deleted")


@dataclass
class ForumConfig:
    paths: List[str] = field(default_factory=list)
    format: str = "auto"
    fields: Dict[str, str] = field(default_factory=lambda: {f: f for f in FIELDS})
    salt: str = "lmforge"
    license: str = ""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format={self.format!r} is not one of {', '.join(FORMATS)}")
        if unknown := sorted(set(self.fields) - set(FIELDS)):
            raise ValueError(f"fields: unknown key(s) {', '.join(unknown)}; the mapping takes {', '.join(FIELDS)}")
        if not self.salt:
            raise ValueError("salt must not be empty: pseudonyms are an HMAC keyed by it")


class Forum(Collector):
    name = "forum"
    Config = ForumConfig

    def cache_token(self) -> str:
        # the dumps' sizes and modification times: a re-downloaded dump is collected again
        from lmforge.plugins.collectors import _forum

        return _forum.fingerprint(_forum.expand_paths(self.config.paths))

    def documents(self, workdir: Path, stats: Counter) -> Iterator[Document]:
        from lmforge.plugins.collectors import _forum

        yield from _forum.documents(self.config, self.name, Path(workdir), stats)


@hookimpl
def register_collectors(register):
    register(Forum)

