"""The loss is on target tokens only: what the prompt's positions would predict changes
neither the loss nor the gradients, through the model and the loss the engine trains with."""

from __future__ import annotations

import torch

from lmforge.engine.config import LossConfig
from lmforge.engine.losses import lm_loss
from lmforge.plugins.finetune._data import pairs
from lmforge.plugins.models.transformer import Transformer, TransformerConfig


def loss_and_grads(model, inputs, targets):
    model.zero_grad()
    loss = lm_loss(model(torch.tensor([inputs])).logits, torch.tensor([targets]), LossConfig()).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_prompt_target_ids_change_neither_loss_nor_gradients():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(n_layer=2, n_head=2, n_embd=32, dropout=0.0)).build(vocab_size=64, max_seq_len=16)
    ids = [5, 9, 13, 7, 21, 30, 31, 2]  # a prompt of five tokens, a reply of three
    target = [False] * 5 + [True] * 3
    inputs, targets = pairs(ids, target)
    loss, grads = loss_and_grads(model, inputs, targets)

    other = [40, 41, 42, 43, 44] + ids[5:]  # the prompt's tokens, as targets, replaced
    _, masked = pairs(other, target)
    again, again_grads = loss_and_grads(model, inputs, masked)
    assert torch.equal(again, loss)
    for name, grad in grads.items():
        assert torch.equal(again_grads[name], grad), name

    # the same change at a target position does move the loss: the check above can fail
    _, moved = pairs(ids[:6] + [50, ids[7]], target)
    changed, _ = loss_and_grads(model, inputs, moved)
    assert not torch.isclose(changed, loss)
