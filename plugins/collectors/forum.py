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
from lmforge.engine.config import bad_value

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
        # an empty list of paths is allowed here (the default must build) and refused when collecting
        if any(not entry.strip() for entry in self.paths):
            raise bad_value("paths", self.paths, "an entry is empty; each is a dump file, a folder or a glob", ["/data/RC_2019-04.zst"])
        if self.format not in FORMATS:
            raise bad_value("format", self.format, f"must be one of {', '.join(FORMATS)}", "auto")
        if unknown := sorted(set(self.fields) - set(FIELDS)):
            raise ValueError(f"fields: unknown key(s) {', '.join(unknown)}; the mapping takes {', '.join(FIELDS)}; e.g. fields.text=body")
        for key, column in self.fields.items():
            if not column.strip():
                raise bad_value(f"fields.{key}", column, "must name the dump's column", key)
        if not self.salt:
            raise bad_value("salt", self.salt, "must not be empty, since author pseudonyms are an HMAC keyed by it", "my-secret-salt")


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

