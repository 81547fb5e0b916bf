"""Checks that need a CUDA device; skipped by default (run with ``pytest -m gpu``)."""

from __future__ import annotations

import csv
import json
import re

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
    """trainer.kernels=auto (the default) takes a fused loss on CUDA: cce or liger where
    installed, else chunked."""
    proc = lmforge("train", *TINY, "trainer.compile=true", "trainer.nonfinite=skip", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert re.search(r"trainer.kernels=auto: the (cce|liger|chunked) loss path", proc.stdout + proc.stderr)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    with open(tmp_path / "run" / "metrics.csv") as f:
        losses = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert summary["device"].startswith("cuda") and summary["skipped_steps"] == 0
    assert losses[-1] < losses[0] - 0.5, losses  # the criterion test_run.py uses for TINY


@pytest.mark.parametrize("path", ["chunked", "liger", "cce"])
@pytest.mark.parametrize("z_loss", [0.0, 1e-3])
def test_a_fused_loss_matches_the_reference_in_bf16(path, z_loss):
    """trainer.kernels: loss and gradients of each fused path against lm_loss on the same
    bf16 features and weight, at the GPT-2 vocabulary (relative error, bf16 tolerance)."""
    from lmforge.engine import kernels
    from lmforge.engine.config import LossConfig
    from lmforge.engine.losses import IGNORE_INDEX, lm_loss

    cfg = LossConfig(z_loss=z_loss)
    if kernels.refusal(path, cfg) or kernels.available(path):
        pytest.skip(kernels.refusal(path, cfg) or kernels.available(path))
    g = torch.Generator(device="cuda").manual_seed(0)
    features = torch.randn(4, 1024, 768, device="cuda", generator=g).bfloat16().requires_grad_()  # two chunks of 2,048 rows
    weight = (torch.randn(50304, 768, device="cuda", generator=g) * 0.02).requires_grad_()  # fp32 master weights
    targets = torch.randint(0, 50304, (4, 1024), device="cuda", generator=g)
    targets[0, :100] = IGNORE_INDEX
    with torch.autocast("cuda", dtype=torch.bfloat16):
        want = lm_loss(features @ weight.bfloat16().t(), targets, cfg)
        want_grads = torch.autograd.grad(want.loss, (features, weight))
        got = kernels.build(path, cfg)(features, weight, targets)
        grads = torch.autograd.grad(got.loss, (features, weight))
    assert int(got.count) == int(want.count)
    for a, b in [(got.loss, want.loss), (got.nll_sum, want.nll_sum), (got.z_sum, want.z_sum)]:
        assert abs(float(a) - float(b)) <= 5e-3 * max(abs(float(b)), 1.0), (path, float(a), float(b))
    for a, b in zip(grads, want_grads):
        assert a.dtype == b.dtype and float((a.float() - b.float()).norm() / b.float().norm()) < 2e-2, path


def test_document_attention_compiled_on_cuda_matches_the_dense_mask():
    """model.attention=document through compiled FlexAttention, forward and backward,
    against the same model with the dense mask (return_attention's path)."""
    from lmforge.plugins.models.transformer import Transformer, TransformerConfig

    torch.manual_seed(0)
    model = Transformer(TransformerConfig(attention="document")).build(vocab_size=256, max_seq_len=512).cuda()
    idx = torch.randint(0, 256, (2, 512), device="cuda")
    documents = torch.cumsum(torch.rand(2, 512, device="cuda") < 0.01, dim=1).int()
    flex = torch.compile(model)(idx, documents=documents).logits
    dense = model(idx, documents=documents, return_attention=True).logits
    torch.testing.assert_close(flex, dense, rtol=2e-3, atol=2e-3)
    flex.float().square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())

