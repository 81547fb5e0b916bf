"""Each tuner's YAML option mirrors its Config, and the pruner stays out of plain runs."""

import dataclasses
import importlib.resources as resources

import pytest
from omegaconf import OmegaConf

from lmforge.loader import load_plugins
from lmforge.plugins.tuners.pruning import sweep_pruner, train_callbacks


@pytest.mark.parametrize("option", ["grid", "random", "bayes", "nevergrad"])
def test_yaml_option_mirrors_the_config(option):
    node = OmegaConf.to_container(OmegaConf.load(resources.files("lmforge.conf") / "tuner" / f"{option}.yaml"))
    entry = load_plugins()[1].get("tuner", option)
    assert node.pop("name") == option == entry.cls.name
    assert node == dataclasses.asdict(entry.cls.Config())


def test_the_pruner_adds_nothing_outside_a_sweep(tmp_path):
    assert sweep_pruner() is None and train_callbacks(tmp_path) is None
