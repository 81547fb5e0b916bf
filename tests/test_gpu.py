"""Checks that need a CUDA device; skipped by default (run with ``pytest -m gpu``)."""

from __future__ import annotations

import csv
import json

import pytest
from support import TINY, lmforge

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_auto_picks_cuda_with_bf16_mixed_and_eval_scores_there(tmp_path):
    lmforge("train", *TINY, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["device"].startswith("cuda")
    assert summary["precision"] == ("bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed")
    lmforge("eval", str(tmp_path / "run"), "--out", str(tmp_path / "eval.json"), cwd=tmp_path)
    scored = json.loads((tmp_path / "eval.json").read_text())
    assert scored["device"].startswith("cuda") and scored["loss"] == pytest.approx(summary["val_loss"], rel=0.02)


def test_a_compiled_run_with_fused_adamw_learns_on_cuda(tmp_path):
    lmforge("train", *TINY, "trainer.compile=true", "trainer.nonfinite=skip", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    with open(tmp_path / "run" / "metrics.csv") as f:
        losses = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert summary["device"].startswith("cuda") and summary["skipped_steps"] == 0
    assert losses[-1] < losses[0] - 0.5, losses  # the criterion test_run.py uses for TINY
