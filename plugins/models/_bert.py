"""The network behind ``model=bert``: a BERT-style bidirectional Transformer encoder.

Reads top to bottom: attention, the MLP, the block, the masked-LM head, then the model.
The config schema lives in ``bert.py``. Shapes: B batch, T positions, C = n_embd,
H heads, D head dim, V vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmforge.contracts import LMOutput


class SelfAttention(nn.Module):
    """Multi-head attention without a mask: every position attends to all T positions."""

    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = config.dropout
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x, return_attention=False):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        dropout = self.dropout if self.training else 0.0
        att = None
        if return_attention:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, H, T, T)
            att = F.softmax(scores.float(), dim=-1).type_as(q)
            y = F.dropout(att, dropout, self.training) @ v  # (B, H, T, D)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_drop(self.proj(y)), att


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        hidden = round(config.mlp_ratio * config.n_embd)
        self.fc = nn.Linear(config.n_embd, hidden)
        self.proj = nn.Linear(hidden, config.n_embd)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x):  # (B, T, C)
        return self.drop(self.proj(F.gelu(self.fc(x))))  # GELU: Hendrycks & Gimpel 2016, as BERT


class Block(nn.Module):
    """Post-LN as BERT (normalise after each residual add), or pre-LN (normalise each branch's input).

    Post-LN is the original recipe and needs the warm-up; pre-LN trains deep stacks
    without it (Xiong et al. 2020) and gets a final LayerNorm in ``BertLM``.
    """

    def __init__(self, config):
        super().__init__()
        self.pre = config.norm_position == "pre"
        eps = 1e-5 if self.pre else 1e-12  # 1e-12 is BERT's own
        self.norm1 = nn.LayerNorm(config.n_embd, eps=eps)
        self.attn = SelfAttention(config)
        self.norm2 = nn.LayerNorm(config.n_embd, eps=eps)
        self.mlp = MLP(config)

    def forward(self, x, return_attention=False):  # (B, T, C)
        if self.pre:
            y, att = self.attn(self.norm1(x), return_attention)
            x = x + y
            return x + self.mlp(self.norm2(x)), att
        y, att = self.attn(x, return_attention)
        x = self.norm1(x + y)
        return self.norm2(x + self.mlp(x)), att


class MLMHead(nn.Module):
    """BERT's prediction head: a dense transform, GELU and LayerNorm, then the decoder to V."""

    def __init__(self, config, vocab_size: int):
        super().__init__()
        self.dense = nn.Linear(config.n_embd, config.n_embd)
        self.norm = nn.LayerNorm(config.n_embd, eps=1e-12)
        self.decoder = nn.Linear(config.n_embd, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))  # per-token output bias, kept when the decoder is tied

    def forward(self, x):  # (B, T, C) -> (B, T, V)
        return self.decoder(self.norm(F.gelu(self.dense(x)))) + self.bias


class BertLM(nn.Module):
    supports_cache = False  # bidirectional: a new token changes every earlier position

    def __init__(self, config, vocab_size: int, max_seq_len: int):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.max_seq_len = max_seq_len

        self.wte = nn.Embedding(vocab_size, config.n_embd)
        self.wpe = nn.Embedding(max_seq_len, config.n_embd)  # learned positions, as BERT
        self.norm_emb = nn.LayerNorm(config.n_embd, eps=1e-12)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm_f = nn.LayerNorm(config.n_embd) if config.norm_position == "pre" else nn.Identity()
        self.head = MLMHead(config, vocab_size)
        if config.tie_embeddings:
            self.head.decoder.weight = self.wte.weight

        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # BERT's truncated normal(0.02) init; nn.LayerNorm already starts at weight 1, bias 0
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.trunc_normal_(module.weight, mean=0.0, std=0.02, a=-0.04, b=0.04)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, *, cache=None, return_attention: bool = False, return_hidden: bool = False):
        if cache is not None:
            raise ValueError("model=bert has no cache (supports_cache is False): it is bidirectional; call it without cache=")
        B, T = idx.shape
        if T > self.max_seq_len:
            raise ValueError(
                f"the input has {T} positions but the model was built for max_seq_len={self.max_seq_len}: "
                f"crop the input to {self.max_seq_len} tokens or raise data.seq_len"
            )
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))  # (B, T, C)
        x = self.drop(self.norm_emb(x))
        attention = [] if return_attention else None
        hidden = [x] if return_hidden else None  # the residual stream: after the embedding, then each block
        for block in self.blocks:
            x, att = block(x, return_attention)
            if return_attention:
                attention.append(att)  # (B, H, T, T)
            if return_hidden:
                hidden.append(x)  # (B, T, C)
        logits = self.unembed(x)  # (B, T, V)
        return LMOutput(logits=logits, attention=attention, hidden=hidden)

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding table, whose output attribution methods perturb (lmforge explain)."""
        return self.wte

    def unembed(self, h: torch.Tensor) -> torch.Tensor:
        """A residual stream (B, T, C) to logits (B, T, V): the final norm (pre-LN), then the MLM head."""
        return self.head(self.norm_f(h))

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters, a tied matrix once; ``non_embedding`` drops the position table (as GPT)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token, forward and backward (PaLM appendix B, Chowdhery et al. 2022).

        6N for the weights, plus 12·L·C·T for the attention scores and the weighted sum: the
        PaLM term already counts the full T×T map, which a bidirectional encoder computes.
        """
        c = self.config
        return 6 * self.num_params(non_embedding=True) + 12 * c.n_layer * c.n_embd * seq_len
