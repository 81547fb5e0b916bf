"""lmforge.testing: a suite for every kind, and the distribution suite catching what it should."""

from __future__ import annotations

import importlib
import sys

import pytest

import lmforge.testing
from lmforge.contracts import KINDS
from lmforge.testing import ComponentContract, PluginContract

GADGET = """
from dataclasses import dataclass

from lmforge import hookimpl
from lmforge.contracts import Collector


@dataclass
class GadgetConfig:
    n: int = 3


class Gadget(Collector):
    name = "gadget"
    Config = GadgetConfig

    def documents(self, workdir, stats):
        yield from ()


@hookimpl
def register_collectors(register):
    register(Gadget)
"""

# a config-only entry point: it registers no component, but its options are used
CONF = "from lmforge import hookimpl\n\n@hookimpl\ndef config_package():\n    return 'lmforge_gadget.conf'\n"


def gadget(make_dist, yaml: str = "name: gadget\nn: 3\n", **extra_files: str) -> type[PluginContract]:
    """Install lmforge-gadget: a collector module plus a config-only entry point; returns its suite."""
    files = {
        "lmforge_gadget/__init__.py": "",
        "lmforge_gadget/gadget.py": GADGET,
        "lmforge_gadget/conf/__init__.py": CONF,
        "lmforge_gadget/conf/collector/gadget.yaml": yaml,
        **extra_files,
    }
    for module in [m for m in sys.modules if m.startswith("lmforge_gadget")]:  # another test's copy
        del sys.modules[module]
    importlib.invalidate_caches()
    make_dist("lmforge-gadget", {"gadget": "lmforge_gadget.gadget", "conf": "lmforge_gadget.conf"}, files)

    class Suite(PluginContract):
        distribution = "lmforge-gadget"
        components = {"collector": ["gadget"]}

    return Suite


def run_suite(suite: type[PluginContract]) -> None:
    for name in dir(suite):
        if name.startswith("test_"):
            getattr(suite(), name)()


@pytest.mark.parametrize("group", list(KINDS))
def test_every_kind_has_its_contract_suite(group):
    """Adding a kind is one row of KINDS plus ``<Base>Contract`` in lmforge.testing."""
    base = KINDS[group].base
    suite = getattr(lmforge.testing, f"{base.__name__}Contract", None)
    assert suite is not None, f"lmforge.testing has no {base.__name__}Contract for the {group!r} kind"
    assert issubclass(suite, ComponentContract) and suite.base is base


class TestLmforgeItself(PluginContract):
    distribution = "lmforge"
    components = {
        "collector": ["stdlib"],
        "preprocess": ["normalize", "dedup"],
        "tokenizer": ["bpe", "byte"],
        "architecture": ["transformer"],  # an old kind name still works
        "model": ["rnn", "bert"],
        "optimizer": ["adamw", "sgd", "adafactor"],
        "scheduler": ["cosine", "wsd"],
        "logger": ["csv", "none"],
        "tuner": ["grid", "random"],
        "task": ["chat", "summarize", "translate", "classify"],
    }
    config_packages = ["lmforge.conf"]  # lmforge's own options are not a config_package hook's


def test_a_good_distribution_with_a_config_only_entry_point_passes(make_dist):
    run_suite(gadget(make_dist))


def test_an_unknown_key_in_a_shipped_option_fails_naming_it(make_dist):
    suite = gadget(make_dist, yaml="name: gadget\nn: 3\nm: 1\n")
    with pytest.raises(AssertionError, match=r"collector/gadget\.yaml: collector\.m"):
        suite().test_shipped_options_match_their_config()


def test_a_value_of_the_wrong_type_fails(make_dist):
    suite = gadget(make_dist, yaml="name: gadget\nn: many\n")
    with pytest.raises(AssertionError, match=r"collector\.n"):
        suite().test_shipped_options_match_their_config()


def test_an_option_named_apart_from_its_file_fails_unless_it_is_a_preset(make_dist):
    suite = gadget(make_dist, **{"lmforge_gadget/conf/collector/big.yaml": "name: gadget\nn: 9\n"})
    with pytest.raises(AssertionError, match=r"collector/big\.yaml: name is 'gadget'"):
        suite().test_shipped_options_match_their_config()
    suite.presets = {"collector/big": "gadget"}
    suite().test_shipped_options_match_their_config()


def test_a_field_left_out_of_an_option_fails(make_dist):
    suite = gadget(make_dist, yaml="name: gadget\n")
    with pytest.raises(AssertionError, match=r"leaves out n"):
        suite().test_shipped_options_match_their_config()


def test_a_pipeline_option_checks_each_step(make_dist):
    """A ``preprocess`` option is a pipeline, not a component: each step is checked."""
    pipeline = "steps:\n  - name: normalize\n    form: NFX\n  - name: nosuchstep\nn_workers: 1\n"
    suite = gadget(make_dist, **{"lmforge_gadget/conf/preprocess/odd.yaml": pipeline})
    with pytest.raises(AssertionError) as info:
        suite().test_shipped_options_match_their_config()
    assert "preprocess.steps[0]" in str(info.value) and "nosuchstep" in str(info.value)


def test_a_broken_entry_point_fails_naming_the_error(make_dist):
    suite = gadget(make_dist, **{"lmforge_gadget/gadget.py": "raise RuntimeError('boom')\n"})
    with pytest.warns(UserWarning):
        with pytest.raises(AssertionError, match="gadget: RuntimeError: boom"):
            suite().test_every_entry_point_loads()


def test_a_component_it_does_not_register_fails(make_dist):
    suite = gadget(make_dist)
    suite.components = {"model": ["gadget"]}
    with pytest.raises(AssertionError, match="model=gadget is not registered"):
        suite().test_registers_the_expected_components()


def test_a_distribution_switched_off_by_the_environment_fails_saying_so(make_dist, monkeypatch):
    suite = gadget(make_dist)
    monkeypatch.setenv("LMFORGE_DISABLE_PLUGIN_AUTOLOAD", "1")
    with pytest.raises(pytest.fail.Exception, match="unset LMFORGE_DISABLE_PLUGIN_AUTOLOAD"):
        suite().test_registers_the_expected_components()
