"""The forum collector's machinery: the thread index, rendering, and the document stream.

Memory stays flat however large the dump: every reader (``_forum_read``) streams (line by line, CSV rows,
Parquet record batches, zstd stream decompression, ``iterparse`` with cleared elements),
and posts go into an SQLite index in ``workdir`` rather than into memory. Once every
file is read, threads come back out of the index one at a time, in the order their first
post appeared in the dump, so only the thread being rendered is held in memory.

The index is built under a temporary name and renamed once complete (``atomic_path``).
Its name is a fingerprint of the inputs and of the options that shape it, so an
interrupted collection that resumes reuses a finished index instead of reading the dump
again; the skip counts of the read are stored with it and restored.

Real author names never reach the index or the documents: a post's author is replaced by
its pseudonym as the post is read, and so is every ``u/<name>`` mention in its text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from lmforge.contracts import Document
from lmforge.errors import ConfigError
from lmforge.files import atomic_path
from lmforge.plugins.collectors._forum_read import (
    Post,
    Pseudonyms,
    _created_key,
    csv_records,
    detect_format,
    expand_paths,
    fingerprint,
    generic_posts,
    jsonl_records,
    parquet_records,
    reddit_posts,
    stackexchange_posts,
)

log = logging.getLogger("lmforge")

INDEX_VERSION = 1
BATCH = 2000  # posts per SQLite insert
DEFAULT_SALT = "lmforge"


# The thread index --------------------------------------------------------------------

SCHEMA = """
CREATE TABLE posts (
    seq INTEGER PRIMARY KEY,  -- reading order
    id TEXT NOT NULL UNIQUE,
    root TEXT, parent TEXT, family TEXT, file INTEGER,
    author TEXT, title TEXT, body TEXT, created, rank REAL, dropped TEXT, extra TEXT
);
CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT);
"""


class Index:
    """Posts on disk, keyed by thread; built once per input fingerprint."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path)

    @classmethod
    def build(cls, path: Path, sources: Iterable[tuple[str, int, Iterator[Post]]], stats: Counter) -> "Index":
        with atomic_path(path) as tmp:
            db = sqlite3.connect(tmp)
            try:
                cls._fill(db, sources, stats)
            finally:
                db.close()
        return cls(path)

    @classmethod
    def _fill(cls, db: sqlite3.Connection, sources: Iterable[tuple[str, int, Iterator[Post]]], stats: Counter) -> None:
        # a crash leaves only the temporary file, never published, so durability while filling buys nothing
        db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA)
        for family, file_no, posts in sources:
            batch: list[tuple] = []
            for post in posts:
                if post.dropped:
                    stats[f"skipped:{post.dropped}"] += 1
                batch.append((
                    f"{family}:{post.id}", f"{family}:{post.root}" if post.root else None,
                    f"{family}:{post.parent}" if post.parent else None, family, file_no, post.author,
                    post.title, post.text, json.dumps(post.created) if post.created is not None else None,
                    post.rank, post.dropped, json.dumps(post.extra) if post.extra else None,
                ))
                if len(batch) >= BATCH:
                    stats["skipped:duplicate"] += len(batch) - cls._insert(db, batch)
                    batch = []
            stats["skipped:duplicate"] += len(batch) - cls._insert(db, batch)
        if not stats["skipped:duplicate"]:
            del stats["skipped:duplicate"]
        cls._resolve_roots(db, stats)
        db.executescript(
            "CREATE INDEX posts_root ON posts(root, seq);"
            "CREATE TABLE threads AS SELECT root, MIN(seq) AS first FROM posts GROUP BY root;"
            "CREATE INDEX threads_first ON threads(first);"
        )
        db.execute("INSERT INTO info VALUES ('stats', ?)", (json.dumps(dict(stats)),))
        db.commit()

    @staticmethod
    def _insert(db: sqlite3.Connection, rows: list[tuple]) -> int:
        cur = db.executemany(
            "INSERT OR IGNORE INTO posts (id, root, parent, family, file, author, title, body, created, rank, dropped, extra) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        return max(cur.rowcount, 0)

    @staticmethod
    def _resolve_roots(db: sqlite3.Connection, stats: Counter) -> None:
        """Generic dumps name only a post's parent: follow the chains up to the thread roots.

        A post whose parent is not in the dump starts a thread of its own. Posts caught in
        a parent cycle reach no root and are dropped.
        """
        if db.execute("SELECT 1 FROM posts WHERE root IS NULL LIMIT 1").fetchone() is None:
            return
        db.executescript(
            """
            CREATE INDEX posts_parent ON posts(parent);
            UPDATE posts SET root = id WHERE root IS NULL
                AND (parent IS NULL OR parent NOT IN (SELECT id FROM posts));
            CREATE TABLE resolved (id TEXT PRIMARY KEY, root TEXT) WITHOUT ROWID;
            INSERT INTO resolved WITH RECURSIVE tree(id, root) AS (
                SELECT id, id FROM posts WHERE root = id AND family = 'generic'
                UNION ALL
                SELECT p.id, tree.root FROM posts p JOIN tree ON p.parent = tree.id WHERE p.root IS NULL
            ) SELECT id, root FROM tree;
            UPDATE posts SET root = (SELECT root FROM resolved WHERE resolved.id = posts.id) WHERE root IS NULL;
            DROP TABLE resolved;
            """
        )
        if cycles := db.execute("DELETE FROM posts WHERE root IS NULL").rowcount:
            stats["skipped:parent_cycle"] += cycles

    def stats(self) -> Counter:
        row = self.db.execute("SELECT value FROM info WHERE key = 'stats'").fetchone()
        return Counter(json.loads(row[0])) if row else Counter()

    def threads(self) -> Iterator[list[sqlite3.Row]]:
        """Each thread's posts, threads in the order their first post was read."""
        self.db.row_factory = sqlite3.Row
        cursor = self.db.execute(
            "SELECT p.* FROM threads t JOIN posts p ON p.root = t.root ORDER BY t.first, p.seq"
        )
        thread: list[sqlite3.Row] = []
        for row in cursor:
            if thread and row["root"] != thread[0]["root"]:
                yield thread
                thread = []
            thread.append(row)
        if thread:
            yield thread

    def close(self) -> None:
        self.db.close()


# Rendering ---------------------------------------------------------------------------


def walk(posts: list[sqlite3.Row], root: str) -> Iterator[tuple[sqlite3.Row, int]]:
    """Depth-first over the reply tree, siblings by (rank, created, reading order).

    Depth 0 is the thread's root post; a post whose parent is missing from the dump hangs
    at depth 1, like a top-level reply.
    """
    ids = {p["id"] for p in posts}
    children: dict[str | None, list[sqlite3.Row]] = {}
    for post in posts:
        parent = post["parent"] if post["parent"] in ids and post["id"] != root else None
        children.setdefault(parent, []).append(post)

    def order(rows: list[sqlite3.Row]) -> list[sqlite3.Row]:
        created = lambda r: _created_key(json.loads(r["created"]) if r["created"] is not None else None)  # noqa: E731
        return sorted(rows, key=lambda r: (r["rank"] or 0.0, created(r), r["seq"]))

    top = sorted(order(children.get(None, [])), key=lambda r: r["id"] != root)  # the root post first
    stack = [(p, 0 if p["id"] == root else 1) for p in reversed(top)]
    while stack:
        post, depth = stack.pop()
        yield post, depth
        stack += [(c, depth + 1) for c in reversed(order(children.get(post["id"], [])))]


def render(posts: Iterable[tuple[sqlite3.Row, int]]) -> tuple[str, list[str]]:
    """The thread as text, and its authors' pseudonyms in order of appearance.

    Each post is a block: its title, if it has one, then ``author: text``. The root post
    and direct replies start at the margin; deeper replies are indented two spaces per
    level, so the tree reads as it did on the site. Dropped posts are left out, but
    their replies stay in place.
    """
    blocks, authors = [], []
    for post, depth in posts:
        if post["dropped"]:
            continue
        lines = [post["title"]] if post["title"] else []
        lines.append(f"{post['author']}: {post['body'] or ''}".rstrip())
        pad = "  " * max(0, depth - 1)
        blocks.append("\n".join(pad + line if line.strip() else "" for line in "\n".join(lines).split("\n")))
        if post["author"] not in authors:
            authors.append(post["author"])
    return "\n\n".join(blocks) + "\n" if blocks else "", authors


def _uri(family: str, root: str, first: sqlite3.Row, extra: dict, paths: list[Path]) -> str:
    local = root.split(":", 1)[1]
    if family == "reddit" and extra.get("subreddit") and local.startswith("t3_"):
        return f"https://www.reddit.com/r/{extra['subreddit']}/comments/{local[3:]}/"
    if family == "stackexchange" and "." in extra.get("site", ""):
        return f"https://{extra['site']}/q/{local.rsplit('/', 1)[1]}"
    return f"{paths[first['file']].resolve().as_uri()}#{local}"


# The collector -----------------------------------------------------------------------


def _family(fmt: str) -> str:
    return fmt if fmt in ("reddit", "stackexchange") else "generic"


def _read(paths: list[Path], config, pseudo: Pseudonyms, stats: Counter) -> Iterator[tuple[str, int, Iterator[Post]]]:
    for n, path in enumerate(paths):
        fmt = detect_format(path) if config.format == "auto" else config.format
        log.info("forum: reading %s as %s", path, fmt)
        if fmt == "reddit":
            posts = reddit_posts(jsonl_records(path, stats), pseudo, stats)
        elif fmt == "stackexchange":
            posts = stackexchange_posts(path, pseudo, stats)
        else:
            if fmt == "jsonl":
                records = jsonl_records(path, stats)
            elif fmt == "csv":
                records = csv_records(path, stats)
            else:
                records = parquet_records(path, stats, config.fields.values())
            posts = generic_posts(records, config.fields, pseudo, stats, origin=path.name)
        yield _family(fmt), n, posts


def documents(config, source: str, workdir: Path, stats: Counter) -> Iterator[Document]:
    if not config.paths:
        raise ConfigError("collector.paths is empty: list the dump files, folders or glob patterns to read, as collector.paths=[/data/RC_2019-04.zst]")
    if config.salt == DEFAULT_SALT:
        log.warning("forum: collector.salt is the public default; set a secret salt so that pseudonyms cannot be matched to names")
    paths = expand_paths(config.paths)
    options = {"version": INDEX_VERSION, "files": fingerprint(paths), "format": config.format, "fields": config.fields, "salt": config.salt}
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]
    workdir.mkdir(parents=True, exist_ok=True)
    index_path = workdir / f"forum-index-{key}.sqlite"
    if index_path.exists():
        log.info("forum: reusing the thread index %s", index_path)
        index = Index(index_path)
        stats.update(index.stats())
    else:
        read: Counter = Counter()
        index = Index.build(index_path, _read(paths, config, Pseudonyms(config.salt), read), read)
        stats.update(read)
    try:
        for thread in index.threads():
            root = thread[0]["root"]
            family = thread[0]["family"]
            by_id = {p["id"]: p for p in thread}
            head = by_id.get(root, thread[0])
            extra = {}
            for post in thread:  # thread-level facts from any post that carries them
                extra.update({k: v for k, v in json.loads(post["extra"] or "{}").items() if k not in extra})
            text, authors = render(walk(thread, root))
            if not text:
                stats["skipped:thread_all_dropped"] += 1
                continue
            local = root.split(":", 1)[1]
            meta = {"format": family, "thread": local, "posts": sum(1 for p in thread if not p["dropped"]), "authors": authors}
            if head["created"] is not None:
                meta["created"] = json.loads(head["created"])
            meta.update(extra)
            yield Document(
                id=f"{source}/{family}/{local}",
                text=text,
                source=source,
                uri=_uri(family, root, head, extra, paths),
                license=config.license,
                meta=meta,
            )
    finally:
        index.close()
