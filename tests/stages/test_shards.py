"""The document-shard format, and the durable write every shard, report and token array goes through."""

from __future__ import annotations

from collections import Counter

import pytest

from lmforge.contracts import Document
from lmforge.files import atomic_write
from lmforge.stages.shards import read_documents, shard_counts, shard_meta, write_shard


def test_a_shard_reads_back_its_documents_and_carries_its_counts(tmp_path):
    docs = [Document(id=f"d{i}", text=f"text {i}", source="s", meta={"i": i}) for i in range(3)]
    path = tmp_path / "docs-00000.parquet"
    write_shard(docs, path, counts=Counter({"dropped:x": 2}), position=7)
    assert list(read_documents([path])) == docs
    assert shard_counts(path) == {"dropped:x": 2} and shard_meta(path)["lmforge.position"] == 7


def test_a_write_that_raises_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "report.json"
    atomic_write(path, "old")

    def half_then_fail(f):
        f.write(b"new, but only ha")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_shard_write_that_fails_keeps_the_complete_shard(tmp_path):
    path = tmp_path / "docs-00000.parquet"
    write_shard([Document(id="a", text="kept", source="s")], path)
    with pytest.raises(Exception):
        write_shard([Document(id="b", text="lost", source="s", meta={"bad": object()})], path)
    assert [d.text for d in read_documents([path])] == ["kept"]
    assert [p.name for p in tmp_path.iterdir()] == ["docs-00000.parquet"]


def test_a_file_built_at_a_path_is_published_only_when_its_block_completes(tmp_path):
    """``atomic_path``, for writers that open the file themselves (the forum's SQLite index)."""
    from lmforge.files import atomic_path

    path = tmp_path / "index.sqlite"
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert not list(tmp_path.iterdir())
    with atomic_path(path) as tmp:
        tmp.write_text("whole")
    assert path.read_text() == "whole" and [p.name for p in tmp_path.iterdir()] == ["index.sqlite"]
