"""Behaviour of ``model=rnn``: LSTM and GRU, causality, the state cache, generation, sizes, FLOPs."""

import pytest
import torch

from lmforge.plugins.models.rnn import RNN, SIZES, RNNConfig
from lmforge.engine.generate import generate
from lmforge.testing import ArchitectureContract

V, T = 97, 24
TINY = dict(n_layer=2, n_embd=32, hidden=48)


class TestLSTMContract(ArchitectureContract):
    component = RNN
    config = RNNConfig(cell="lstm", n_layer=1, n_embd=32, hidden=32)


class TestGRUContract(ArchitectureContract):
    component = RNN
    config = RNNConfig(cell="gru", n_layer=2, n_embd=24, hidden=32)  # exercises the projection to n_embd


def build(seed=0, **overrides):
    torch.manual_seed(seed)
    return RNN(RNNConfig(**{**TINY, **overrides})).build(vocab_size=V, max_seq_len=T).eval()


def tokens(B=2, length=T, seed=1):
    return torch.randint(0, V, (B, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_is_causal(cell):
    """Changing a later token leaves the logits of earlier positions unchanged."""
    model = build(cell=cell)
    idx = tokens()
    changed = idx.clone()
    changed[:, 15] = (changed[:, 15] + 1) % V
    a, b = model(idx).logits, model(changed).logits
    torch.testing.assert_close(a[:, :15], b[:, :15])
    assert not torch.allclose(a[:, 15:], b[:, 15:])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_greedy_generate_with_state_cache_equals_recompute(cell):
    """Carrying the state gives the tokens of re-running the whole context each step."""
    model = build(cell=cell)
    prompt = tokens(length=5)
    with_cache = generate(model, prompt, 12, temperature=0)
    model.supports_cache = False
    without_cache = generate(model, prompt, 12, temperature=0)
    assert with_cache.shape == (2, 17) and torch.equal(with_cache[:, :5], prompt)
    assert torch.equal(with_cache, without_cache)


def test_cache_overflow_and_batch_mismatch_raise():
    model = build()
    cache = model.init_cache(batch_size=2, max_len=8)
    model(tokens(length=6), cache=cache)
    with pytest.raises(ValueError, match="larger max_len"):
        model(tokens(length=3), cache=cache)
    with pytest.raises(ValueError, match="batch size"):
        model(tokens(B=3, length=1), cache=model.init_cache(batch_size=2, max_len=8))


def test_attention_is_an_empty_list():
    """No attention layers: an empty list when asked, so per-layer loops work unchanged."""
    model = build()
    assert model(tokens(), return_attention=True).attention == []
    assert model(tokens()).attention is None


def test_tied_embeddings_project_when_hidden_differs():
    tied, untied = build(), build(tie_embeddings=False)
    assert tied.lm_head.weight.data_ptr() == tied.wte.weight.data_ptr()
    assert tied.proj is not None and tied.proj.weight.shape == (32, 48)
    assert untied.proj is None and untied.lm_head.weight.shape == (V, 48)
    assert build(hidden=32).proj is None


@pytest.mark.parametrize("cell, gates", [("lstm", 4), ("gru", 3)])
def test_num_params_and_flops_count_the_recurrent_matmuls(cell, gates):
    model = build(cell=cell)
    E, H = 32, 48
    # per layer: W_ih (gates*H, in), W_hh (gates*H, H) and their two biases
    recurrent = gates * H * (E + H) + gates * H * (H + H) + 2 * 2 * gates * H
    matrices = recurrent + H * E + V * E  # + projection + tied head
    assert model.num_params() == matrices == sum(p.numel() for p in model.parameters())
    assert model.flops_per_token(T) == 6 * matrices + 9 * 2 * gates * H
    assert model.flops_per_token(T) == model.flops_per_token(4 * T)  # a fixed-size state


def test_untied_input_table_is_not_counted_as_compute():
    model = build(tie_embeddings=False)
    total = sum(p.numel() for p in model.parameters())
    assert model.num_params(non_embedding=False) == total
    assert model.num_params() == total - V * 32


@pytest.mark.parametrize("size", list(SIZES))
def test_size_presets_resolve(size):
    config = RNNConfig(size=size).resolved()
    assert (config.n_layer, config.n_embd, config.hidden) == tuple(SIZES[size].values())
    assert config.size == size


def test_explicit_dims_win_over_the_size():
    config = RNNConfig(size="base", hidden=64).resolved()
    assert (config.n_layer, config.n_embd, config.hidden) == (3, 400, 64)
    assert RNNConfig().resolved() == RNNConfig(size="tiny", **SIZES["tiny"])


@pytest.mark.parametrize("bad, key", [(dict(cell="rnn"), "model.cell"), (dict(size="huge"), "model.size"), (dict(dropout=1.0), "model.dropout")])
def test_bad_config_names_the_key(bad, key):
    with pytest.raises(ValueError, match=key):
        RNNConfig(**bad)


def test_dropout_trains_and_stays_finite():
    model = build(dropout=0.2).train()
    logits = model(tokens()).logits
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_trains_and_samples_through_the_cli(tmp_path):
    """``lmforge train model=rnn`` runs every stage and writes samples generated through the state cache."""
    import json
    import math

    from support import lmforge, smoke_run

    run = tmp_path / "run"
    overrides = smoke_run(drop=("model.n_head", "model.n_layer", "model.n_embd"))
    lmforge("train", "model=rnn", "model.cell=gru", "model.n_embd=32", "model.hidden=48", *overrides, f"hydra.run.dir={run}", cwd=tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and math.isfinite(summary["val_loss"])
    assert "=== prompt:" in (run / "samples.txt").read_text()
