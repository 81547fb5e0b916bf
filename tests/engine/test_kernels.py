"""trainer.kernels: each loss path against the plain ``lm_loss`` reference (lmforge.engine.kernels)."""

from __future__ import annotations

import pytest
import torch

from lmforge.engine import kernels
from lmforge.engine.config import LossConfig, TrainerConfig
from lmforge.engine.losses import IGNORE_INDEX, lm_loss
from lmforge.errors import ConfigError
from lmforge.plugins.models.transformer import Transformer, TransformerConfig

LOSSES = [LossConfig(), LossConfig(label_smoothing=0.1), LossConfig(z_loss=1e-2), LossConfig(label_smoothing=0.2, z_loss=1e-3)]


def tiny_gpt(**overrides):
    torch.manual_seed(0)
    return Transformer(TransformerConfig(**overrides)).build(vocab_size=96, max_seq_len=16)


def problem(seed: int, holes: bool = True):
    """Features (B, T, C), a head weight (V, C) and targets with ignored positions, fp32."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(3, 7, 24, generator=g, dtype=torch.float64).float().requires_grad_()
    weight = (torch.randn(50, 24, generator=g) * 0.5).requires_grad_()
    targets = torch.randint(0, 50, (3, 7), generator=g)
    if holes:
        targets[0, :3] = IGNORE_INDEX
        targets[2, 5] = IGNORE_INDEX
    return features, weight, targets


def reference(features, weight, targets, cfg):
    parts = lm_loss(features @ weight.t(), targets, cfg)
    grads = torch.autograd.grad(parts.loss, (features, weight))
    return parts, grads


@pytest.mark.parametrize("cfg", LOSSES, ids=["plain", "smoothing", "z_loss", "both"])
@pytest.mark.parametrize("rows", [5, 1000])  # several chunks with a ragged last one, a single chunk
def test_chunked_matches_the_reference_loss_and_gradients_in_fp32(cfg, rows):
    features, weight, targets = problem(seed=rows)
    want, (want_dx, want_dw) = reference(features, weight, targets, cfg)
    got = kernels.build("chunked", cfg, chunk_rows=rows)(features, weight, targets)
    dx, dw = torch.autograd.grad(got.loss, (features, weight))
    for a, b in [(got.loss, want.loss), (got.nll_sum, want.nll_sum), (got.z_sum, want.z_sum), (dx, want_dx), (dw, want_dw)]:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert int(got.count) == int(want.count) == 17


def test_chunked_scales_the_gradient_by_the_upstream_one():
    """Backward multiplies the gradients stored in forward by the loss's gradient (here 3)."""
    features, weight, targets = problem(seed=1)
    want, (want_dx, _) = reference(features, weight, targets, LossConfig())
    got = kernels.build("chunked", LossConfig(), chunk_rows=8)(features, weight, targets)
    (dx,) = torch.autograd.grad(3 * got.loss, (features,))
    torch.testing.assert_close(dx, 3 * want_dx, rtol=1e-5, atol=1e-6)


def test_chunked_with_nothing_predicted_gives_zero_not_nan():
    features, weight, targets = problem(seed=2)
    targets[:] = IGNORE_INDEX
    got = kernels.build("chunked", LossConfig(z_loss=1e-3), chunk_rows=4)(features, weight, targets)
    dx, dw = torch.autograd.grad(got.loss, (features, weight))
    assert float(got.loss.detach()) == 0.0 and int(got.count) == 0
    assert not dx.any() and not dw.any()


def test_model_features_through_chunked_equal_the_logits_path_with_tied_weights():
    """The model's seam: return_logits=False hands over lm_head's input, and the fused loss
    on it gives the plain path's loss and parameter gradients (the head is tied to wte)."""
    model = tiny_gpt()
    idx = torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(3))
    targets = torch.roll(idx, -1, dims=1)
    cfg = LossConfig(z_loss=1e-3)
    plain = lm_loss(model(idx).logits, targets, cfg)
    want = torch.autograd.grad(plain.loss, list(model.parameters()))
    out = model(idx, return_logits=False)
    assert out.logits is None and out.features.shape == (2, 16, 128)
    fused = kernels.build("chunked", cfg, chunk_rows=7)(out.features, model.lm_head.weight, targets)
    got = torch.autograd.grad(fused.loss, list(model.parameters()))
    torch.testing.assert_close(fused.loss, plain.loss, rtol=1e-5, atol=1e-5)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_auto_is_the_plain_path_on_the_cpu():
    assert kernels.choose("auto", LossConfig(), torch.device("cpu"), tiny_gpt()) == "torch"


@pytest.mark.parametrize("name", ["liger", "cce"])
def test_a_gpu_only_path_on_the_cpu_says_why_and_what_to_use(name):
    with pytest.raises(ConfigError, match=rf"trainer.kernels={name} cannot run: .*CUDA.*chunked"):
        kernels.choose(name, LossConfig(), torch.device("cpu"), tiny_gpt())


@pytest.mark.parametrize(("name", "cfg"), [("cce", LossConfig(z_loss=0.1)), ("cce", LossConfig(label_smoothing=0.1)), ("liger", LossConfig(label_smoothing=0.1))])
def test_a_path_refuses_the_loss_options_it_cannot_compute(name, cfg):
    """On any device: the loss options are checked before the device is."""
    with pytest.raises(ConfigError, match=rf"trainer.kernels={name} cannot run: .*loss.(label_smoothing|z_loss)=0.1"):
        kernels.choose(name, cfg, torch.device("cuda"), tiny_gpt())


def test_a_model_without_features_takes_only_the_plain_path():
    class Plain(torch.nn.Module):
        pass

    assert kernels.choose("auto", LossConfig(), torch.device("cuda"), Plain()) == "torch"
    with pytest.raises(ConfigError, match="supports_features"):
        kernels.choose("chunked", LossConfig(), torch.device("cpu"), Plain())


def test_a_wrong_kernels_value_fails_in_the_config_check():
    with pytest.raises(ValueError, match=r"kernels=fast: must be one of auto, torch, chunked, liger, cce; e.g. kernels=auto"):
        TrainerConfig(kernels="fast")
    assert tuple(kernels.KERNELS) == ("auto", "torch", "chunked", "liger", "cce")


def train_three_steps(kernels_name: str, documents: bool = False):
    """LMModule in a Lightning Trainer, three AdamW steps; returns the module."""
    import lightning as L
    import numpy as np

    from lmforge.engine import console
    from lmforge.engine.config import DataConfig
    from lmforge.engine.data import TokenDataModule
    from lmforge.engine.module import LMModule
    from lmforge.plugins.training.optimizers import AdamWConfig
    from lmforge.plugins.training.schedulers import ConstantConfig

    console.quiet()
    tokens = np.random.default_rng(0).integers(0, 96, 4000)
    starts = (np.arange(0, 4000, 37), np.arange(0, 4000, 37)) if documents else None
    data = TokenDataModule(tokens, tokens, DataConfig(seq_len=16, batch_size=4), 3, 1, 0, starts=starts)
    module = LMModule(
        tiny_gpt(attention="document" if documents else "causal"), vocab_size=96, optimizer=AdamWConfig(lr=1e-2),
        scheduler=ConstantConfig(), loss=LossConfig(z_loss=1e-3), max_steps=3, kernels=kernels_name,
    )
    trainer = L.Trainer(
        max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
    )
    trainer.fit(module, datamodule=data)
    return module


def test_a_run_through_the_chunked_path_takes_the_plain_paths_steps():
    """The module's seam: trainer.kernels=chunked trains the same weights as torch."""
    plain, fused = train_three_steps("torch"), train_three_steps("chunked")
    assert plain._fused is None and isinstance(fused._fused, kernels._Chunked)
    for (name, a), b in zip(fused.model.state_dict().items(), plain.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert not torch.equal(plain.model.wte.weight, tiny_gpt().wte.weight)  # it did train


@pytest.mark.slow
def test_batches_with_documents_reach_the_model():
    """A data module with document starts feeds (inputs, targets, documents): the
    document-masked model trains on them, and differs from the same run without them."""
    masked, plain = train_three_steps("chunked", documents=True), train_three_steps("chunked")
    assert not torch.allclose(masked.model.wte.weight, plain.model.wte.weight)


def test_a_cuda_attention_kernel_on_the_cpu_says_what_to_use():
    from lmforge.engine.module import LMModule

    module = LMModule(tiny_gpt(), vocab_size=96, sdpa_backend="cudnn")
    with pytest.raises(ConfigError, match="trainer.sdpa_backend=cudnn picks a CUDA attention kernel.*sdpa_backend=auto"):
        module.setup("fit")
    with pytest.raises(ValueError, match="sdpa_backend=fast: must be one of auto, flash, cudnn, efficient, math"):
        TrainerConfig(sdpa_backend="fast")


@pytest.mark.slow
def test_the_gpu_benchmark_smoke_runs_on_the_cpu(tmp_path):
    """bench_gpu.py --tiny: the baseline and a lmforge path train, the GPU-only ones are
    skipped with their reason, and the JSON holds the ratio against the baseline."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
    only = "baseline,lmforge/chunked,lmforge/cce"
    subprocess.run([sys.executable, str(script), "--tiny", "--only", only, "--json", str(tmp_path / "b.json")], check=True, capture_output=True, timeout=600)
    rows = {r["name"]: r for r in json.loads((tmp_path / "b.json").read_text())["variants"]}
    assert rows["baseline"]["ratio"] == 1.0 and rows["lmforge/chunked"]["tokens_per_s"] > 0
    assert "CUDA" in rows["lmforge/cce"]["skipped"]
