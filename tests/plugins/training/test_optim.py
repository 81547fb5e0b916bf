import math

import pytest

from lmforge.plugins.models.transformer import Transformer, TransformerConfig
from lmforge.plugins.training.optim import build_optimizer, lr_lambda, param_groups
from lmforge.schemas import OptimizerConfig, SchedulerConfig


def test_weight_decay_spares_norms_biases_and_embeddings():
    model = Transformer(TransformerConfig(n_layer=1, n_head=2, n_embd=16, bias=True, norm="layernorm", pos="learned")).build(50, 8)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decayed and all(n.endswith("weight") and "norm" not in n and "ln" not in n for n in decayed)
    assert not any("wte" in n or "wpe" in n or "embed" in n for n in decayed)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def test_adamw_is_built_with_the_configured_hyperparameters():
    model = Transformer(TransformerConfig(n_layer=1, n_head=2, n_embd=16)).build(50, 8)
    opt = build_optimizer(model, OptimizerConfig(lr=3e-4, betas=[0.8, 0.9]), on_cuda=False)
    assert opt.defaults["lr"] == 3e-4 and opt.defaults["betas"] == (0.8, 0.9)


def test_warmup_then_cosine_to_the_floor():
    f = lr_lambda(SchedulerConfig(warmup_steps=10, min_lr_ratio=0.1), max_steps=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 110))


def test_auto_precision_is_full_precision_without_cuda():
    import torch

    from lmforge.plugins.training.runtime import precision

    assert precision("16-mixed") == "16-mixed"
    if not torch.cuda.is_available():
        assert precision("auto") == "32-true"
