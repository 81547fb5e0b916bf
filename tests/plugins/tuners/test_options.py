"""Each tuner's YAML option mirrors its Config."""

import dataclasses
import importlib.resources as resources

import pytest
from omegaconf import OmegaConf

from lmforge.loader import load_plugins


@pytest.mark.parametrize("option", ["grid", "random", "bayes", "nevergrad"])
def test_yaml_option_mirrors_the_config(option):
    node = OmegaConf.to_container(OmegaConf.load(resources.files("lmforge.conf") / "tuner" / f"{option}.yaml"))
    entry = load_plugins()[1].get("tuner", option)
    assert node.pop("name") == option == entry.cls.name
    assert node == dataclasses.asdict(entry.cls.Config())
