"""``collector=mix``: weighted, budgeted, deterministic mixtures of other collectors."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from support import TINY, lmforge

from lmforge.errors import ConfigError
from lmforge.plugins.collectors.mix import Mix, MixConfig
from lmforge.testing import CollectorContract

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly box jam".split()
STDLIB = {"name": "stdlib", "globs": ["json/*.py", "wsgiref/*.py"]}  # ~100 kB, no file over 22 kB


def write_dump(path, n: int, deleted: int = 0, seed: int = 0):
    """A generic forum dump of ``n`` one-post threads of 60 to 400 bytes, the first ``deleted`` of them deleted."""
    with open(path, "w") as f:
        for i in range(n):
            text = f"post {i}: " + " ".join(WORDS[(i * 7 + k + seed) % len(WORDS)] for k in range(10 + (i * 13) % 60))
            f.write(json.dumps({"id": i, "text": text, "author": f"person{i % 9}", "deleted": i < deleted}) + "\n")
    return str(path)


def forum(path, **options):
    return {"name": "forum", "paths": [path], "salt": "test", **options}


def run(tmp_path, sources, **options):
    stats: Counter = Counter()
    docs = list(Mix(MixConfig(sources=sources, **options)).documents(tmp_path / "work", stats))
    return docs, stats


def shares(stats: Counter) -> dict[str, float]:
    sent = {k.removeprefix("mix:bytes:"): v for k, v in stats.items() if k.startswith("mix:bytes:")}
    return {k: v / sum(sent.values()) for k, v in sent.items()}


def test_realized_byte_shares_follow_the_weights(tmp_path):
    a, b = write_dump(tmp_path / "a.jsonl", 400), write_dump(tmp_path / "b.jsonl", 400, seed=3)
    docs, stats = run(tmp_path, [{"collector": forum(a), "weight": 0.7}, {"collector": forum(b), "weight": 0.3}], max_bytes=30_000)
    assert sum(len(d.text.encode()) for d in docs) <= 30_000
    assert abs(shares(stats)["forum.0"] - 0.7) < 0.02, shares(stats)
    assert stats["mix:documents:forum.0"] + stats["mix:documents:forum.1"] == len(docs)
    # the same collector twice: labels and ids tell the sources apart
    assert {d.meta["mix"] for d in docs} == {"forum.0", "forum.1"} and len({d.id for d in docs}) == len(docs)
    assert all(d.source == "forum" for d in docs)


def test_a_stdlib_and_forum_mix_is_as_close_as_one_document_allows(tmp_path):
    dump = write_dump(tmp_path / "posts.jsonl", 1000)
    docs, stats = run(tmp_path, [{"collector": STDLIB, "weight": 0.6}, {"collector": forum(dump), "weight": 0.4}], max_bytes=80_000)
    largest = max(len(d.text.encode()) for d in docs)
    total = sum(stats[k] for k in stats if k.startswith("mix:bytes:"))
    assert abs(shares(stats)["stdlib"] - 0.6) <= largest / total
    assert {d.source for d in docs} == {"stdlib", "forum"}
    assert not any(d.id.startswith(("stdlib:", "forum:")) for d in docs)  # unique collectors keep their ids


def test_budgets_are_honoured_and_the_others_continue(tmp_path):
    dump = write_dump(tmp_path / "posts.jsonl", 300)
    sources = [
        {"collector": STDLIB, "weight": 0.5, "max_documents": 2},
        {"collector": forum(dump), "weight": 0.5, "max_bytes": 20_000},
    ]
    docs, stats = run(tmp_path, sources)
    assert stats["mix:documents:stdlib"] == 2 == sum(d.source == "stdlib" for d in docs)
    assert 19_000 < stats["mix:bytes:forum"] <= 20_000
    assert sum(len(d.text.encode()) for d in docs if d.source == "forum") == stats["mix:bytes:forum"]
    assert not any(k.startswith("mix:ran_out") for k in stats)


def test_a_source_that_runs_out_leaves_the_rest_to_the_others(tmp_path):
    dump = write_dump(tmp_path / "small.jsonl", 5)
    docs, stats = run(tmp_path, [{"collector": forum(dump), "weight": 0.9}, {"collector": STDLIB, "weight": 0.1}], max_documents=12)
    assert len(docs) == 12 and stats["mix:documents:forum"] == 5 and stats["mix:ran_out:forum"] == 1
    assert [d.source for d in docs][-6:] == ["stdlib"] * 6


def test_the_order_is_the_same_across_runs(tmp_path):
    dump = write_dump(tmp_path / "posts.jsonl", 200)
    sources = [{"collector": STDLIB, "weight": 0.5}, {"collector": forum(dump), "weight": 0.5}]
    first, _ = run(tmp_path / "a", sources, max_bytes=60_000)
    second, _ = run(tmp_path / "b", sources, max_bytes=60_000)
    assert [d.id for d in first] == [d.id for d in second]
    assert len({d.source for d in first[:10]}) == 2  # interleaved, not one source after the other


def test_sub_collector_stats_are_prefixed_and_each_source_has_its_own_workdir(tmp_path):
    dump = write_dump(tmp_path / "posts.jsonl", 20, deleted=3)
    _, stats = run(tmp_path, [{"collector": forum(dump)}, {"collector": {**STDLIB, "max_bytes": 5000}, "label": "code"}])
    assert stats["forum/skipped:deleted"] == 3 and "skipped:deleted" not in stats
    assert stats["code/skipped:over_max_bytes"] > 0 and stats["mix:bytes:code"] <= 5000
    assert list((tmp_path / "work" / "forum").glob("forum-index-*.sqlite"))


def test_no_sources_is_an_error_naming_the_key(tmp_path):
    Mix(MixConfig())  # the default composes and builds
    with pytest.raises(ConfigError, match="collector.sources is empty"):
        run(tmp_path, [])


@pytest.mark.parametrize(
    "source,match",
    [
        ({"collector": {"name": "stdlib", "max_byts": 3}}, r"collector.sources\[0\].collector.max_byts"),
        ({"collector": {"name": "nope"}}, r"collector.sources\[0\].collector.name.*no collector named 'nope'"),
        ({"collector": {"name": "stdlib"}, "weight": 0}, r"collector.sources\[0\].weight"),
        ({"collector": {"name": "stdlib"}, "max_bytes": -5}, r"collector.sources\[0\].max_bytes"),
        ({"collector": {"name": "stdlib"}, "wieght": 1}, r"unknown key\(s\) wieght"),
        ({"collector": "stdlib"}, r"collector.sources\[0\]: each source is"),
    ],
)
def test_a_bad_source_fails_when_the_config_is_built(source, match):
    with pytest.raises(ConfigError, match=match):
        MixConfig(sources=[source])


TICK = '''
from dataclasses import dataclass
from lmforge import hookimpl
from lmforge.contracts import Collector, Document


@dataclass
class TickConfig:
    n: int = 12


class Tick(Collector):
    """A resumable collector, like a crawler: it continues from its last checkpoint."""

    name = "tick"
    Config = TickConfig
    resumable = True

    def documents(self, workdir, stats):
        workdir.mkdir(parents=True, exist_ok=True)
        self.state, self.at = workdir / "at", 0
        start = int(self.state.read_text()) if self.state.exists() else 0
        for i in range(start, self.config.n):
            self.at = i + 1
            stats["ticks"] += 1
            yield Document(id=f"tick/{i}", text=f"tick {i} " * 40, source="tick")

    def checkpoint(self):
        self.state.write_text(str(self.at))


@hookimpl
def register_collectors(register):
    register(Tick)
'''


def test_a_mix_with_a_resumable_collector_resumes_after_its_last_checkpoint(tmp_path, make_dist):
    make_dist("lmforge-tick", {"tick": "lmforge_tick"}, {"lmforge_tick.py": TICK})
    dump = write_dump(tmp_path / "posts.jsonl", 40)
    config = MixConfig(sources=[{"collector": {"name": "tick"}}, {"collector": forum(dump)}])
    assert Mix(config).resumable
    whole, whole_stats = run(tmp_path / "whole", config.sources)

    interrupted = Mix(config)
    stats: Counter = Counter()
    stream = interrupted.documents(tmp_path / "work", stats)
    stored = [next(stream) for _ in range(9)]
    shard_counts = Counter(stats)  # the runner stores these nine with the counts so far,
    interrupted.checkpoint()  # then checkpoints
    lost = [next(stream) for _ in range(3)]  # yielded, but the run died before the next shard
    stream.close()
    assert {d.source for d in stored} == {d.source for d in lost} == {"tick", "forum"}
    resumed = Mix(config)
    stats = shard_counts  # a resumable collector's run starts from the stored counts
    rest = list(resumed.documents(tmp_path / "work", stats))
    assert [d.id for d in stored + rest] == [d.id for d in whole]
    assert stats["mix:bytes:forum"] == whole_stats["mix:bytes:forum"] and stats["tick/ticks"] == 12


class TestMixContract(CollectorContract):
    component = Mix

    @pytest.fixture(autouse=True)
    def _sources(self, tmp_path_factory):
        dump = write_dump(tmp_path_factory.mktemp("contract") / "posts.jsonl", 30)
        self.config = MixConfig(sources=[{"collector": STDLIB, "weight": 0.5}, {"collector": forum(dump), "weight": 0.5}])

    expected_sources = {"stdlib", "forum"}

    def test_documents_keep_their_sub_collector_source(self, tmp_path):
        docs = self._take(tmp_path)
        assert {d.source for d in docs} == {"stdlib", "forum"}
        assert all(d.meta["mix"] == d.source for d in docs)


def test_lmforge_trains_on_a_mix_from_the_command_line(tmp_path):
    dump = write_dump(tmp_path / "posts.jsonl", 400)
    sources = f"collector.sources=[{{collector:{{name:stdlib,max_bytes:150000}},weight:0.7}},{{collector:{{name:forum,paths:['{dump}']}},weight:0.3}}]"
    overrides = [o for o in TINY if not o.startswith(("collector.", "trainer.max_steps", "trainer.val_check"))]
    overrides += ["trainer.max_steps=10", "trainer.val_check_interval=5"]
    lmforge("train", "collector=mix", sources, *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    counts = manifest["data"]["collect"]["counts"]
    assert counts["mix:bytes:stdlib"] > 0 and counts["mix:bytes:forum"] > 0
    # what the mix sent, before the stage drops exact duplicates
    assert counts["mix:bytes:stdlib"] + counts["mix:bytes:forum"] >= manifest["data"]["collect"]["bytes"]
    assert (tmp_path / "run" / "summary.json").is_file()
