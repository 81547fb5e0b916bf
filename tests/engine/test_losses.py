"""The training objective: cross-entropy, label smoothing and z-loss, with -100 ignored."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.engine.losses import IGNORE_INDEX, lm_loss
from lmforge.engine.config import LossConfig

# two positions over a vocabulary of three; the second is not predicted
LOGITS = [[1.0, 2.0, 0.5], [3.0, -1.0, 0.0]]
TARGETS = [1, IGNORE_INDEX]


def tensors(logits=LOGITS, targets=TARGETS):
    return torch.tensor([logits]), torch.tensor([targets])  # (1, T, V), (1, T)


def lse(row: list[float]) -> float:
    return math.log(sum(math.exp(x) for x in row))


def test_plain_cross_entropy_by_hand():
    parts = lm_loss(*tensors(), LossConfig())
    expected = lse(LOGITS[0]) - LOGITS[0][1]
    assert parts.loss.item() == pytest.approx(expected, rel=1e-6)
    assert parts.nll_sum.item() == pytest.approx(expected, rel=1e-6) and parts.count.item() == 1


def test_label_smoothing_by_hand():
    eps = 0.1
    parts = lm_loss(*tensors(), LossConfig(label_smoothing=eps))
    row = LOGITS[0]
    nll = lse(row) - row[1]
    uniform = sum(lse(row) - x for x in row) / len(row)  # cross-entropy against the uniform distribution
    assert parts.loss.item() == pytest.approx((1 - eps) * nll + eps * uniform, rel=1e-6)
    assert parts.nll_sum.item() == pytest.approx(nll, rel=1e-6)  # the metric stays the plain loss


def test_z_loss_by_hand():
    parts = lm_loss(*tensors(), LossConfig(z_loss=1e-2))
    row = LOGITS[0]
    assert parts.loss.item() == pytest.approx(lse(row) - row[1] + 1e-2 * lse(row) ** 2, rel=1e-6)
    assert parts.z_sum.item() == pytest.approx(lse(row) ** 2, rel=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_matches_torch_cross_entropy_on_random_batches(smoothing):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g) * 3  # (B, T, V)
    targets = torch.randint(0, 11, (3, 7), generator=g)
    targets[torch.rand(3, 7, generator=g) < 0.4] = IGNORE_INDEX
    expected = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1), ignore_index=IGNORE_INDEX, label_smoothing=smoothing)
    assert lm_loss(logits, targets, LossConfig(label_smoothing=smoothing)).loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_ignored_positions_neither_count_nor_get_gradient():
    logits, targets = tensors()
    logits.requires_grad_(True)
    lm_loss(logits, targets, LossConfig(label_smoothing=0.1, z_loss=1e-3)).loss.backward()
    assert torch.all(logits.grad[0, 1] == 0) and torch.any(logits.grad[0, 0] != 0)
    changed = torch.tensor([[LOGITS[0], [50.0, 50.0, -50.0]]])
    assert lm_loss(changed, targets, LossConfig()).loss.item() == lm_loss(*tensors(), LossConfig()).loss.item()


def test_a_batch_with_nothing_to_predict_gives_zero_not_nan():
    logits = torch.randn(2, 4, 5, requires_grad=True)
    parts = lm_loss(logits, torch.full((2, 4), IGNORE_INDEX), LossConfig(label_smoothing=0.1, z_loss=1e-4))
    parts.loss.backward()
    assert parts.loss.item() == 0.0 and parts.count.item() == 0 and torch.all(logits.grad == 0)


def test_low_precision_logits_give_an_fp32_loss():
    logits, targets = torch.randn(2, 5, 9) * 4, torch.randint(0, 9, (2, 5))
    low = lm_loss(logits.bfloat16(), targets, LossConfig(z_loss=1e-4)).loss
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(lm_loss(logits.bfloat16().float(), targets, LossConfig(z_loss=1e-4)).loss.item(), rel=1e-6)


@pytest.mark.parametrize("key,value", [("label_smoothing", 1.0), ("label_smoothing", -0.1), ("z_loss", -1.0)])
def test_bad_loss_options_fail_naming_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        LossConfig(**{key: value})
