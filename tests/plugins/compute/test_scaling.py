"""experiment=scaling: each run's steps spend its budget, and the sweep ends with the fit."""

from __future__ import annotations

import json

import pytest

from lmforge.plugins.compute._chinchilla import transformer_params
from lmforge.plugins.models.transformer import TransformerConfig
from support import lmforge


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from lmforge import hydra_bridge

    hydra_bridge.install()
    with initialize_config_module(config_module="lmforge.conf", version_base="1.3"):
        return hydra_bridge.check(hydra_compose("train", overrides=["experiment=scaling", *overrides]))


@pytest.mark.parametrize(("width", "budget"), [(16, 3e10), (64, 3e11)])
def test_each_width_gets_the_steps_of_its_budget(width, budget):
    """max_steps = C / (6 N x 1,024 tokens a step), N counted by hand for that width."""
    spec = compose(f"model.n_embd={width}", f"trainer.max_steps=${{compute.max_steps:{budget:g}}}")
    params = transformer_params(TransformerConfig(n_layer=2, n_head=2, n_embd=width).resolved(), 2, 2, width, 512)
    assert spec.trainer.max_steps == round(budget / (6 * params * 16 * 64))
    assert spec.data.batch_size * spec.data.seq_len == 1024 and spec.tokenizer.config.vocab_size == 512


def test_the_sweep_spans_sizes_and_budgets():
    import importlib.resources as resources

    from omegaconf import OmegaConf

    preset = OmegaConf.create(resources.files("lmforge.experiments").joinpath("scaling.yaml").read_text())
    params = preset.hydra.sweeper.params
    assert len(str(params["model.n_embd"]).split(",")) == 5
    assert str(params["trainer.max_steps"]).count("compute.max_steps") == 3


def test_a_bad_budget_is_named(tmp_path):
    proc = lmforge("train", "experiment=scaling", "trainer.max_steps=${compute.max_steps:lots}", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "${compute.max_steps:lots}: the budget 'lots' is not a FLOP count; write e.g. ${compute.max_steps:1e13}" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_the_study_runs_end_to_end_and_fits(tmp_path):
    """A reduced study (3 widths x 2 budgets on 200 kB): six runs, then scaling_fit.json and .png."""
    sweep = tmp_path / "sweep"
    proc = lmforge(
        "train", "-m", "experiment=scaling", "collector.max_bytes=200000", "data.val_batches=4", "sample.max_new_tokens=2",
        "model.n_embd=16,32,64", "trainer.max_steps=${compute.max_steps:3e9},${compute.max_steps:1e10}",
        f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )
    fit = json.loads((sweep / "scaling_fit.json").read_text())
    assert fit["runs"] == 6
    steps = sorted(json.loads((sweep / str(n) / "summary.json").read_text())["steps"] for n in range(6))
    assert steps[0] < steps[-1]  # the small models take more steps on the same budget
    flops = sorted(p["flops"] for p in fit["points"])
    assert flops[2] / flops[0] < 1.25 and flops[3] / flops[2] > 2  # two budgets of three runs each
    assert [b["runs"] for b in fit["budgets"]] == [3, 3]
    assert (sweep / "scaling_fit.png").read_bytes()[:4] == b"\x89PNG"
    assert "fitted to 6 runs" in proc.stdout + proc.stderr
