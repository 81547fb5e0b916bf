"""A classification head on a language model of any architecture: ``Classifier`` and its record.

``Classifier(lm, head)`` wraps a built model (any architecture meeting the contract in
``lmforge.contracts.Architecture``) and returns ``LMOutput(logits=(B, 1, K))``, K the
labels, so the engine's loss and metrics train and score it unchanged against targets
(B, 1) holding the label index. ``Head`` is what a run directory records of it
(``classifier.json``), so that ``lmforge.runs.Run.model()`` rebuilds it; the engine
(``lmforge.engine``: ``LabelData``, ``encode_rows``, ``predict_labels``) trains it and
predicts with it.

Pooling: an encoder (``objective == "masked"``, BERT) reads the whole text from every
position, so the rows start with the tokenizer's ``cls`` token and the head reads
position 0 (``pooling="first"``); a decoder (causal: the transformer, the rnn) sees only
the past at each position, so the head reads the last real token (``pooling="last"``).
The features pooled are the last residual stream, ``LMOutput.hidden[-1]`` (C wide),
where the model has ``unembed`` (see ``Architecture``); otherwise the next-token
log-probabilities (V wide), which every architecture gives.

Padding: rows are right-padded with ``PAD`` (-1, no token's id) to one fixed length, the
``seq_len`` stored with the head, so that a row's prediction does not depend on which
rows share its batch. ``Classifier`` replaces ``PAD`` by the tokenizer's pad id before
the model sees it: a decoder never attends to it (it comes after the pooled token), an
encoder does, the same way at training and at prediction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmforge.contracts import LMOutput
from lmforge.errors import ConfigError, DataError

PAD = -1  # padding in a classifier's input rows; no token has this id
POOLINGS = {"masked": "first", "causal": "last"}  # objective -> where the head reads


@dataclass
class Head:
    """What a run directory stores about its classification head (``classifier.json``),
    enough to rebuild it: ``Classifier(model, head)``."""

    labels: list[str]  # index -> label name, in the order of the logits
    pooling: str  # first ([CLS], an encoder) | last (the last real token, a decoder)
    seq_len: int  # the fixed length rows are padded to
    pad_id: int = 0  # the token the model sees at padded positions
    cls_id: int | None = None  # prepended to every row when pooling == "first"
    task: str = ""  # the task the head was trained on

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict, source: str = "classifier.json") -> Head:
        try:
            head = cls(**data)
        except TypeError as exc:
            raise DataError(f"{source}: not a classification head record ({exc}); fine-tune the run again") from None
        if head.pooling not in ("first", "last") or not head.labels:
            raise DataError(f"{source}: pooling={head.pooling!r}, {len(head.labels)} labels: fine-tune the run again")
        return head


def head_for(labels: Sequence[str], *, objective: str, tokenizer, seq_len: int, task: str = "") -> Head:
    """The head for a model trained with ``objective`` and ``tokenizer``, rows of ``seq_len`` at most."""
    if objective not in POOLINGS:
        raise ConfigError(f"model: objective {objective!r} has no pooling for a classification head; the known ones are causal and masked")
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise DataError(f"task={task}: a classifier needs two distinct labels or more, got {list(labels)}")
    special = tokenizer.special_ids
    pooling = POOLINGS[objective]
    cls_id = special.get("cls") if pooling == "first" else None
    if pooling == "first" and cls_id is None:
        raise ConfigError(
            f"tokenizer={tokenizer.name}: an encoder's classification head reads the [CLS] token, and this tokenizer "
            f"has none (its special roles: {', '.join(sorted(special)) or 'none'}): use a base run with tokenizer=wordpiece"
        )
    pad_id = special.get("pad", special.get("eos", 0))
    return Head(list(labels), pooling, seq_len, pad_id, cls_id, task)


class Classifier(nn.Module):
    """A classification head on ``lm``: ``forward(idx)`` gives ``LMOutput(logits=(B, 1, K))``.

    ``idx`` (B, T) holds token ids and ``PAD`` after each row's last token. The head is a
    LayerNorm (the pooled stream is unnormalised), dropout and a linear map to the K
    labels, initialised small so that training starts from uniform predictions.
    """

    supports_cache = False  # one prediction per row: nothing to decode
    # new, randomly initialised modules: a parameter-efficient method (LoRA) should train them
    # in full rather than adapt them (peft's modules_to_save)
    head_modules = ("norm", "score")

    def __init__(self, lm: nn.Module, head: Head, dropout: float = 0.1) -> None:
        super().__init__()
        self.lm, self.record = lm, head
        self.uses_hidden = callable(getattr(lm, "unembed", None))
        self.max_seq_len = getattr(lm, "max_seq_len", head.seq_len)
        with torch.no_grad():  # one token through the model tells the width of what it pools
            width = self._features(torch.full((1, 1), head.pad_id, dtype=torch.long, device=self._device())).size(-1)
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.score = nn.Linear(width, len(head.labels))
        nn.init.normal_(self.score.weight, std=0.02)
        nn.init.zeros_(self.score.bias)
        self.to(self._device())

    @property
    def labels(self) -> list[str]:
        return self.record.labels

    def _device(self) -> torch.device:
        return next(self.lm.parameters()).device

    def _features(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T, F): the last residual stream where the model exposes it, else the log-probabilities."""
        if self.uses_hidden:
            return self.lm(ids, return_hidden=True).hidden[-1]  # (B, T, C)
        return F.log_softmax(self.lm(ids).logits.float(), dim=-1)  # (B, T, V)

    def positions(self, idx: torch.Tensor) -> torch.Tensor:
        """(B,) the position each row's head reads: 0, or its last real token."""
        if self.record.pooling == "first":
            return torch.zeros(idx.size(0), dtype=torch.long, device=idx.device)
        return ((idx != PAD).sum(dim=1) - 1).clamp(min=0)

    def forward(self, idx: torch.Tensor, *, cache=None, return_attention: bool = False) -> LMOutput:
        if cache is not None:
            raise ValueError("a classifier has no cache (supports_cache is False): call it without cache=")
        pos = self.positions(idx)  # (B,)
        feats = self._features(idx.masked_fill(idx == PAD, self.record.pad_id))  # (B, T, F)
        pooled = feats[torch.arange(idx.size(0), device=idx.device), pos]  # (B, F)
        logits = self.score(self.drop(self.norm(pooled.to(self.score.weight.dtype))))  # (B, K)
        return LMOutput(logits=logits[:, None, :])  # (B, 1, K): one "position" whose targets are label ids

    def num_params(self, non_embedding: bool = True) -> int:
        head = sum(p.numel() for m in (self.norm, self.score) for p in m.parameters())
        return self.lm.num_params(non_embedding) + head

    def flops_per_token(self, seq_len: int) -> float:
        return self.lm.flops_per_token(seq_len)  # the head runs once per row: negligible
