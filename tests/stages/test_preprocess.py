"""The preprocess stage: resume shard by shard, worker processes, counts and step state."""

from __future__ import annotations

import multiprocessing
import os

import pytest
from sample_collectors import Echo, Numbers

from lmforge.errors import DataError
from lmforge.plugins.preprocessors.dedup import Dedup
from lmforge.stages.collect import collect
from lmforge.stages.preprocess import preprocess
from lmforge.stages.shards import read_documents, shard_paths


def test_preprocess_resumes_shard_by_shard_and_counts_drops(tmp_path):
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
    from lmforge.plugins.preprocessors.normalize import Normalize, NormalizeConfig

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir(), out.mkdir()
    collect(Numbers(40), src, shard_bytes=5_000)
    report = preprocess([Normalize(NormalizeConfig(lowercase=True, whitespace="collapse"))], src, out, n_workers=2)
    texts = [d.text for d in read_documents(shard_paths(out))]
    assert len(texts) == 40 and all(t == t.strip() and "  " not in t for t in texts)
    assert report["shards"] == len(shard_paths(src))


def test_the_preprocess_report_counts_words_before_and_after(tmp_path):
    from lmforge.plugins.preprocessors.normalize import Normalize

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir(), out.mkdir()
    collect(Echo(["one two  three", "four\x00 five", "\x01\x02"]), src)
    report = preprocess([Normalize()], src, out, progress=True)
    assert report["words_before"] == 6 and report["words_after"] == 5  # the control-only document is dropped
    assert report["counts"] == {"dropped:empty_after_normalize": 1}


def test_a_resumed_preprocess_restores_corpus_wide_step_state(tmp_path):
    """Dedup after an interruption still knows the documents of the shards already done."""
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


class DedupKilledAtShard(Dedup):
    """Dedup that is killed as it starts on shard ``at`` (counting from 1)."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.shards = at, 0

    def process(self, docs, stats):
        self.shards += 1
        if self.shards == self.at:
            raise KeyboardInterrupt("killed")
        yield from super().process(docs, stats)


def _mixed_corpus(src):
    """Shards of one document each: distinct texts, near copies and case-and-space copies."""
    texts = []
    for i in range(12):
        base = " ".join(f"w{i}x{j}" for j in range(60))
        texts += [base, base.replace(f"w{i}x7 ", "changed "), base.upper().replace(" ", "  \n")][: 1 + i % 3]
    collect(Echo(texts), src, shard_bytes=1)


def test_an_interrupted_dedup_resumes_to_the_output_of_an_uninterrupted_run(tmp_path):
    src, straight, resumed = tmp_path / "src", tmp_path / "straight", tmp_path / "resumed"
    for folder in (src, straight, resumed):
        folder.mkdir()
    _mixed_corpus(src)
    expected = preprocess([Dedup()], src, straight)
    with pytest.raises(KeyboardInterrupt):
        preprocess([DedupKilledAtShard(9)], src, resumed)
    assert len(shard_paths(resumed)) == 8 and (resumed / "_work" / "steps.json").is_file()
    report = preprocess([Dedup()], src, resumed)
    assert report == expected and report["counts"]["dropped:near_duplicate"] and report["counts"]["dropped:exact_duplicate"]
    assert [p.read_bytes() for p in shard_paths(resumed)] == [p.read_bytes() for p in shard_paths(straight)]


class Payload:
    """Unpickling this creates ``marker``: the proof that a pickle was loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("planted", ["steps.pkl", "steps.json", "arrays"])
def test_a_pickle_planted_in_the_stage_state_never_runs(tmp_path, planted):
    """A pickle where the old state file was, or in the new state files, is refused, not loaded."""
    import json
    import pickle

    src, out, marker = tmp_path / "src", tmp_path / "stage.partial", tmp_path / "payload-ran"
    src.mkdir(), out.mkdir()
    _mixed_corpus(src)
    with pytest.raises(KeyboardInterrupt):
        preprocess([DedupKilledAtShard(4)], src, out)
    work = out / "_work"
    if planted == "steps.pkl":  # where lmforge kept the state before
        for saved in work.iterdir():
            saved.unlink()
        target = work / "steps.pkl"
    elif planted == "steps.json":
        target = work / "steps.json"
    else:
        target = work / json.loads((work / "steps.json").read_text())["arrays"]
    target.write_bytes(pickle.dumps([Payload(marker)]))
    with pytest.raises(DataError) as caught:
        preprocess([Dedup()], src, out)
    assert not marker.exists()
    message = str(caught.value)
    assert str(work / ("steps.pkl" if planted == "steps.pkl" else "steps.json")) in message
    assert f"delete the unfinished stage folder {out}" in message
    assert len(shard_paths(out)) == 3  # nothing was written past the refusal


def test_a_state_file_naming_an_array_file_elsewhere_is_refused(tmp_path):
    import json

    src, out = tmp_path / "src", tmp_path / "stage.partial"
    src.mkdir(), out.mkdir()
    _mixed_corpus(src)
    with pytest.raises(KeyboardInterrupt):
        preprocess([DedupKilledAtShard(4)], src, out)
    state = out / "_work" / "steps.json"
    saved = json.loads(state.read_text())
    (tmp_path / "elsewhere.npz").write_bytes((out / "_work" / saved["arrays"]).read_bytes())
    state.write_text(json.dumps({**saved, "arrays": "../../elsewhere.npz"}))
    with pytest.raises(DataError, match="not an .npz file beside it"):
        preprocess([Dedup()], src, out)


def _shards(tmp_path):
    """Five small shards in ``src``, and empty output folders beside them."""
    src = tmp_path / "src"
    for folder in (src, tmp_path / "out", tmp_path / "fork", tmp_path / "spawn"):
        folder.mkdir()
    collect(Numbers(40), src, shard_bytes=5_000)
    return src


class Fails:
    """A step whose process raises in the worker on the second shard it sees."""

    name, parallel = "fails", True

    def setup(self):
        self.seen = 0

    def process(self, docs, stats):
        self.seen += 1
        if self.seen == 2:
            raise ValueError("step broke on this part")
        yield from docs


class ExitsTheProcess(Fails):
    def process(self, docs, stats):
        os._exit(3)


def test_an_error_in_a_worker_is_raised_here_with_its_traceback(tmp_path):
    with pytest.raises(ValueError, match="step broke") as caught:
        preprocess([Fails()], _shards(tmp_path), tmp_path / "out", n_workers=2)
    assert "Traceback" in str(caught.value.__cause__)


def test_a_worker_that_dies_is_an_error_not_a_hang(tmp_path):
    with pytest.raises(RuntimeError, match="exited with code 3"):
        preprocess([ExitsTheProcess()], _shards(tmp_path), tmp_path / "out", n_workers=2)


def test_spawned_workers_set_the_steps_up_and_write_what_forked_ones_do(tmp_path, monkeypatch):
    from lmforge.plugins.preprocessors.normalize import Normalize, NormalizeConfig

    src = _shards(tmp_path)
    steps = [Normalize(NormalizeConfig(lowercase=True))]
    forked = preprocess(steps, src, tmp_path / "fork", n_workers=2)
    get_context = multiprocessing.get_context
    monkeypatch.setattr(multiprocessing, "get_context", lambda method=None: get_context(method or "spawn"))
    spawned = preprocess(steps, src, tmp_path / "spawn", n_workers=2)
    assert forked == spawned
    for p in shard_paths(tmp_path / "fork"):
        assert p.read_bytes() == (tmp_path / "spawn" / p.name).read_bytes()


def test_both_workers_get_parts_of_shards_cut_into_many(tmp_path, monkeypatch):
    """Shards cut into more parts than the window still keep every worker busy."""
    from lmforge.plugins.preprocessors.normalize import Normalize, NormalizeConfig
    from lmforge.stages import preprocess as stage

    src, out, serial_out = tmp_path / "src", tmp_path / "out", tmp_path / "serial"
    for folder in (src, out, serial_out):
        folder.mkdir()
    collect(Numbers(400), src, shard_bytes=130_000)  # two shards: workers run only for more than one
    monkeypatch.setattr(stage, "MIN_PART_CHARS", 64)  # cut into far more parts than 6 per worker
    in_flight = []
    submit = stage._Workers.submit

    def counting(self, key, part):
        submit(self, key, part)
        in_flight.append(self.running)

    monkeypatch.setattr(stage._Workers, "submit", counting)
    serial = preprocess([Normalize(NormalizeConfig())], src, serial_out)
    parallel = preprocess([Normalize(NormalizeConfig())], src, out, n_workers=2)
    assert len(in_flight) > 12 and max(in_flight) >= 2, in_flight
    assert [d.text for d in read_documents(shard_paths(out))] == [d.text for d in read_documents(shard_paths(serial_out))]
    assert parallel["documents"] == serial["documents"] == 400
