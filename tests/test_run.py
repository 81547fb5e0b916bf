"""``lmforge train`` end to end through the real command line, on the CPU."""

from __future__ import annotations

import csv
import json

import pytest
from support import TINY, lmforge


def train(*args, **kwargs):
    return lmforge("train", *args, **kwargs)


def train_losses(run_dir) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One short run shared by the tests that inspect its run directory."""
    root = tmp_path_factory.mktemp("first")
    cache = root / "cache"
    proc = train(*TINY, f"hydra.run.dir={root / 'run'}", cwd=root, env={"LMFORGE_CACHE_DIR": str(cache), "LMFORGE_DISABLE_PLUGIN_AUTOLOAD": "1"})
    return root / "run", cache, proc


def test_the_run_directory_holds_everything_a_run_records(first_run):
    run, _, _ = first_run
    for name in ("config.yaml", "manifest.json", "metrics.csv", "tokenizer.json", "summary.json", "samples.txt", "checkpoints/last.ckpt", "collection_report.json"):
        assert (run / name).is_file(), name
    collection = json.loads((run / "collection_report.json").read_text())
    assert collection["sources"]["stdlib"]["documents"] == collection["documents"] > 0
    assert collection["counts"].get("skipped:over_max_bytes", 0) > 0  # the TINY byte budget skipped files
    summary = json.loads((run / "summary.json").read_text())
    assert {"val_loss", "val_ppl", "tokens_seen", "tokens_per_s", "params"} <= set(summary)
    assert summary["tokens_seen"] == 30 * 8 * 32 and summary["tokens_per_s"] > 0 and summary["params"] > 0
    if not __import__("torch").cuda.is_available():
        assert (summary["device"], summary["precision"]) == ("cpu", "32-true")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["plugins"]["lmforge"] == manifest["lmforge"]
    assert set(manifest["stages"]) == {"collect", "preprocess", "tokenize"} and manifest["seed"] == 1337
    assert manifest["data"]["collect"]["documents"] > 0 and manifest["data"]["tokenize"]["bytes_per_token"] > 1
    assert "model:\n  name: transformer" in (run / "config.yaml").read_text()
    assert (run / "samples.txt").read_text().count("=== prompt:") == 3


def test_the_loss_goes_down(first_run):
    run, _, _ = first_run
    losses = train_losses(run)
    assert len(losses) >= 2 and losses[-1] < losses[0] - 0.5, losses


def test_the_tokenizer_file_loads_in_transformers(first_run):
    transformers = pytest.importorskip("transformers")
    run, _, _ = first_run
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(run / "tokenizer.json"))
    assert fast.decode(fast("import os\n")["input_ids"]) == "import os\n"


def test_changing_only_the_model_reuses_the_collected_and_tokenized_data(first_run, tmp_path):
    run, cache, _ = first_run
    proc = train(*TINY, "model.n_layer=1", "optimizer.lr=3e-3", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env={"LMFORGE_CACHE_DIR": str(cache)})
    log = (tmp_path / "run" / "train.log").read_text()
    for stage in ("collect", "preprocess", "tokenize"):
        assert f"{stage}: reusing cached stage" in log
    first = json.loads((run / "manifest.json").read_text())["stages"]
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"] == first
    assert "building" not in log, proc.stdout


def test_the_train_task_returns_the_validation_loss(tmp_path):
    from hydra import compose, initialize_config_module

    from lmforge import hydra_bridge
    from lmforge.run import train

    hydra_bridge.install()
    with initialize_config_module(config_module="lmforge.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, "trainer.max_steps=4", "trainer.val_check_interval=4", "logger=none"])
    value = train(cfg, tmp_path, tmp_path)
    assert value == json.loads((tmp_path / "summary.json").read_text())["val_loss"]


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["collector.globs=[**/*.nothing]"], r"collector=stdlib produced no documents.*check collector.include_tests, collector.globs, collector.max_bytes"),
        (["collector.max_bytes=3000", "data.batch_size=64"], r"training split has [\d,]+ tokens but one batch needs 64x33=2,112: lower data.seq_len or data.batch_size"),
        (["resume=/no/such/run"], r"resume=/no/such/run: no checkpoint at /no/such/run"),
        (["model.n_layer=abc"], r"model.n_layer: Value 'abc' .* could not be converted to Integer"),
    ],
)
def test_bad_input_is_a_clear_error_before_training(tmp_path, overrides, message):
    import re

    proc = train(*TINY, *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert re.search(message, out), out
    assert "Traceback" not in out
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_unknown_collector_lists_the_available_ones(tmp_path):
    proc = train("collector=nope", cwd=tmp_path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Could not find 'collector/nope'" in out
    listed = out.split("Available options in 'collector':", 1)[1].split()
    assert {"stdlib", "web", "books", "code", "forum", "hf", "mix"} <= set(listed)


def test_hydra_flags_work(tmp_path):
    job = train("--cfg", "job", "model.n_layer=3", cwd=tmp_path).stdout
    assert "n_layer: 3" in job and "collector:" in job
    helptext = train("--help", cwd=tmp_path).stdout
    assert "model: transformer" in helptext and "experiment: gpt2_small, tiny" in helptext


def test_a_multirun_runs_one_job_per_value(tmp_path):
    train("-m", *TINY, "trainer.max_steps=3", "trainer.val_check_interval=3", "optimizer.lr=1e-3,3e-3", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    summaries = sorted((tmp_path / "sweep").glob("*/summary.json"))
    assert len(summaries) == 2
