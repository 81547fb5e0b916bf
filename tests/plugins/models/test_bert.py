"""Behaviour of ``model=bert``: bidirectional attention, maps, MLM training, sizes, tokenizer default."""

import pytest
import torch
import torch.nn.functional as F

from lmforge.plugins.models.bert import SIZES, Bert, BertConfig
from lmforge.masking import mask_tokens
from lmforge.testing import ArchitectureContract

V, T = 97, 24
TINY = dict(n_layer=2, n_head=4, n_embd=32, dropout=0.0)


class TestBertContract(ArchitectureContract):
    component = Bert
    config = BertConfig(n_layer=2, n_head=2, n_embd=32, dropout=0.0)


class TestPreLNBertContract(ArchitectureContract):
    component = Bert
    config = BertConfig(n_layer=2, n_head=2, n_embd=32, dropout=0.0, norm_position="pre")


def build(seed=0, **overrides):
    torch.manual_seed(seed)
    return Bert(BertConfig(**{**TINY, **overrides})).build(vocab_size=V, max_seq_len=T).eval()


def tokens(B=2, length=T, seed=1):
    return torch.randint(0, V, (B, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("norm_position", ["post", "pre"])
def test_is_bidirectional(norm_position):
    """Changing a later token changes the logits of earlier positions too."""
    model = build(norm_position=norm_position)
    idx = tokens()
    changed = idx.clone()
    changed[:, 20] = (changed[:, 20] + 1) % V
    a, b = model(idx).logits, model(changed).logits
    assert not torch.allclose(a[:, :20], b[:, :20])


def test_attention_maps_are_full_rows_and_match_the_fast_path():
    model = build()
    idx = tokens()
    out = model(idx, return_attention=True)
    assert len(out.attention) == 2
    for att in out.attention:
        assert att.shape == (2, 4, T, T)
        torch.testing.assert_close(att.sum(-1), torch.ones(2, 4, T))
        assert (att[..., torch.ones(T, T, dtype=torch.bool).triu(1)] > 0).all()  # it sees later positions
    torch.testing.assert_close(out.logits, model(idx).logits, atol=1e-5, rtol=1e-5)
    assert model(idx).attention is None


def test_has_no_cache_and_refuses_long_inputs():
    model = build()
    assert model.supports_cache is False and Bert.objective == "masked"
    with pytest.raises(ValueError, match="no cache"):
        model(tokens(), cache=object())
    with pytest.raises(ValueError, match="max_seq_len"):
        model(tokens(length=T + 1))


def test_mlm_head_decoder_is_tied_with_its_own_bias():
    tied, untied = build(), build(tie_embeddings=False)
    assert tied.head.decoder.weight.data_ptr() == tied.wte.weight.data_ptr()
    assert tied.head.bias.shape == (V,)
    assert untied.num_params() - tied.num_params() == V * 32


def test_num_params_and_flops():
    model = build()
    total = sum(p.numel() for p in model.parameters())
    assert model.num_params(non_embedding=False) == total
    assert model.num_params() == total - T * 32
    assert model.flops_per_token(T) == 6 * model.num_params() + 12 * 2 * 32 * T


def test_learns_to_fill_in_masked_tokens():
    """Trained on a repeating pattern, it predicts masked positions from both sides."""
    model = build().train()
    pattern = torch.arange(T) % 7 + 10  # (T,) position t holds 10 + t mod 7
    batch = pattern.repeat(16, 1)  # (16, T)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        inputs, labels = mask_tokens(batch, vocab_size=V, mask_id=V - 1, special_ids=[0, V - 1], generator=g)
        loss = F.cross_entropy(model(inputs).logits.reshape(-1, V), labels.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    masked = pattern.clone()[None]
    masked[0, [5, 12]] = V - 1
    assert model(masked).logits[0, [5, 12]].argmax(-1).tolist() == pattern[[5, 12]].tolist()


@pytest.mark.parametrize("size", list(SIZES))
def test_size_presets_resolve(size):
    config = BertConfig(size=size).resolved()
    assert (config.n_layer, config.n_head, config.n_embd) == tuple(SIZES[size].values())


def test_explicit_dims_win_over_the_size():
    """``model=bert model.size=base model.n_layer=6``: six BERT-base blocks."""
    config = BertConfig(size="base", n_layer=6).resolved()
    assert (config.n_layer, config.n_head, config.n_embd) == (6, 12, 768)
    with pytest.raises(ValueError, match="model.n_embd=100 must divide by model.n_head=12"):
        BertConfig(size="base", n_embd=100)
    with pytest.raises(ValueError, match="model.norm_position"):
        BertConfig(norm_position="sandwich")


def test_base_has_the_bert_base_shape():
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = Bert(BertConfig(size="base")).build(vocab_size=30522, max_seq_len=512)
    # BERT-base is 110M with 2 segment embeddings and the NSP pooler, which this has not
    assert 109e6 < model.num_params(non_embedding=False) < 110e6


def test_the_cards_command_trains_a_masked_lm_end_to_end(tmp_path):
    """``lmforge train model=bert``: WordPiece by default, masked batches, the loss goes down, metrics recorded."""
    import csv
    import json
    import math

    from support import TINY, lmforge

    run = tmp_path / "run"
    replaced = ("tokenizer.vocab_size", "trainer.max_steps", "optimizer.lr")
    overrides = [o for o in TINY if not o.startswith(replaced)] + ["tokenizer.vocab_size=1024", "trainer.max_steps=40", "optimizer.lr=2e-3"]
    lmforge("train", "model=bert", *overrides, f"hydra.run.dir={run}", cwd=tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["signature"]["tokenizer"] == "wordpiece" and summary["steps"] == 40
    assert math.isfinite(summary["val_loss"]) and 0.0 <= summary["val_top1"] <= summary["val_top5"] <= 1.0
    with open(run / "metrics.csv") as f:
        losses = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    # masked LM learns slower than causal in 40 steps: half a nat below the untrained loss (ln V) is clear progress
    assert sum(losses[-3:]) / 3 < losses[0] - 0.5, losses
