"""``model=bert``: a BERT-style bidirectional encoder trained with masked-LM.

This module is what discovery imports, so it stays light: the config schema, the size
table and a thin architecture class. The network is in ``_bert.py`` and imports torch.
``conf/model/bert.yaml`` also selects ``tokenizer=wordpiece``; a ``tokenizer=`` on the
command line still wins.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from lmforge import hookimpl
from lmforge.contracts import Architecture
from lmforge.plugins.models import check_dims, check_positive, check_rate, size_dims

# model.size picks a row; a dimension set explicitly (model.n_layer=6) wins over it.
# base is BERT-base (Devlin et al. 2019); small is the 6-layer, 384-wide MiniLM shape.
SIZES = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=128),  # 0.8M parameters besides the embedding tables
    "small": dict(n_layer=6, n_head=6, n_embd=384),  # 10.8M
    "base": dict(n_layer=12, n_head=12, n_embd=768),  # 86M: BERT-base's 110M with a 30k vocabulary
}


@dataclass
class BertConfig:
    size: str = "tiny"  # tiny | small | base: a row of SIZES
    n_layer: Optional[int] = None  # None = from the size
    n_head: Optional[int] = None
    n_embd: Optional[int] = None
    mlp_ratio: float = 4.0  # MLP hidden width / n_embd
    norm_position: str = "post"  # post: BERT's LayerNorm after each residual add; pre: before (Xiong et al. 2020)
    dropout: float = 0.1  # BERT's rate, on embeddings, attention weights and residual paths
    tie_embeddings: bool = True  # the MLM decoder shares the input embedding matrix

    def __post_init__(self) -> None:
        if self.norm_position not in ("post", "pre"):
            raise ValueError(f"model.norm_position={self.norm_position!r} is not one of post, pre")
        dims = size_dims(self, SIZES)
        check_dims(dims, SIZES)
        check_positive("mlp_ratio", self.mlp_ratio, 4.0)
        check_rate("dropout", self.dropout)
        if dims["n_embd"] % dims["n_head"]:
            raise ValueError(
                f"model.n_embd={dims['n_embd']} must divide by model.n_head={dims['n_head']} "
                f"(model.size={self.size} gives the dimensions not set)"
            )

    def resolved(self) -> "BertConfig":
        """A copy with every dimension filled in from the size table."""
        return dataclasses.replace(self, **size_dims(self, SIZES))


class Bert(Architecture):
    """Bidirectional encoder: learned positions, GELU, LayerNorm, MLM head with a tied decoder.

    Every position sees every other one, so there is no cache (``supports_cache`` is
    False) and no generation. Inputs are packed windows without padding, as the trainer
    builds them, so attention needs no padding mask; there are no segment embeddings
    (no next-sentence prediction, as RoBERTa).
    """

    name = "bert"
    Config = BertConfig
    objective = "masked"

    def build(self, vocab_size: int, max_seq_len: int):
        from lmforge.plugins.models._bert import BertLM

        return BertLM(self.config.resolved(), vocab_size=vocab_size, max_seq_len=max_seq_len)


@hookimpl
def register_models(register):
    register(Bert)
