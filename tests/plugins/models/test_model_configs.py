"""Every architecture's YAML option and size table: presets compose, explicit values win, bert picks wordpiece."""

import pytest
from hydra import compose, initialize_config_module

from lmforge import hydra_bridge


def compose_train(*overrides: str):
    hydra_bridge.install()
    with initialize_config_module(config_module="lmforge.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


def model_config(*overrides: str):
    return hydra_bridge.check(compose_train(*overrides)).model.config.resolved()


@pytest.mark.parametrize("model", ["transformer", "rnn", "bert"])
@pytest.mark.parametrize("size", ["tiny", "small", "base"])
def test_size_preset_composes_and_sets_the_dims(model, size):
    module = __import__(f"lmforge.plugins.models.{model}", fromlist=["SIZES"])
    config = model_config(f"model={model}", f"model.size={size}")
    assert {key: getattr(config, key) for key in module.SIZES[size]} == module.SIZES[size]


def test_the_default_transformer_is_unchanged():
    config = model_config()
    assert (config.n_layer, config.n_head, config.n_embd) == (4, 4, 128)


def test_an_explicit_dim_on_the_command_line_wins():
    config = model_config("model=bert", "model.size=base", "model.n_layer=6")
    assert (config.n_layer, config.n_head, config.n_embd) == (6, 12, 768)


def test_the_gpt2_small_experiment_keeps_its_explicit_shape():
    config = model_config("experiment=gpt2_small")
    assert (config.size, config.n_layer, config.n_head, config.n_embd, config.pos) == ("tiny", 12, 12, 768, "learned")


def test_bert_selects_wordpiece_and_the_command_line_still_wins():
    assert compose_train("model=bert").tokenizer.name == "wordpiece"
    assert compose_train("model=bert", "tokenizer=bpe").tokenizer.name == "bpe"
    assert compose_train("tokenizer=byte", "model=bert").tokenizer.name == "byte"
    assert compose_train("model=rnn").tokenizer.name == "bpe"


def test_a_bad_size_names_the_key():
    from lmforge.errors import ConfigError

    with pytest.raises(ConfigError, match="model.size='huge' is not one of tiny, small, base"):
        hydra_bridge.check(compose_train("model=rnn", "model.size=huge"))
