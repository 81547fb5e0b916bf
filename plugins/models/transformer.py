"""``model=transformer``: a GPT-style decoder-only Transformer.

This module is what discovery imports, so it stays light: the config schema and a thin
architecture class. The network itself is in ``_transformer.py`` and imports torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from lmforge import hookimpl
from lmforge.contracts import Architecture
from lmforge.plugins.models import check_dims, check_positive, check_rate, size_dims

# model.size picks a row; a dimension set explicitly (model.n_layer=6) wins over it.
# tiny is the default and what the tests train; base is GPT-2 small (Radford et al. 2019).
SIZES = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=128),  # 0.85M parameters besides the embedding table
    "small": dict(n_layer=6, n_head=6, n_embd=384),  # 10.6M
    "base": dict(n_layer=12, n_head=12, n_embd=768),  # 85M: GPT-2 small's 124M with its embeddings
}


@dataclass
class TransformerConfig:
    size: str = "tiny"  # tiny | small | base: a row of SIZES
    n_layer: Optional[int] = None  # None = from the size
    n_head: Optional[int] = None
    n_kv_head: Optional[int] = None  # grouped-query attention when < n_head; None = n_head
    n_embd: Optional[int] = None
    mlp: str = "swiglu"  # swiglu | gelu
    mlp_ratio: float = 4.0  # hidden width / n_embd (SwiGLU keeps the parameter count: 2/3 of it)
    norm: str = "rmsnorm"  # rmsnorm | layernorm
    pos: str = "rope"  # rope | learned
    rope_theta: float = 10000.0
    bias: bool = False
    dropout: float = 0.0
    tie_embeddings: bool = True
    attention: str = "causal"  # causal | document: no attention across document boundaries (FlexAttention)

    def __post_init__(self) -> None:
        choices = {"mlp": ("swiglu", "gelu"), "norm": ("rmsnorm", "layernorm"), "pos": ("rope", "learned"), "attention": ("causal", "document")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"model.{key}={getattr(self, key)!r} is not one of {', '.join(allowed)}")
        dims = size_dims(self, SIZES)
        check_dims(dims | ({"n_kv_head": self.n_kv_head} if self.n_kv_head is not None else {}), SIZES)
        check_positive("mlp_ratio", self.mlp_ratio, 4.0)
        check_positive("rope_theta", self.rope_theta, 10000.0)
        check_rate("dropout", self.dropout)
        if self.attention == "document" and self.dropout:
            raise ValueError("model.attention=document has no attention dropout (FlexAttention): set model.dropout=0, or model.attention=causal")
        kv = self.n_kv_head or dims["n_head"]
        if dims["n_embd"] % dims["n_head"] or dims["n_head"] % kv:
            raise ValueError(
                f"model.n_embd={dims['n_embd']} must divide by model.n_head={dims['n_head']}, "
                f"and n_head by model.n_kv_head={kv} (model.size={self.size} gives the dimensions not set)"
            )

    def resolved(self) -> "TransformerConfig":
        """A copy with every dimension filled in from the size table."""
        return dataclasses.replace(self, **size_dims(self, SIZES))


class Transformer(Architecture):
    """Pre-norm decoder with RoPE, SwiGLU, RMSNorm, tied embeddings and a KV cache."""

    name = "transformer"
    Config = TransformerConfig
    objective = "causal"

    def build(self, vocab_size: int, max_seq_len: int):
        from lmforge.plugins.models._transformer import GPT

        return GPT(self.config.resolved(), vocab_size=vocab_size, max_seq_len=max_seq_len)


@hookimpl
def register_models(register):
    register(Transformer)
