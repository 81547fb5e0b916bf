"""``lmforge finetune`` through the real command line, from a trained base: the task learned,
the records, the provenance, the tokenizer. Slow: a base run and a fine-tune on 2 CPU cores
take minutes; ``test_config.py`` holds the fast checks of bad input."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf
from finetune_support import SHORT, finetune

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tuned(base_run, finetune_env, tmp_path_factory):
    """A full fine-tune of the base on task=kind, as a user runs it."""
    root = tmp_path_factory.mktemp("tuned")
    proc = finetune(root, finetune_env, f"base={base_run}", "task=kind", *SHORT, f"hydra.run.dir={root / 'run'}")
    return root / "run", proc.stdout + proc.stderr


def test_fine_tuning_beats_the_baseline_and_the_base(tuned):
    run, _ = tuned
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metrics"]["exact"] > summary["baseline"]["exact"]
    assert summary["val_loss"] < summary["base_val_loss"]
    assert summary["steps"] == 30 and summary["method"] == "full"
    assert summary["data"]["train"]["windows"] < summary["examples"]["train"]  # packed


def test_the_run_has_the_records_of_a_training_run(tuned):
    run, _ = tuned
    for name in ("config.yaml", "finetune.yaml", "manifest.json", "summary.json", "metrics.csv", "curves.png",
                 "tokenizer.json", "predictions.jsonl", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name


def test_the_manifest_points_at_the_base_runs(tuned, base_run):
    run, _ = tuned
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["complete"] and manifest["base"]["manifest"] == str(base_run / "manifest.json")
    assert json.loads((base_run / "manifest.json").read_text())["complete"]
    assert manifest["finetune"] == {"task": "kind", "method": "full"}


def test_the_tasks_special_token_is_added_and_the_run_opens_like_any_other(tuned, base_run):
    from lmforge.runs import Run

    run, out = tuned
    base, opened = Run.open(base_run), Run.open(run)
    assert opened.tokenizer.vocab_size == base.tokenizer.vocab_size + 1
    assert opened.tokenizer.encode_batch(["<|is|>"])[0] == [base.tokenizer.vocab_size]
    assert f"added 1 special token(s) task=kind needs (<|is|>); embeddings and output head resized from {base.tokenizer.vocab_size}" in out
    model = opened.model()
    assert model.wte.weight.shape[0] == base.tokenizer.vocab_size + 1
    with torch.no_grad():  # the pretrained rows were the starting point: far closer to them than a fresh model's
        before = base.model().wte.weight
        torch.manual_seed(1)
        fresh = base.spec.model.build().build(vocab_size=len(before), max_seq_len=base.spec.data.seq_len).wte.weight
        similar = lambda w: torch.nn.functional.cosine_similarity(w[: len(before)], before).mean()  # noqa: E731
        assert similar(model.wte.weight) > 0.2 > 5 * abs(similar(fresh))


def test_the_console_shows_each_line_once(tuned):
    _, out = tuned
    assert out.count("GPU available") == 1
    assert "eval mode" not in out and "Traceback" not in out




def test_lora_fine_tunes_and_saves_merged_weights(base_run, finetune_env, tmp_path):
    from lmforge.runs import Run

    finetune(tmp_path, finetune_env, f"base={base_run}", "task=kind", "finetune.method=lora", *SHORT, f"hydra.run.dir={tmp_path / 'run'}")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["method"] == "lora" and summary["trainable_params"] < summary["params"] / 2
    assert summary["val_loss"] < summary["base_val_loss"]
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert not any(".lora_" in k or "base_layer" in k for k in ckpt["state_dict"]) and ckpt["lora_state"]
    Run.open(tmp_path / "run").model()  # loads like any other run's


def test_a_sweep_over_the_learning_rate(base_run, finetune_env, tmp_path):
    short = [o for o in SHORT if not o.startswith(("trainer.max_steps", "trainer.val_check_interval", "optimizer.lr"))]
    finetune(tmp_path, finetune_env, "-m", "optimizer.lr=1e-2,1e-4", f"base={base_run}", "task=kind", *short,
             "trainer.max_steps=8", "trainer.val_check_interval=8", "finetune.eval_examples=4", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    trials = [json.loads((tmp_path / "sweep" / str(i) / "summary.json").read_text()) for i in (0, 1)]
    lrs = [OmegaConf.load(tmp_path / "sweep" / str(i) / "config.yaml").optimizer.lr for i in (0, 1)]
    assert lrs == [1e-2, 1e-4]
    assert trials[0]["val_loss"] < trials[1]["val_loss"]  # the larger rate learns more in 8 steps
    assert (tmp_path / "sweep" / "sweep_results.csv").is_file()
