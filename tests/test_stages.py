"""The stage cache: keys, atomic publication, locking and resume from complete pieces."""

from __future__ import annotations


import pytest

from lmforge.contracts import Collector, Document
from lmforge.corpus import collect, read_documents, shard_paths
from lmforge.stages import StageCache, stage_key


def test_the_key_follows_config_versions_upstream_and_token():
    base = stage_key("collect", {"a": 1}, {"lmforge": "1"}, ["up"], "py3.11")
    assert base == stage_key("collect", {"a": 1}, {"lmforge": "1"}, ["up"], "py3.11")
    for changed in (
        stage_key("collect", {"a": 2}, {"lmforge": "1"}, ["up"], "py3.11"),
        stage_key("collect", {"a": 1}, {"lmforge": "2"}, ["up"], "py3.11"),
        stage_key("collect", {"a": 1}, {"lmforge": "1"}, ["other"], "py3.11"),
        stage_key("collect", {"a": 1}, {"lmforge": "1"}, ["up"], "py3.12"),
        stage_key("tokenize", {"a": 1}, {"lmforge": "1"}, ["up"], "py3.11"),
    ):
        assert changed != base


def test_a_stage_is_published_only_when_its_body_completes(tmp_path):
    cache = StageCache(tmp_path)
    with pytest.raises(RuntimeError):
        with cache.open("s", "k") as stage:
            (stage.dir / "piece").write_text("done")
            raise RuntimeError("crash")
    assert not cache.path("s", "k").exists()
    with cache.open("s", "k") as stage:
        assert not stage.hit and (stage.dir / "piece").read_text() == "done"  # the piece survived
    with cache.open("s", "k") as stage:
        assert stage.hit and stage.dir == cache.path("s", "k")


class Numbers(Collector):
    """Yields numbered documents and can be told to crash after some of them."""

    name = "numbers"

    def __init__(self, n: int, crash_after: int | None = None):
        super().__init__()
        self.n, self.crash_after, self.produced = n, crash_after, 0

    def documents(self, workdir, stats):
        for i in range(self.n):
            if self.crash_after is not None and i == self.crash_after:
                raise KeyboardInterrupt("killed")
            self.produced += 1
            yield Document(id=f"n{i}", text=f"document {i} " * 50, source=self.name)


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


def test_preprocess_resumes_shard_by_shard_and_counts_drops(tmp_path):
    from lmforge.corpus import preprocess
    from lmforge.plugins.preprocessors.normalize import Normalize

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir(), out.mkdir()
    collect(Numbers(40), src, shard_bytes=5_000)
    first = shard_paths(src)[0]
    preprocess([Normalize()], src, out)
    done = {p.name: p.stat().st_mtime_ns for p in shard_paths(out)}
    shard_paths(out)[-1].unlink()  # as if the run died before the last shard
    report = preprocess([Normalize()], src, out)
    assert report["documents"] == 40 == report["documents_in"]
    assert shard_paths(out)[0].stat().st_mtime_ns == done[first.name]  # finished shards are kept


def test_preprocess_runs_in_worker_processes(tmp_path):
    from lmforge.corpus import preprocess
    from lmforge.plugins.preprocessors.normalize import Normalize, NormalizeConfig

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir(), out.mkdir()
    collect(Numbers(40), src, shard_bytes=5_000)
    report = preprocess([Normalize(NormalizeConfig(lowercase=True, whitespace="collapse"))], src, out, n_workers=2)
    texts = [d.text for d in read_documents(shard_paths(out))]
    assert len(texts) == 40 and all(t == t.strip() and "  " not in t for t in texts)
    assert report["shards"] == len(shard_paths(src))


def test_tokenize_writes_shards_that_decode_back_and_split_by_document(tmp_path):
    from lmforge.plugins.tokenizers.bpe import BPE, BPEConfig
    from lmforge.tokens import load_shards, split_tokens, tokenize

    src, out = tmp_path / "src", tmp_path / "tok"
    src.mkdir(), out.mkdir()
    collect(Numbers(40), src, shard_bytes=5_000)
    tok = BPE(BPEConfig(vocab_size=300))
    report = tokenize(tok, src, out)
    assert report["documents"] == 40 and report["dtype"] == "uint16" and report["bytes_per_token"] > 1
    shard = load_shards(out)[0]
    first = shard.tokens[shard.offsets[0] : shard.offsets[1]].tolist()
    assert first[-1] == tok.special_ids["eos"]
    assert tok.decode(first[:-1]) == next(read_documents(shard_paths(src))).text
    train, val, _ = split_tokens(out, 0.25)
    train2, val2, _ = split_tokens(out, 0.25)
    assert len(train) + len(val) == report["tokens"] and len(val) > 0
    assert (train == train2).all() and (val == val2).all()


class Echo(Collector):
    """Yields the given texts, so duplicates can be staged."""

    name = "echo"

    def __init__(self, texts):
        super().__init__()
        self.texts = texts

    def documents(self, workdir, stats):
        for i, text in enumerate(self.texts):
            yield Document(id=f"e{i}", text=text, source="echo" if i % 2 else "other")


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


def test_the_preprocess_report_counts_words_before_and_after(tmp_path):
    from lmforge.corpus import preprocess
    from lmforge.plugins.preprocessors.normalize import Normalize

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir(), out.mkdir()
    collect(Echo(["one two  three", "four\x00 five", "\x01\x02"]), src)
    report = preprocess([Normalize()], src, out, progress=True)
    assert report["words_before"] == 6 and report["words_after"] == 5  # the control-only document is dropped
    assert report["counts"] == {"dropped:empty_after_normalize": 1}


def test_a_resumed_preprocess_restores_corpus_wide_step_state(tmp_path):
    """Dedup after an interruption still knows the documents of the shards already done."""
    from lmforge.corpus import preprocess
    from lmforge.plugins.preprocessors.dedup import Dedup

    class DiesAtTheFourthShard(Dedup):
        shards = 0

        def process(self, docs, stats):
            self.shards += 1
            if self.shards == 4:
                raise KeyboardInterrupt("killed")
            yield from super().process(docs, stats)

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir(), out.mkdir()
    paragraph = "the quick brown fox jumps over the lazy dog near the river bank today " * 6
    collect(Echo([f"{paragraph} number {i}" for i in range(6)]), src, shard_bytes=1)  # a shard per document
    with pytest.raises(KeyboardInterrupt):
        preprocess([DiesAtTheFourthShard()], src, out)
    assert len(shard_paths(out)) == 3
    report = preprocess([Dedup()], src, out)
    assert report["documents"] == 1  # the near-duplicates in shards 3-5 met the restored index
    assert report["counts"] == {"dropped:near_duplicate": 5}
