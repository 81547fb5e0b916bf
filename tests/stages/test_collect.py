"""The collect stage: shards, resume after an interruption, duplicates, sources, progress."""

from __future__ import annotations

import pytest
from sample_collectors import Echo, Numbers

from lmforge.contracts import Collector, Document
from lmforge.stages.collect import collect
from lmforge.stages.shards import read_documents, shard_paths


def test_an_interrupted_collection_resumes_from_its_last_complete_shard(tmp_path):
    shard_bytes = 5_000  # about 8 documents a shard
    with pytest.raises(KeyboardInterrupt):
        collect(Numbers(100, crash_after=60), tmp_path, shard_bytes=shard_bytes)
    kept = shard_paths(tmp_path)
    assert len(kept) >= 5 and not list(tmp_path.glob(".*tmp*"))  # only complete shards, no torn files
    stored = sum(1 for _ in read_documents(kept))

    resumed = Numbers(100)
    report = collect(resumed, tmp_path, shard_bytes=shard_bytes)
    ids = [d.id for d in read_documents(shard_paths(tmp_path))]
    assert ids == [f"n{i}" for i in range(100)]  # nothing lost, nothing twice
    assert report["documents"] == 100
    assert stored > 0 and kept[0].stat().st_mtime_ns == shard_paths(tmp_path)[0].stat().st_mtime_ns  # not rewritten


def test_exact_duplicates_are_dropped_and_counted_and_sources_tallied(tmp_path):
    report = collect(Echo(["a" * 10, "b" * 10, "a" * 10, "c" * 20]), tmp_path)
    assert [d.text for d in read_documents(shard_paths(tmp_path))] == ["a" * 10, "b" * 10, "c" * 20]
    assert report["counts"] == {"skipped:duplicate_content": 1}
    assert report["sources"]["other"] == {"documents": 1, "bytes": 10, "share_of_bytes": 0.25}
    assert report["sources"]["echo"]["bytes"] == 30


def test_a_resumed_collection_still_drops_duplicates_of_stored_documents(tmp_path):
    texts = [f"doc {i} " * 300 for i in range(30)] + ["doc 3 " * 300]
    with pytest.raises(KeyboardInterrupt):
        collect(_Crashing(texts, crash_after=25), tmp_path, shard_bytes=5_000)
    report = collect(Echo(texts), tmp_path, shard_bytes=5_000)
    assert report["documents"] == 30 and report["counts"]["skipped:duplicate_content"] == 1


class _Crashing(Echo):
    def __init__(self, texts, crash_after):
        super().__init__(texts)
        self.crash_after = crash_after

    def documents(self, workdir, stats):
        for i, doc in enumerate(super().documents(workdir, stats)):
            if i == self.crash_after:
                raise KeyboardInterrupt
            yield doc


class Resumable(Collector):
    """Keeps its own position in workdir, as a crawler would, and never replays."""

    name = "resumable"
    resumable = True

    def __init__(self, n, crash_after=None):
        super().__init__()
        self.n, self.crash_after, self.yielded, self.calls = n, crash_after, [], 0

    def documents(self, workdir, stats):
        self.state = workdir / "position"
        start = int(self.state.read_text()) if self.state.exists() else 0
        for i in range(start, self.n):
            if i == self.crash_after:
                raise KeyboardInterrupt
            stats["fetched"] += 1
            self.yielded.append(i)
            yield Document(id=f"r{i}", text=f"page {i} " * 100, source=self.name)

    def checkpoint(self):
        self.calls += 1
        self.state.write_text(str(self.yielded[-1] + 1))


def test_a_resumable_collector_continues_from_its_checkpoint_without_replaying(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        collect(Resumable(40, crash_after=30), tmp_path, shard_bytes=3_000)
    stored = sum(1 for _ in read_documents(shard_paths(tmp_path)))
    again = Resumable(40)
    report = collect(again, tmp_path, shard_bytes=3_000)
    assert again.yielded[0] == stored  # nothing stored is produced again
    assert [d.id for d in read_documents(shard_paths(tmp_path))] == [f"r{i}" for i in range(40)]
    assert report["counts"]["fetched"] == 40  # counts carried across the interruption
    assert again.calls >= 1


def test_the_progress_line_shows_documents_bytes_and_rate(tmp_path, capsys):
    collect(Echo([f"text {i} " * 40 for i in range(200)]), tmp_path, progress=True)
    out = capsys.readouterr().out
    assert "collect echo: 200 docs" in out and "MB/s" in out
