"""model.attention=document: FlexAttention's block mask keeps each document to itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmforge.engine.config import DataConfig
from lmforge.engine.data import TokenDataModule, document_ids
from lmforge.plugins.models.transformer import Transformer, TransformerConfig

T, SPLIT = 32, 12  # the first document holds positions 0..11, the second the rest


def gpt(attention: str):
    torch.manual_seed(0)
    return Transformer(TransformerConfig(attention=attention)).build(vocab_size=64, max_seq_len=T).eval()


def two_windows():
    """Two rows that differ only in the first document."""
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 64, (1, T), generator=g)
    b = a.clone()
    b[0, :SPLIT] = torch.randint(0, 64, (SPLIT,), generator=g)
    documents = (torch.arange(T) >= SPLIT).int()[None]  # (1, T)
    return a, b, documents


@torch.no_grad()
def test_a_token_does_not_see_the_document_before_its_own():
    model = gpt("document")
    a, b, documents = two_windows()
    out_a, out_b = model(a, documents=documents).logits, model(b, documents=documents).logits
    torch.testing.assert_close(out_a[0, SPLIT:], out_b[0, SPLIT:], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out_a[0, :SPLIT], out_b[0, :SPLIT])  # the changed document's own outputs change


@torch.no_grad()
def test_with_causal_attention_the_preceding_document_leaks_in():
    model = gpt("causal")
    a, b, documents = two_windows()
    out_a, out_b = model(a, documents=documents).logits, model(b, documents=documents).logits
    assert (out_a[0, SPLIT:] - out_b[0, SPLIT:]).abs().max() > 1e-3


@torch.no_grad()
def test_the_second_document_reads_as_if_it_were_alone():
    """Its outputs equal the same tokens run as their own window (RoPE is relative)."""
    model = gpt("document")
    a, _, documents = two_windows()
    alone = model(a[:, SPLIT:]).logits
    torch.testing.assert_close(model(a, documents=documents).logits[:, SPLIT:], alone, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_the_explicit_attention_maps_follow_the_same_mask():
    model = gpt("document")
    a, _, documents = two_windows()
    out = model(a, documents=documents, return_attention=True)
    torch.testing.assert_close(out.logits, model(a, documents=documents).logits, rtol=1e-4, atol=1e-5)
    assert not out.attention[0][0, :, SPLIT:, :SPLIT].any()  # no weight across the boundary


@torch.no_grad()
def test_flex_attention_with_the_block_mask_equals_the_dense_mask():
    """The CUDA path (FlexAttention, forward only on a CPU) against the CPU's dense SDPA mask."""
    import torch.nn.functional as F

    from lmforge.plugins.models._transformer import causal_mask, document_mask, flex

    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 4, T, 16, generator=g) for _ in range(3))
    documents = torch.cumsum(torch.rand(2, T, generator=g) < 0.15, dim=1).int()  # (B, T)
    dense = ((documents[:, :, None] == documents[:, None, :]) & causal_mask(T, T))[:, None]  # (B, 1, T, T)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=dense)
    torch.testing.assert_close(flex(q, k, v, document_mask(documents)), want, rtol=1e-5, atol=1e-5)


def test_document_attention_trains_on_the_cpu():
    """A backward pass through the masked attention: no gradient reaches the first document
    from the second's loss."""
    model = gpt("document").train()
    a, _, documents = two_windows()
    embedded = []
    model.wte.register_forward_hook(lambda m, i, out: embedded.append(out) or out.retain_grad())
    model(a, documents=documents).logits[0, SPLIT:].sum().backward()
    grad = embedded[0].grad[0]  # (T, C)
    assert not grad[:SPLIT].any() and grad[SPLIT:].abs().sum() > 0


def test_document_attention_refuses_dropout():
    with pytest.raises(ValueError, match="model.attention=document.*model.dropout=0"):
        TransformerConfig(attention="document", dropout=0.1)


def test_document_ids_count_documents_from_the_window_start():
    starts = np.array([0, 5, 9, 20])
    assert document_ids(starts, 3, 8).tolist() == [0, 0, 1, 1, 1, 1, 2, 2]
    assert document_ids(starts, 20, 3).tolist() == [0, 0, 0]


def test_batches_carry_the_documents_of_their_windows():
    """The data module turns the shards' boundaries into a third (B, T) tensor that matches
    where each window's tokens came from; without starts, batches stay pairs."""
    lengths = np.array([7, 30, 3, 50, 11, 40])
    tokens = np.concatenate([np.full(n, i, np.int64) for i, n in enumerate(lengths)])  # token = its document
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    data = TokenDataModule(tokens, tokens, DataConfig(seq_len=16, batch_size=4, val_batches=2), 3, 1, 0, starts=(starts, starts))
    for batch in (next(iter(data.train_dataloader())), next(iter(data.val_dataloader()))):
        inputs, targets, documents = batch
        assert documents.shape == inputs.shape and documents.dtype == torch.int32
        torch.testing.assert_close(documents.long(), inputs - inputs[:, :1])
    plain = TokenDataModule(tokens, tokens, DataConfig(seq_len=16, batch_size=4), 3, 1, 0)
    assert len(next(iter(plain.train_dataloader()))) == 2
