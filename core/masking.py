"""BERT's masked-LM corruption (Devlin et al. 2019, section 3.1).

A share ``prob`` of the positions is selected for prediction; of those, 80% are
replaced by the mask token, 10% by a random token and 10% are left unchanged, so that
the encoder cannot learn that only ``[MASK]`` positions matter. Special tokens (pad,
cls, sep, ...) are never selected and never drawn as the random replacement.

It lives in the core rather than in the training engine because the contract suites
(``lmforge.testing``) feed masked models with it, and they must not import the engine.
"""

from __future__ import annotations

from typing import Sequence

import torch

IGNORE_INDEX = -100  # torch.nn.functional.cross_entropy's default ignore_index


def mask_tokens(
    ids: torch.Tensor,
    *,
    vocab_size: int,
    mask_id: int,
    special_ids: Sequence[int],
    prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt ``ids`` (T,) or (B, T) for masked-LM; returns ``(inputs, labels)`` of the same shape.

    ``labels`` holds the original id at the selected positions and ``IGNORE_INDEX``
    elsewhere. Every sequence with at least one non-special token gets at least one
    selected position, so no row contributes an empty loss. The result depends only on
    the inputs and ``generator`` (which must live on ``ids``'s device when given).
    """
    if ids.dim() not in (1, 2):
        raise ValueError(f"mask_tokens takes ids of shape (T,) or (B, T), got {tuple(ids.shape)}")
    if not 0.0 < prob <= 1.0:
        raise ValueError(f"the masking probability must be in (0, 1], got {prob}")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id={mask_id} is outside the vocabulary of {vocab_size} tokens")
    bad = [i for i in special_ids if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"special ids {bad} are outside the vocabulary of {vocab_size} tokens")
    x = ids.long().unsqueeze(0) if ids.dim() == 1 else ids.long()  # (B, T)
    device = x.device

    special = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    special[list(special_ids)] = True
    special[mask_id] = True  # never selected, and never drawn as a random replacement
    ordinary = (~special).nonzero().squeeze(1)  # (V',) ids a random replacement may take
    if len(ordinary) == 0:
        raise ValueError(f"every one of the {vocab_size} token ids is special: nothing to mask or sample")
    is_special = special[x]  # (B, T)

    u = torch.rand(x.shape, generator=generator, device=device)  # (B, T)
    selected = (u < prob) & ~is_special
    # a row with nothing selected gets its non-special position with the smallest draw
    empty = ~selected.any(dim=1) & (~is_special).any(dim=1)  # (B,)
    forced = u.masked_fill(is_special, 2.0).argmin(dim=1)  # (B,)
    rows = empty.nonzero().squeeze(1)
    selected[rows, forced[rows]] = True

    labels = torch.where(selected, x, torch.full_like(x, IGNORE_INDEX))
    r = torch.rand(x.shape, generator=generator, device=device)
    random_ids = ordinary[torch.randint(len(ordinary), x.shape, generator=generator, device=device)]
    inputs = torch.where(selected & (r < 0.8), torch.full_like(x, mask_id), x)
    inputs = torch.where(selected & (r >= 0.8) & (r < 0.9), random_ids, inputs)
    if ids.dim() == 1:
        return inputs[0], labels[0]
    return inputs, labels
