"""``model=rnn``: an LSTM or GRU language model.

This module is what discovery imports, so it stays light: the config schema, the size
table and a thin architecture class. The network is in ``_rnn.py`` and imports torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from lmforge import hookimpl
from lmforge.contracts import Architecture
from lmforge.plugins.models import check_dims, check_rate, size_dims

# model.size picks a row; a dimension set explicitly (model.hidden=512) wins over it.
# base is the AWD-LSTM shape (Merity et al. 2017): 3 layers, 400-wide embeddings, 1150 units.
SIZES = {
    "tiny": dict(n_layer=2, n_embd=128, hidden=256),  # 0.95M LSTM parameters besides the embedding table
    "small": dict(n_layer=2, n_embd=256, hidden=768),  # 8.1M
    "base": dict(n_layer=3, n_embd=400, hidden=1150),  # 29M (AWD-LSTM: 24M, its last layer is 400 wide)
}


@dataclass
class RNNConfig:
    size: str = "tiny"  # tiny | small | base: a row of SIZES
    cell: str = "lstm"  # lstm | gru
    n_layer: Optional[int] = None  # stacked recurrent layers; None = from the size
    n_embd: Optional[int] = None  # embedding width
    hidden: Optional[int] = None  # recurrent state width
    dropout: float = 0.0  # on the embeddings, between layers and before the head
    tie_embeddings: bool = True  # Press & Wolf 2017; a projection maps hidden to n_embd when they differ

    def __post_init__(self) -> None:
        if self.cell not in ("lstm", "gru"):
            raise ValueError(f"model.cell={self.cell!r} is not one of lstm, gru")
        check_dims(size_dims(self, SIZES), SIZES)
        check_rate("dropout", self.dropout)

    def resolved(self) -> "RNNConfig":
        """A copy with every dimension filled in from the size table."""
        return dataclasses.replace(self, **size_dims(self, SIZES))


class RNN(Architecture):
    """Embedding -> stacked LSTM/GRU -> (projection) -> tied head; the cache is the recurrent state.

    There is no attention: ``return_attention=True`` gives an empty list (one map per
    attention layer, and there are none), so inspection code that loops over layers works
    unchanged on every architecture.
    """

    name = "rnn"
    Config = RNNConfig
    objective = "causal"

    def build(self, vocab_size: int, max_seq_len: int):
        from lmforge.plugins.models._rnn import RecurrentLM

        return RecurrentLM(self.config.resolved(), vocab_size=vocab_size, max_seq_len=max_seq_len)


@hookimpl
def register_models(register):
    register(RNN)
