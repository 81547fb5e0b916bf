"""``model=transformer``: a GPT-style decoder-only Transformer.

This module is what discovery imports, so it stays light: the config schema and a thin
architecture class. The network itself is in ``_transformer.py`` and imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lmforge import hookimpl
from lmforge.contracts import Architecture


@dataclass
class TransformerConfig:
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: Optional[int] = None  # grouped-query attention when < n_head; None = n_head
    n_embd: int = 128
    mlp: str = "swiglu"  # swiglu | gelu
    mlp_ratio: float = 4.0  # hidden width / n_embd (SwiGLU keeps the parameter count: 2/3 of it)
    norm: str = "rmsnorm"  # rmsnorm | layernorm
    pos: str = "rope"  # rope | learned
    rope_theta: float = 10000.0
    bias: bool = False
    dropout: float = 0.0
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        choices = {"mlp": ("swiglu", "gelu"), "norm": ("rmsnorm", "layernorm"), "pos": ("rope", "learned")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"model.{key}={getattr(self, key)!r} is not one of {', '.join(allowed)}")
        kv = self.n_kv_head or self.n_head
        if self.n_embd % self.n_head or self.n_head % kv:
            raise ValueError(
                f"model.n_embd={self.n_embd} must divide by model.n_head={self.n_head}, "
                f"and n_head by model.n_kv_head={kv}"
            )


class Transformer(Architecture):
    """Pre-norm decoder with RoPE, SwiGLU, RMSNorm, tied embeddings and a KV cache."""

    name = "transformer"
    Config = TransformerConfig
    objective = "causal"

    def build(self, vocab_size: int, max_seq_len: int):
        from lmforge.plugins.models._transformer import GPT

        return GPT(self.config, vocab_size=vocab_size, max_seq_len=max_seq_len)


@hookimpl
def register_models(register):
    register(Transformer)
