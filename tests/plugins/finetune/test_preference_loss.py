"""The preference objectives against hand computations, and the reference: frozen, no
gradient, unchanged; the wrapper's checkpoint is the policy's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lmforge.plugins.finetune._preference import (
    IGNORE, Objective, PreferenceModel, preference_loss, preference_z, reference_logps, reply_logps,
)
from lmforge.plugins.models.transformer import Transformer, TransformerConfig

# fixed summed log-probabilities of (chosen, rejected) replies for two pairs, and their lengths
POLICY = torch.tensor([[-10.0, -14.0], [-8.0, -7.0]])
REFERENCE = torch.tensor([[-11.0, -13.0], [-9.0, -9.0]])
LENGTHS = torch.tensor([[4.0, 7.0], [2.0, 5.0]])


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def dpo(beta: float) -> Objective:
    return Objective("dpo", beta, 0.0, 0.0)


def test_dpo_loss_is_the_hand_computation():
    z, chosen, rejected = preference_z(dpo(0.1), POLICY, REFERENCE, LENGTHS)
    # pair 0: (−10 − −11) − (−14 − −13) = 2; pair 1: (−8 − −9) − (−7 − −9) = −1
    expected = [-math.log(sigmoid(0.1 * 2)), -math.log(sigmoid(0.1 * -1))]
    assert preference_loss(z).tolist() == pytest.approx(expected, rel=1e-6)
    assert chosen.tolist() == pytest.approx([0.1, 0.1]) and rejected.tolist() == pytest.approx([-0.1, 0.2])


def test_dpo_loss_is_ln2_when_the_policy_is_the_reference():
    z, chosen, rejected = preference_z(dpo(0.5), REFERENCE, REFERENCE, LENGTHS)
    assert preference_loss(z).tolist() == pytest.approx([math.log(2)] * 2)
    assert chosen.tolist() == rejected.tolist() == [0.0, 0.0]


def test_dpo_loss_at_the_limits_of_beta():
    small = preference_loss(preference_z(dpo(1e-8), POLICY, REFERENCE, LENGTHS)[0])
    assert small.tolist() == pytest.approx([math.log(2)] * 2, abs=1e-6)  # β -> 0: every pair is a coin toss
    large = preference_loss(preference_z(dpo(1e4), POLICY, REFERENCE, LENGTHS)[0])
    # β -> ∞: a pair ranked right costs nothing, one ranked wrong costs β·|margin| (softplus, no overflow)
    assert large[0].item() == pytest.approx(0.0, abs=1e-6) and large[1].item() == pytest.approx(1e4, rel=1e-6)


def test_simpo_is_reference_free_and_length_normalised():
    objective = Objective("simpo", 2.0, 0.5, 0.0)
    z, _, _ = preference_z(objective, POLICY, torch.zeros_like(REFERENCE), LENGTHS)
    z_other_reference, _, _ = preference_z(objective, POLICY, REFERENCE, LENGTHS)
    expected = [2.0 * (-10 / 4 - -14 / 7) - 0.5, 2.0 * (-8 / 2 - -7 / 5) - 0.5]
    assert z.tolist() == pytest.approx(expected) and z_other_reference.tolist() == pytest.approx(expected)


def test_orpo_is_the_log_odds_ratio_of_mean_token_probabilities():
    z, _, _ = preference_z(Objective("orpo", 0.1, 0.0, 1.0), POLICY, REFERENCE, LENGTHS)

    def log_odds(logp: float, n: float) -> float:
        p = math.exp(logp / n)
        return math.log(p / (1 - p))

    assert z.tolist() == pytest.approx([log_odds(-10, 4) - log_odds(-14, 7), log_odds(-8, 2) - log_odds(-7, 5)], rel=1e-5)


def tiny(seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(TransformerConfig(n_layer=1, n_head=2, n_embd=16, dropout=0.0)).build(vocab_size=50, max_seq_len=16)


def pairs(n: int = 4, width: int = 10, seed: int = 0) -> np.ndarray:
    """(n, 5, width) pair rows: random ids, the last 4 positions of each sequence its reply."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, 5, width), dtype=np.int32)
    for i in range(n):
        for r in (0, 2):
            ids = rng.integers(1, 50, width + 1)
            rows[i, r] = ids[:-1]
            rows[i, r + 1] = np.where(np.arange(width) >= width - 4, ids[1:], IGNORE)
        rows[i, 4, 0] = i
    return rows


@pytest.mark.parametrize("live", [False, True])
def test_the_reference_gets_no_gradient_and_does_not_change(live):
    policy, rows = tiny(), pairs()
    frozen = tiny()  # the same weights: what prepare() copies from the base
    cached = torch.from_numpy(reference_logps(frozen, rows, batch_size=2, device="cpu"))
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    model = PreferenceModel(policy, dpo(0.1), cached, frozen, live=live).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    assert all(p.requires_grad for p in model.parameters()) and not any(p.requires_grad for p in frozen.parameters())
    assert len(list(model.parameters())) == len(list(policy.parameters()))  # the reference is no parameter of the model
    inputs = torch.from_numpy(rows.astype(np.int64))
    for _ in range(3):
        optimizer.zero_grad()
        model.training_loss(inputs, torch.zeros(4, 1, dtype=torch.long)).loss.backward()
        optimizer.step()
    assert all(p.grad is None for p in frozen.parameters())
    for key, value in frozen.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not torch.equal(policy.state_dict()["lm_head.weight"], before["lm_head.weight"])  # the policy did learn
    # the reference's log-probabilities are still the cached ones
    again = torch.from_numpy(reference_logps(frozen, rows, batch_size=3, device="cpu"))
    torch.testing.assert_close(again, cached)


def test_cached_and_live_references_give_the_same_loss():
    rows = pairs(seed=1)
    inputs = torch.from_numpy(rows.astype(np.int64))
    cached = torch.from_numpy(reference_logps(tiny(), rows, batch_size=4, device="cpu"))
    policy = tiny(seed=3)  # not the reference: the loss is not ln 2
    losses = [PreferenceModel(policy, dpo(0.3), cached, tiny(), live=live).train().training_loss(inputs, None).loss for live in (False, True)]
    torch.testing.assert_close(losses[0], losses[1])
    assert abs(losses[0].item() - math.log(2)) > 1e-3


def test_reference_logps_leaves_the_model_as_it_was():
    model, rows = tiny().train(), pairs()
    found = reference_logps(model, rows, batch_size=3, device="cpu")
    assert model.training and all(p.grad is None for p in model.parameters())
    ids = torch.from_numpy(rows[:, 0].astype(np.int64))
    by_hand, count = reply_logps(model.eval(), ids, torch.from_numpy(rows[:, 1].astype(np.int64)))
    torch.testing.assert_close(torch.from_numpy(found[:, 0]), by_hand)
    assert count.tolist() == [4] * 4


def test_the_checkpoint_of_the_wrapper_is_the_policy_s():
    policy = tiny()
    model = PreferenceModel(policy, dpo(0.1), torch.zeros(4, 2), tiny())
    assert model.state_dict().keys() == policy.state_dict().keys()
    other = tiny(seed=5)
    fresh = PreferenceModel(tiny(seed=7), dpo(0.1), torch.zeros(4, 2), tiny())
    fresh.load_state_dict(other.state_dict())  # a checkpoint's model.* keys, as Lightning restores them
    for key, value in other.state_dict().items():
        assert torch.equal(fresh.policy.state_dict()[key], value), key
