import dataclasses
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from lmforge import hydra_bridge
from lmforge.plugins.models.transformer import Transformer, TransformerConfig
from lmforge.engine.optim import build_optimizer, lr_lambda, param_groups
from lmforge.plugins.training.optimizers import AdafactorConfig, AdamWConfig, SGDConfig
from lmforge.plugins.training.schedulers import ConstantConfig as ConstantSchedulerConfig
from lmforge.plugins.training.schedulers import CosineConfig as CosineSchedulerConfig
from lmforge.plugins.training.schedulers import LinearConfig as LinearSchedulerConfig
from lmforge.plugins.training.schedulers import WSDConfig as WSDSchedulerConfig

OPTIMIZERS = {"adamw": AdamWConfig, "sgd": SGDConfig, "adafactor": AdafactorConfig}
SCHEDULERS = {"cosine": CosineSchedulerConfig, "linear": LinearSchedulerConfig, "constant": ConstantSchedulerConfig, "wsd": WSDSchedulerConfig}


def tiny_layer() -> nn.Module:
    """A 3->2 linear layer with fixed values: its weight is decayed, its bias is not."""
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]))
        layer.bias.copy_(torch.tensor([0.3, -0.2]))
    return layer


GRAD_W = torch.tensor([[0.1, -0.2, 0.3], [0.4, 0.05, -0.6]])
GRAD_B = torch.tensor([0.5, -0.01])


def step(opt, layer) -> None:
    layer.weight.grad, layer.bias.grad = GRAD_W.clone(), GRAD_B.clone()
    opt.step()


def test_weight_decay_spares_norms_biases_and_embeddings():
    model = Transformer(TransformerConfig(n_layer=1, n_head=2, n_embd=16, bias=True, norm="layernorm", pos="learned")).build(50, 8)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decayed and all(n.endswith("weight") and "norm" not in n and "ln" not in n for n in decayed)
    assert not any("wte" in n or "wpe" in n or "embed" in n for n in decayed)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


@pytest.mark.parametrize("cfg", [AdamWConfig(weight_decay=0.2), SGDConfig(weight_decay=0.2), AdafactorConfig(weight_decay=0.2)])
def test_every_optimizer_gets_the_decay_and_no_decay_groups(cfg):
    model = Transformer(TransformerConfig(n_layer=1, n_head=2, n_embd=16)).build(50, 8)
    opt = build_optimizer(model, cfg, on_cuda=False)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.2, 0.0]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_adamw_is_built_with_the_configured_hyperparameters():
    model = Transformer(TransformerConfig(n_layer=1, n_head=2, n_embd=16)).build(50, 8)
    opt = build_optimizer(model, AdamWConfig(lr=3e-4, betas=[0.8, 0.9]), on_cuda=False)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["lr"] == 3e-4 and opt.defaults["betas"] == (0.8, 0.9)


def test_sgd_nesterov_momentum_matches_two_steps_by_hand():
    """buf = m*buf + g;  p -= lr * (g + m*buf), with L2 decay on the weight only."""
    lr, m, wd = 0.1, 0.9, 0.01
    layer = tiny_layer()
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    opt = build_optimizer(layer, SGDConfig(lr=lr, momentum=m, nesterov=True, weight_decay=wd), on_cuda=False)
    step(opt, layer)
    step(opt, layer)

    g1 = GRAD_W + wd * w0
    w1 = w0 - lr * (g1 + m * g1)
    g2 = GRAD_W + wd * w1
    w2 = w1 - lr * (g2 + m * (m * g1 + g2))
    b2 = b0 - lr * (GRAD_B + m * GRAD_B) - lr * (GRAD_B + m * (m * GRAD_B + GRAD_B))
    assert torch.allclose(layer.weight, w2, atol=1e-6) and torch.allclose(layer.bias, b2, atol=1e-6)


def test_sgd_without_nesterov_is_heavy_ball_momentum():
    lr, m = 0.1, 0.5
    layer = tiny_layer()
    b0 = layer.bias.detach().clone()
    opt = build_optimizer(layer, SGDConfig(lr=lr, momentum=m, nesterov=False), on_cuda=False)
    step(opt, layer)
    step(opt, layer)
    assert torch.allclose(layer.bias, b0 - lr * GRAD_B - lr * (m * GRAD_B + GRAD_B), atol=1e-6)


def test_nesterov_without_momentum_is_refused():
    with pytest.raises(ValueError, match="nesterov=true needs momentum > 0"):
        SGDConfig(momentum=0.0, nesterov=True)


def test_adafactor_one_step_matches_the_paper_by_hand():
    """Shazeer & Stern 2018, step 1: factored second moment, RMS-clipped update, relative step."""
    lr, wd, eps2 = 0.05, 0.1, 1e-3
    layer = tiny_layer()
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    opt = build_optimizer(layer, AdafactorConfig(lr=lr, weight_decay=wd), on_cuda=False)
    assert isinstance(opt, torch.optim.Adafactor)
    step(opt, layer)

    def rms(x):
        return x.pow(2).mean().sqrt()

    # at step 1 the decay 1 - 1^-0.8 is 0, so the moments are this gradient's alone
    row = GRAD_W.pow(2).mean(dim=1, keepdim=True)  # (2, 1)
    col = GRAD_W.pow(2).mean(dim=0, keepdim=True)  # (1, 3)
    update = GRAD_W / (row @ col / row.mean()).sqrt()
    update = update / max(1.0, rms(update).item())
    rho = min(lr, 1.0)  # min(lr, 1/sqrt(step))
    w1 = w0 * (1 - lr * wd) - max(eps2, rms(w0).item()) * rho * update
    # a vector keeps its full second moment: the update is the gradient's sign, and no decay
    b1 = b0 - max(eps2, rms(b0).item()) * rho * GRAD_B.sign()
    assert torch.allclose(layer.weight, w1, atol=1e-6) and torch.allclose(layer.bias, b1, atol=1e-6)


@pytest.mark.parametrize("cfg", [AdamWConfig(lr=1e-2), SGDConfig(lr=0.2), AdafactorConfig(lr=0.05)], ids=lambda c: type(c).__name__)
def test_every_optimizer_fits_a_fixed_batch(cfg):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(n_layer=1, n_head=2, n_embd=16)).build(32, 16)
    batch = torch.randint(0, 32, (4, 17))
    opt = build_optimizer(model, cfg, on_cuda=False)

    def loss():
        logits = model(batch[:, :-1]).logits
        return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))

    first = loss().item()
    for _ in range(40):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < first - 0.5


def test_warmup_then_cosine_to_the_floor():
    f = lr_lambda(CosineSchedulerConfig(warmup_steps=10, min_lr_ratio=0.1), max_steps=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 110))


def test_warmup_then_linear_to_the_floor():
    f = lr_lambda(LinearSchedulerConfig(warmup_steps=10, min_lr_ratio=0.2), max_steps=110)
    assert f(4) == pytest.approx(0.5) and f(10) == pytest.approx(1.0)
    assert f(35) == pytest.approx(0.8) and f(60) == pytest.approx(0.6) and f(110) == pytest.approx(0.2)
    assert f(1000) == pytest.approx(0.2)


def test_constant_after_warmup_and_no_warmup_starts_at_the_peak():
    f = lr_lambda(ConstantSchedulerConfig(warmup_steps=4), max_steps=100)
    assert [f(s) for s in (0, 1, 3, 4, 50, 99)] == pytest.approx([0.25, 0.5, 1.0, 1.0, 1.0, 1.0])
    assert lr_lambda(ConstantSchedulerConfig(warmup_steps=0), max_steps=100)(0) == 1.0


def test_wsd_is_stable_at_the_peak_then_decays_over_the_last_fraction():
    f = lr_lambda(WSDSchedulerConfig(warmup_steps=10, decay_fraction=0.2, decay_shape="1-sqrt"), max_steps=100)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert all(f(s) == 1.0 for s in range(10, 81))  # the decay starts at step 80
    assert f(85) == pytest.approx(1 - math.sqrt(0.25)) and f(90) == pytest.approx(1 - math.sqrt(0.5))
    assert f(100) == pytest.approx(0.0)
    linear = lr_lambda(WSDSchedulerConfig(warmup_steps=10, min_lr_ratio=0.1, decay_shape="linear"), max_steps=100)
    assert linear(80) == 1.0 and linear(90) == pytest.approx(0.55) and linear(100) == pytest.approx(0.1)


def test_wsd_decay_never_starts_inside_the_warmup():
    f = lr_lambda(WSDSchedulerConfig(warmup_steps=10, decay_fraction=1.0, decay_shape="linear"), max_steps=20)
    assert f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0) and f(15) == pytest.approx(0.5)


@pytest.mark.parametrize("group,schemas", [("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS)])
def test_every_option_has_a_yaml_mirroring_its_schema(group, schemas):
    """File name = option = schema name, and YAML keys and defaults = schema fields."""
    assert sorted(hydra_bridge.config_options("lmforge.conf")[group]) == sorted(schemas)
    for name, schema in schemas.items():
        yaml = OmegaConf.to_container(OmegaConf.load(hydra_bridge.resources.files("lmforge.conf") / group / f"{name}.yaml"))
        assert yaml.pop("name") == name
        assert yaml == dataclasses.asdict(schema()), name



def check(*overrides: str):
    from hydra import compose, initialize_config_module

    hydra_bridge.install()
    with initialize_config_module(config_module="lmforge.conf", version_base="1.3"):
        return hydra_bridge.check(compose("train", overrides=list(overrides)))


def test_each_option_is_checked_against_its_own_schema():
    from lmforge.errors import ConfigError

    spec = check("optimizer=sgd", "optimizer.momentum=0.8", "scheduler=wsd", "scheduler.decay_shape=linear")
    assert isinstance(spec.optimizer.config, SGDConfig) and spec.optimizer.config.momentum == 0.8
    assert isinstance(spec.scheduler.config, WSDSchedulerConfig) and spec.scheduler.config.decay_shape == "linear"
    with pytest.raises(ConfigError, match=r"optimizer\.betas: .*options of optimizer=sgd are: .*momentum"):
        check("optimizer=sgd", "+optimizer.betas=[0.9,0.95]")
    with pytest.raises(ConfigError, match=r"optimizer=lion: no optimizer .*Available: adafactor, adamw, sgd"):
        check("optimizer.name=lion")
    with pytest.raises(ConfigError, match=r"scheduler: decay_shape must be 1-sqrt or linear"):
        check("scheduler=wsd", "scheduler.decay_shape=cosine")

def test_auto_precision_is_full_precision_without_cuda():
    from lmforge.engine.trainer import precision

    assert precision("16-mixed") == "16-mixed"
    if not torch.cuda.is_available():
        assert precision("auto") == "32-true"


def test_every_optimizer_and_schedule_is_documented():
    text = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()
    assert all(f"`optimizer={name}`" in text for name in OPTIMIZERS)
    assert all(f"| `{name}`" in text for name in SCHEDULERS)
