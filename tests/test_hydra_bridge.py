"""The Hydra bridge: every option composes, plugin options appear, bad values fail early."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException, MissingConfigException

from lmforge import hydra_bridge
from lmforge.errors import ConfigError

GROUPS = ["collector", "preprocess", "tokenizer", "model", "data", "optimizer", "scheduler", "trainer", "logger", "tuner"]


def compose_train(*overrides: str):
    hydra_bridge.install()
    with initialize_config_module(config_module="lmforge.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


def options(group: str) -> list[str]:
    return hydra_bridge.config_options("lmforge.conf")[group]


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_config_option_composes_and_checks(group, option):
    spec = hydra_bridge.check(compose_train(f"{group}={option}"))
    if group in ("collector", "tokenizer", "model"):
        assert getattr(spec, group).name == option
        getattr(spec, group).build()


@pytest.mark.parametrize("experiment", ["tiny", "gpt2_small", "tune_tiny", "scaling"])
def test_every_experiment_preset_composes_and_checks(experiment):
    cfg = compose_train(f"experiment={experiment}")
    hydra_bridge.check(cfg)


def test_the_gpu_preset_has_the_gpt2_small_shape():
    cfg = compose_train("experiment=gpt2_small")
    assert (cfg.model.n_layer, cfg.model.n_head, cfg.model.n_embd, cfg.data.seq_len) == (12, 12, 768, 1024)


def test_the_primary_config_selects_every_group():
    cfg = compose_train()
    assert set(GROUPS) - {"tuner"} <= set(cfg)
    assert "tuner" not in cfg  # a tuner is chosen only for a sweep: tuner=<name> -m


@pytest.mark.parametrize(
    "override,key",
    [
        ("model.n_layer=abc", "model.n_layer"),
        ("data.batch_size=big", "data.batch_size"),
        ("+model.n_layr=3", "model.n_layr"),
        ("model.mlp=relu", "model.mlp"),
        ("trainer.max_steps=1.5", "trainer.max_steps"),
        ("preprocess.steps=[{name:normalize,form:NFX}]", "preprocess.steps[0]"),
    ],
)
def test_a_wrong_key_or_type_is_an_error_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        hydra_bridge.check(compose_train(override))


def test_an_unknown_preprocess_step_lists_the_available_ones():
    with pytest.raises(ConfigError, match=r"no preprocessor named 'lemmatise'.*Available: .*lemma.*normalize"):
        hydra_bridge.check(compose_train("preprocess.steps=[{name:lemmatise}]"))


def test_a_typo_in_a_key_fails_at_composition():
    with pytest.raises(ConfigCompositionException, match="lrr"):
        compose_train("optimizer.lrr=1e-3")


def test_an_unknown_option_lists_the_available_ones():
    with pytest.raises(MissingConfigException, match="transfomer") as info:
        compose_train("model=transfomer")
    assert "transformer" in info.value.options


PLUGIN = '''
from dataclasses import dataclass
from lmforge import hookimpl
from lmforge.contracts import Architecture, Collector


@dataclass
class WideConfig:
    width: int = 8


class Wide(Architecture):
    name = "wide"
    Config = WideConfig


@dataclass
class BareConfig:
    limit: int = 3


class Bare(Collector):
    name = "bare"
    Config = BareConfig


@hookimpl
def register_models(register):
    register(Wide)


@hookimpl
def register_collectors(register):
    register(Bare)


@hookimpl
def config_package():
    return "lmforge_wide.conf"
'''


def test_a_plugin_brings_its_yaml_options_and_yaml_less_components_become_options(make_dist):
    make_dist(
        "lmforge-wide",
        {"wide": "lmforge_wide"},
        {
            "lmforge_wide/__init__.py": PLUGIN,
            "lmforge_wide/conf/__init__.py": "",
            "lmforge_wide/conf/model/wide.yaml": "name: wide\nwidth: 16\n",
        },
    )
    cfg = compose_train("model=wide", "collector=bare")
    assert cfg.model.width == 16  # from the plugin's YAML
    assert cfg.collector.limit == 3  # from the component's Config defaults, stored by the bridge
    spec = hydra_bridge.check(cfg)
    assert spec.model.entry.provenance.distribution == "lmforge-wide"
    with pytest.raises(MissingConfigException) as info:
        compose_train("model=nope")
    assert {"transformer", "wide"} <= set(info.value.options)


@pytest.mark.parametrize("group,option", [(g, o) for g in ("collector", "tokenizer", "model") for o in options(g)])
def test_builtin_yaml_options_mirror_their_config_schema(group, option):
    """File name = registered name = config option, and YAML keys = Config fields."""
    import dataclasses

    from omegaconf import OmegaConf

    from lmforge.contracts import KIND_GROUPS
    from lmforge.loader import load_plugins

    kind = {g: k for k, g in KIND_GROUPS.items()}[group]
    entry = load_plugins()[1].get(kind, option)
    yaml = OmegaConf.to_container(OmegaConf.load(hydra_bridge.resources.files("lmforge.conf") / group / f"{option}.yaml"))
    yaml.pop("defaults", None)  # an option may pick other groups' defaults (model=bert -> tokenizer=wordpiece)
    assert yaml.pop("name") == option == entry.cls.name
    assert entry.cls.__module__.rsplit(".", 1)[-1] == option
    defaults = dataclasses.asdict(entry.cls.Config())
    assert yaml == defaults


def test_an_unknown_top_level_key_is_refused():
    with pytest.raises(ConfigError, match="unknown top-level key.*sed"):
        hydra_bridge.check(compose_train("+sed=3"))


def test_a_yaml_less_component_with_a_required_field_becomes_an_option_that_asks_for_it(make_dist):
    code = (
        "from dataclasses import dataclass\nfrom lmforge import hookimpl\nfrom lmforge.contracts import Collector\n\n"
        "@dataclass\nclass NeedsConfig:\n    path: str\n\n"
        "class Needs(Collector):\n    name = 'needs'\n    Config = NeedsConfig\n\n"
        "@hookimpl\ndef register_collectors(register):\n    register(Needs)\n"
    )
    make_dist("lmforge-needs", {"needs": "lmforge_needs"}, {"lmforge_needs.py": code})
    hydra_bridge.check(compose_train("collector=needs", "collector.path=/data"))
    with pytest.raises(ConfigError, match="collector.path"):
        hydra_bridge.check(compose_train("collector=needs"))


def test_an_interpolation_that_fails_is_an_error_naming_its_key():
    """A resolver's own message reaches the user, with the key, and no traceback."""
    with pytest.raises(ConfigError, match=r"trainer.max_steps: .*'lots' is not a FLOP count"):
        hydra_bridge.check(compose_train("trainer.max_steps=${compute.max_steps:lots}"))
