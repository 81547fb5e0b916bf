"""Checks that need a CUDA device; skipped by default (run with ``pytest -m gpu``)."""

from __future__ import annotations

import json

import pytest
from support import TINY, lmforge

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_auto_picks_cuda_with_bf16_mixed(tmp_path):
    lmforge("train", *TINY, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["device"].startswith("cuda")
    assert summary["precision"] == ("bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed")
