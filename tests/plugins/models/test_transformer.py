"""Behaviour of ``model=transformer``: shapes, causality, KV cache, attention, generation, training."""

import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.engine.generate import generate
from lmforge.plugins.models.transformer import Transformer, TransformerConfig

V, T = 97, 32
TINY = dict(n_layer=2, n_head=4, n_embd=64)


def build(seed=0, **overrides):
    torch.manual_seed(seed)
    model = Transformer(TransformerConfig(**{**TINY, **overrides})).build(vocab_size=V, max_seq_len=T)
    return model.eval()


def tokens(B=2, length=T, seed=1):
    return torch.randint(0, V, (B, length), generator=torch.Generator().manual_seed(seed))


def test_output_shape():
    out = build()(tokens())
    assert out.logits.shape == (2, T, V)
    assert out.attention is None and out.cache is None


def test_is_causal():
    """Changing a future token leaves the logits of earlier positions unchanged."""
    model = build()
    idx = tokens()
    changed = idx.clone()
    changed[:, 20] = (changed[:, 20] + 1) % V
    a, b = model(idx).logits, model(changed).logits
    torch.testing.assert_close(a[:, :20], b[:, :20])
    assert not torch.allclose(a[:, 20:], b[:, 20:])


@pytest.mark.parametrize(
    "overrides",
    [dict(pos="rope"), dict(pos="learned"), dict(n_kv_head=2), dict(pos="learned", n_kv_head=1)],
    ids=["rope", "learned", "gqa", "learned-mqa"],
)
def test_kv_cache_matches_full_recompute(overrides):
    """Prefill, a multi-token chunk, then single tokens give the logits of one full pass."""
    model = build(**overrides)
    idx = tokens(length=20)
    full = model(idx).logits
    cache = model.init_cache(batch_size=2, max_len=T)
    pieces = [model(idx[:, :10], cache=cache).logits, model(idx[:, 10:14], cache=cache).logits]
    for t in range(14, 20):
        pieces.append(model(idx[:, t : t + 1], cache=cache).logits)
    assert cache.pos == 20
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_cache_overflow_and_long_input_raise():
    model = build()
    cache = model.init_cache(batch_size=2, max_len=8)
    model(tokens(length=6), cache=cache)
    with pytest.raises(ValueError, match="KV cache"):
        model(tokens(length=3), cache=cache)
    with pytest.raises(ValueError, match="max_seq_len"):
        model(tokens(length=T + 1))
    with pytest.raises(ValueError, match="max_seq_len"):
        model.init_cache(batch_size=1, max_len=T + 1)


@pytest.mark.parametrize("overrides", [dict(), dict(n_kv_head=2, pos="learned")], ids=["mha", "gqa-learned"])
def test_return_attention(overrides):
    """Explicit weights are causal rows summing to one, and the logits match the SDPA path."""
    model = build(**overrides)
    idx = tokens()
    out = model(idx, return_attention=True)
    assert len(out.attention) == 2
    above_diagonal = torch.ones(T, T, dtype=torch.bool).triu(1)
    for att in out.attention:
        assert att.shape == (2, 4, T, T)
        torch.testing.assert_close(att.sum(-1), torch.ones(2, 4, T))
        assert (att[..., above_diagonal] == 0).all()
    torch.testing.assert_close(out.logits, model(idx).logits, atol=1e-5, rtol=1e-5)


def test_return_attention_with_cache():
    """With a cache the weights are (B, H, T, S) and cover the cached positions."""
    model = build()
    idx = tokens(length=12)
    cache = model.init_cache(batch_size=2, max_len=T)
    model(idx[:, :8], cache=cache)
    out = model(idx[:, 8:], cache=cache, return_attention=True)
    assert out.attention[0].shape == (2, 4, 4, 12)
    torch.testing.assert_close(out.logits, model(idx).logits[:, 8:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("max_new", [10, 40], ids=["fits", "past-max-seq-len"])
def test_greedy_generate_with_cache_equals_without(max_new):
    model = build()
    prompt = tokens(length=5)
    with_cache = generate(model, prompt, max_new, temperature=0)
    model.supports_cache = False
    without_cache = generate(model, prompt, max_new, temperature=0)
    assert with_cache.shape == (2, 5 + max_new) and with_cache.dtype == torch.long
    assert torch.equal(with_cache[:, :5], prompt)
    assert torch.equal(with_cache, without_cache)


def test_generate_restores_training_and_stops_at_eos():
    model = build().train()
    prompt = tokens(length=4)
    first = generate(model, prompt, 1, temperature=0)[:, -1]
    model.train()
    out = generate(model, prompt[:1], 10, temperature=0, eos_id=int(first[0]))
    assert model.training
    assert out.shape == (1, 5)


def test_sampling_is_reproducible_with_generator():
    model = build()
    prompt = tokens(length=4)
    runs = [
        generate(model, prompt, 8, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(3))
        for _ in range(2)
    ]
    assert torch.equal(*runs)


def test_tied_embeddings_share_storage():
    tied, untied = build(), build(tie_embeddings=False)
    assert tied.lm_head.weight.data_ptr() == tied.wte.weight.data_ptr()
    assert untied.lm_head.weight.data_ptr() != untied.wte.weight.data_ptr()
    assert untied.num_params() - tied.num_params() == V * 64


@pytest.mark.parametrize("pos", ["rope", "learned"])
def test_num_params_and_flops(pos):
    model = build(pos=pos)
    total = sum(p.numel() for p in model.parameters())
    assert model.num_params(non_embedding=False) == total
    assert model.num_params() == total - (T * 64 if pos == "learned" else 0)
    assert model.flops_per_token(T) == 6 * model.num_params() + 12 * 2 * 64 * T


def test_residual_projections_are_scaled_down():
    model = build(n_layer=8, n_embd=256, n_head=4)
    std = model.blocks[0].attn.proj.weight.std().item()
    assert std == pytest.approx(0.02 / math.sqrt(16), rel=0.1)
    assert model.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_overfits_one_batch():
    model = build().train()
    idx = tokens(B=4, length=T + 1, seed=2)
    x, y = idx[:, :-1], idx[:, 1:]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = F.cross_entropy(model(x).logits.reshape(-1, V), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert abs(losses[0] - math.log(V)) < 0.2
    assert losses[-1] < 0.1


@pytest.mark.parametrize(
    "overrides",
    [
        dict(mlp="gelu", norm="layernorm", pos="learned", bias=True, dropout=0.1),
        dict(mlp="swiglu", norm="rmsnorm", pos="rope"),
    ],
    ids=["gelu-layernorm-learned-bias", "swiglu-rmsnorm-rope"],
)
def test_config_variants_build_and_train_step(overrides):
    model = build(**overrides).train()
    logits = model(tokens()).logits
    assert logits.shape == (2, T, V) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("pos", ["rope", "learned"])
def test_left_padding_with_key_mask_and_positions_matches_the_row_alone(pos):
    """supports_padding: padded keys are unseen, per-row positions count from the first real token,
    padded queries stay finite (no all -inf row), with and without return_attention."""
    model = build(pos=pos)
    assert model.supports_padding
    short, pad = tokens(B=1, length=6), 4
    padded = torch.cat([torch.zeros(1, pad, dtype=torch.long), short], dim=1)
    key_mask = torch.arange(pad + 6)[None] >= pad
    positions = (torch.arange(pad + 6)[None] - pad).clamp(min=0)
    alone = model(short).logits
    for attention in (False, True):
        out = model(padded, key_mask=key_mask, positions=positions, return_attention=attention)
        assert torch.isfinite(out.logits).all()
        torch.testing.assert_close(out.logits[:, pad:], alone, atol=1e-5, rtol=1e-5)
    if attention:
        assert out.attention[0][..., pad:, :pad].abs().max() == 0  # real queries never attend to padding
