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
    # Python's own warning filters, as a user has them: what the console shows is part of the test
    env = {"LMFORGE_CACHE_DIR": str(cache), "LMFORGE_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONWARNINGS": ""}
    proc = train(*TINY, f"hydra.run.dir={root / 'run'}", cwd=root, env=env)
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
    groups = dict(line.strip().split(": ", 1) for line in helptext.splitlines() if line.strip().startswith(("model: ", "experiment: ")))
    assert {"transformer", "rnn", "bert"} <= set(groups["model"].split(", "))
    assert {"tiny", "gpt2_small"} <= set(groups["experiment"].split(", "))


def test_a_multirun_runs_one_job_per_value(tmp_path):
    train("-m", *TINY, "trainer.max_steps=3", "trainer.val_check_interval=3", "optimizer.lr=1e-3,3e-3", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    summaries = sorted((tmp_path / "sweep").glob("*/summary.json"))
    assert len(summaries) == 2


def test_the_summary_holds_the_validation_metrics(first_run):
    import math

    run, _, _ = first_run
    summary = json.loads((run / "summary.json").read_text())
    bytes_per_token = summary["signature"]["bytes_per_token"]
    assert summary["val_bpb"] == pytest.approx(summary["val_loss"] / (math.log(2) * bytes_per_token), rel=1e-5)
    assert summary["val_ppl"] == pytest.approx(math.exp(summary["val_loss"]), rel=1e-5)
    assert 0 < summary["val_top1"] <= summary["val_top5"] <= 1
    assert all(0 < summary[f"val_{k}"] <= 1 for k in ("precision", "recall", "f1"))
    assert summary["skipped_steps"] == 0
    with open(run / "metrics.csv") as f:
        columns = set(csv.DictReader(f).fieldnames)
    assert {"train/grad_norm", "train/tokens_per_s", "train/ppl", "val/bpb", "val/top5", "val/f1"} <= columns


@pytest.mark.slow
def test_loss_options_and_skipping_run_end_to_end(tmp_path):
    from support import smoke_run

    overrides = ["loss.label_smoothing=0.1", "loss.z_loss=1e-4", "trainer.nonfinite=skip", "trainer.log_every_n_steps=1"]
    train(*smoke_run(), *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["skipped_steps"] == 0 and summary["steps"] == 3
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["train/skipped_steps"]) for r in rows if r.get("train/skipped_steps")] == [0.0, 0.0, 0.0]
    assert all(float(r["train/z_loss"]) > 0 for r in rows if r.get("train/z_loss"))
    assert "loss:\n  label_smoothing: 0.1" in (tmp_path / "run" / "config.yaml").read_text()


@pytest.mark.parametrize(
    "override,message",
    [
        ("loss.label_smoothing=1.5", r"loss: label_smoothing must be in \[0, 1\), got 1.5"),
        ("trainer.nonfinite=maybe", r"trainer: nonfinite must be stop or skip, got 'maybe'"),
        ("+loss.smoothing=0.1", r"loss.smoothing: Key 'smoothing' not in 'LossConfig'"),
    ],
)
def test_bad_loss_and_nonfinite_options_fail_before_training(tmp_path, override, message):
    import re

    proc = train(*TINY, override, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and re.search(message, out), out
    assert "Traceback" not in out


def test_eval_recomputes_the_final_validation_metrics(first_run, tmp_path):
    run_dir, cache, _ = first_run
    env = {"LMFORGE_CACHE_DIR": str(cache), "LMFORGE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = lmforge("eval", str(run_dir), "--out", str(tmp_path / "eval.json"), cwd=tmp_path, env=env).stdout
    result = json.loads((tmp_path / "eval.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert result["split"] == "val" and result["step"] == summary["steps"] and "val:" in out
    assert result["device"] == summary["device"] == "cpu"
    for key in ("loss", "bpb", "top1", "top5", "f1"):
        assert result[key] == pytest.approx(summary[f"val_{key}"], rel=1e-4), key


def test_eval_scores_the_training_split_and_given_text(first_run, tmp_path):
    run_dir, cache, _ = first_run
    env = {"LMFORGE_CACHE_DIR": str(cache), "LMFORGE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    lmforge("eval", str(run_dir), "--split", "train", "--out", str(tmp_path / "train.json"), cwd=tmp_path, env=env)
    code = tmp_path / "sample.py"
    code.write_text("import os\n\n\ndef main():\n    for name in os.listdir('.'):\n        print(name)\n" * 40)
    noise = tmp_path / "noise.txt"
    noise.write_text("".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(3000)))
    lmforge("eval", str(run_dir), "--text", str(code), "--out", str(tmp_path / "code.json"), cwd=tmp_path, env=env)
    lmforge("eval", str(run_dir), "--text", str(noise), "--out", str(tmp_path / "noise.json"), cwd=tmp_path, env=env)
    train_split, on_code, on_noise = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("train", "code", "noise"))
    assert train_split["split"] == "train" and on_code["split"] == "text" and on_code["tokens"] > 0
    # a model trained on Python scores Python far better than random CJK characters
    assert on_code["bpb"] < on_noise["bpb"]


def test_eval_of_a_directory_that_is_no_run_says_what_to_pass(tmp_path):
    proc = lmforge("eval", str(tmp_path), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "not a finished lmforge run directory" in proc.stderr


def test_the_console_shows_each_line_once_and_no_noise(first_run):
    """Lightning's lines once (not also as 'INFO: ...'), no adverts, no warnings a user cannot act on."""
    import re

    _, _, proc = first_run
    out = proc.stdout + proc.stderr
    messages = [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", line).removeprefix("INFO: ") for line in out.splitlines() if line.strip()]
    repeated = sorted({m for m in messages if messages.count(m) > 1})
    assert not repeated, out
    for noise in ("Tip:", "litlogger", "Warning", "warn(", "FLOPs", "Epoch 0/-2", "TPU available"):
        assert noise not in out, (noise, out)
    assert "Seed set to 1337" in out and "val loss" in out


def test_train_log_holds_every_line_with_its_source(first_run):
    run, _, proc = first_run
    log = (run / "train.log").read_text()
    assert "[lightning.pytorch.utilities.rank_zero][INFO] - `Trainer.fit` stopped: `max_steps=30` reached." in log
    assert "[lmforge][INFO] - preprocess: normalize (lmforge " in log  # every component with its distribution


def test_the_run_draws_its_curves_from_metrics_csv(first_run):
    from PIL import Image

    from lmforge.engine.curves import read_series

    run, _, _ = first_run
    series = read_series(run / "metrics.csv")
    assert series["train/loss"] and series["val/loss"] and any(k.startswith("lr-") for k in series)
    with Image.open(run / "curves.png") as image:
        assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 300


def test_a_config_that_fails_the_check_leaves_no_run_directory(tmp_path):
    proc = train("model.n_layer=abc", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert not (tmp_path / "outputs").exists(), sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))


def test_sample_prompts_follow_the_collector_or_the_validation_documents():
    """stdlib brings its own prompts; a collector without any gets the first words of validation documents."""
    from types import SimpleNamespace

    import numpy as np

    from lmforge.engine.config import SampleConfig
    from lmforge.plugins.collectors.stdlib import Stdlib
    from lmforge.plugins.tokenizers.byte import Byte
    from lmforge.run import sample_prompts

    tokenizer = Byte(Byte.Config())
    eos = tokenizer.special_ids["eos"]
    docs = ["The quick brown fox jumps", "Lorem ipsum dolor sit amet", "Call me Ishmael. Some years ago"]
    val = np.array([i for d in docs for i in [*tokenizer.encode_batch([d])[0], eos]])
    no_prompts = SimpleNamespace(build=lambda: SimpleNamespace(sample_prompts=lambda: []))
    spec = SimpleNamespace(sample=SampleConfig(), collector=no_prompts)
    assert sample_prompts(spec, tokenizer, val) == ["The quick brown fox ", "Lorem ipsum dolor sit ", "Call me Ishmael. Some "]
    spec.collector = SimpleNamespace(build=lambda: Stdlib())
    assert sample_prompts(spec, tokenizer, val) == ["def ", "import ", "class "]
    spec.sample = SampleConfig(prompts=["Once "])
    assert sample_prompts(spec, tokenizer, val) == ["Once "]
