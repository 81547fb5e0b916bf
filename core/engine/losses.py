"""The training objective: cross-entropy over the predicted positions, in fp32.

One ``logsumexp`` per position gives all three terms, so the (N, V) log-probabilities are
never materialised beside the logits:

- negative log-likelihood ``lse - logit[target]``, what the metrics report;
- label smoothing (Szegedy et al. 2016) ``lse - mean(logits)``, the cross-entropy against
  the uniform distribution, mixed in with weight ``label_smoothing`` as ``F.cross_entropy``
  does;
- z-loss (PaLM, Chowdhery et al. 2022) ``lse^2``, which keeps the softmax normaliser near 1
  and the logits from drifting.

Targets equal to ``IGNORE_INDEX`` are not predicted (the causal batches' padding, the
unmasked positions of a masked-LM batch) and count nowhere.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from lmforge.engine.config import LossConfig

IGNORE_INDEX = -100


class LossParts(NamedTuple):
    loss: torch.Tensor  # the objective to minimise: mean over predicted positions
    nll_sum: torch.Tensor  # plain negative log-likelihood, summed over predicted positions (nats)
    z_sum: torch.Tensor  # logsumexp^2 summed over predicted positions
    count: torch.Tensor  # predicted positions


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, cfg: LossConfig) -> LossParts:
    """``logits`` (B, T, V) in any dtype, ``targets`` (B, T) long with ``IGNORE_INDEX`` holes.

    A batch with no predicted position gives a loss of 0 (not NaN), so it neither trips the
    non-finite check nor moves the weights.
    """
    logits = logits.reshape(-1, logits.size(-1)).float()  # (N, V), fp32 even under autocast
    targets = targets.reshape(-1)  # (N,)
    if not cfg.z_loss:
        return _cross_entropy(logits, targets, cfg.label_smoothing)
    keep = targets != IGNORE_INDEX  # (N,)
    safe = torch.where(keep, targets, 0)
    lse = torch.logsumexp(logits, dim=-1)  # (N,)
    nll = (lse - logits.gather(1, safe[:, None]).squeeze(1)) * keep  # (N,)
    count = keep.sum()
    denom = count.clamp(min=1)
    nll_sum = nll.sum()
    loss = nll_sum / denom
    if cfg.label_smoothing:
        uniform = ((lse - logits.mean(dim=-1)) * keep).sum() / denom
        loss = (1.0 - cfg.label_smoothing) * loss + cfg.label_smoothing * uniform
    z_sum = (lse.square() * keep).sum() if cfg.z_loss else logits.new_zeros(())
    if cfg.z_loss:
        loss = loss + cfg.z_loss * z_sum / denom
    return LossParts(loss, nll_sum.detach(), z_sum.detach(), count)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> LossParts:
    """Without z-loss: PyTorch's fused cross-entropy kernel, which on a CPU is several times
    faster than the ``logsumexp`` path above (the same values, checked in the tests)."""
    count = (targets != IGNORE_INDEX).sum()
    denom = count.clamp(min=1)
    if not label_smoothing:
        nll_sum = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
        return LossParts(nll_sum / denom, nll_sum.detach(), logits.new_zeros(()), count)
    with torch.no_grad():  # the plain likelihood, for the metrics only
        nll_sum = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    smoothed = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum", label_smoothing=label_smoothing)
    return LossParts(smoothed / denom, nll_sum, logits.new_zeros(()), count)
