"""The network behind ``model=transformer``: a GPT-style decoder-only Transformer.

Reads top to bottom: norms and rotary embeddings, the KV cache, attention, the MLP, the
block, then the model. The config schema lives in ``transformer.py``.
Shapes: B batch, T new positions, S attended positions (cached + new), C = n_embd,
H query heads, Hkv key/value heads, D head dim, V vocabulary.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmforge.contracts import LMOutput


def make_norm(config) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=1e-5)  # Zhang & Sennrich 2019; has no bias
    return nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias)


def rope_tables(head_dim: int, max_seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles, (max_seq_len, D). RoPE: Su et al. 2021."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (D/2,)
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)  # (T, D/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, D): rotate-half pairing, as GPT-NeoX
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (B, H, T, D); cos, sin: (T, D), or (B, 1, T, D) for per-row positions.
    # Rotation in float32 so bf16 keeps long positions apart.
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x.float() * cos + rotated * sin).type_as(x)


def causal_mask(T: int, S: int, device=None) -> torch.Tensor:
    """(T, S) bool, True where the query may attend: the T queries are the last T of S positions."""
    offset = S - T
    return torch.arange(S, device=device)[None, :] <= torch.arange(offset, S, device=device)[:, None]


def padding_mask(key_mask: torch.Tensor, T: int) -> torch.Tensor:
    """(B, 1, T, S) bool for left-padded rows: causal, and blind to padded keys.

    ``key_mask`` (B, S) is True at real tokens. A padded query still sees itself, so that
    no row of scores is all -inf (softmax would give NaN, and NaN would reach the cache).
    """
    B, S = key_mask.shape
    own = torch.arange(S, device=key_mask.device)[None, :] == torch.arange(S - T, S, device=key_mask.device)[:, None]
    return (causal_mask(T, S, key_mask.device) & (key_mask[:, None, :] | own))[:, None]  # (B, 1, T, S)


def document_mask(documents: torch.Tensor):
    """FlexAttention's block mask for (B, T) document ids: causal, and within one document.

    Blocks of 128x128 positions that lie wholly across a document change are skipped, so a
    window of many short documents costs less attention than a causal one."""
    from torch.nn.attention.flex_attention import create_block_mask

    B, T = documents.shape

    def same_document(b, h, q, kv):
        return (q >= kv) & (documents[b, q] == documents[b, kv])

    # outside a compiled model, compile the mask's construction on CUDA rather than materialise (B, T, T)
    fast = documents.is_cuda and not torch.compiler.is_compiling()
    return create_block_mask(same_document, B, None, T, T, device=documents.device, _compile=fast)


_compiled_flex = []  # flex_attention compiled once: eagerly it runs a slow reference path


def flex(q, k, v, block_mask):
    from torch.nn.attention.flex_attention import flex_attention

    if q.is_cuda and not torch.compiler.is_compiling():  # inside a compiled model it compiles with it
        if not _compiled_flex:
            _compiled_flex.append(torch.compile(flex_attention, dynamic=False))
        return _compiled_flex[0](q, k, v, block_mask=block_mask)
    if not q.is_cuda:  # on a CPU the reference path is the one that runs everywhere: its warning is noise
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
    return flex_attention(q, k, v, block_mask=block_mask)


class KVCache:
    """Preallocated keys and values of every layer for incremental decoding.

    ``k[i]`` and ``v[i]`` are (B, Hkv, max_len, D); ``pos`` counts the positions filled.
    Attention layers write through ``update``; ``GPT.forward`` advances ``pos`` once all
    layers have seen the chunk.
    """

    def __init__(self, n_layer, batch_size, n_kv_head, max_len, head_dim, device=None, dtype=None):
        shape = (batch_size, n_kv_head, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.batch_size = batch_size
        self.max_len = max_len
        self.pos = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.pos + k.size(2)
        self.k[layer][:, :, self.pos : end] = k
        self.v[layer][:, :, self.pos : end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]  # (B, Hkv, S, D)

    def reset(self) -> None:
        self.pos = 0


class CausalSelfAttention(nn.Module):
    """Multi-head attention with grouped-query key/value heads (GQA: Ainslie et al. 2023)."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head or config.n_head
        self.head_dim = config.n_embd // config.n_head
        kv_dim = self.n_kv_head * self.head_dim
        self.qkv = nn.Linear(config.n_embd, config.n_embd + 2 * kv_dim, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x, rope=None, cache=None, return_attention=False, mask=None, block_mask=None):
        # mask: (B, 1, T, S) bool from padding_mask, or None for unpadded rows;
        # block_mask: FlexAttention's, from document_mask (model.attention=document)
        B, T, C = x.shape
        kv_dim = self.n_kv_head * self.head_dim
        q, k, v = self.qkv(x).split([C, kv_dim, kv_dim], dim=-1)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, Hkv, S, D)
        S = k.size(2)
        if self.n_kv_head != self.n_head:  # each key/value head serves n_head / n_kv_head query heads
            repeat = self.n_head // self.n_kv_head
            k = k.repeat_interleave(repeat, dim=1)  # (B, H, S, D)
            v = v.repeat_interleave(repeat, dim=1)
        dropout = self.dropout if self.training else 0.0

        att = None
        if return_attention:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, H, T, S)
            scores = scores.masked_fill(~(causal_mask(T, S, x.device) if mask is None else mask), float("-inf"))
            att = F.softmax(scores.float(), dim=-1).type_as(q)
            y = F.dropout(att, dropout, self.training) @ v  # (B, H, T, D)
        elif mask is not None:  # left-padded rows, or documents with return_attention
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        elif block_mask is not None:  # several documents in a window: none attends across a boundary
            y = flex(q, k, v, block_mask)
        elif S == T:  # no cache, or its prefill: the flash kernel's causal path
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        elif T == 1:  # one new token sees every cached position
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        else:  # a chunk after a cached prefix: is_causal would align the mask top-left
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T, S, x.device), dropout_p=dropout)

        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_drop(self.proj(y)), att


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.swiglu = config.mlp == "swiglu"
        if self.swiglu:
            # SwiGLU (Shazeer 2020): 2/3 of the width keeps the parameter count of a GELU MLP
            hidden = round(2 * config.mlp_ratio * config.n_embd / 3)
            hidden = -(-hidden // 64) * 64
            self.fc = nn.Linear(config.n_embd, 2 * hidden, bias=config.bias)  # gate and up, fused
        else:
            hidden = round(config.mlp_ratio * config.n_embd)
            self.fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x):  # (B, T, C)
        h = self.fc(x)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up  # (B, T, hidden)
        else:
            h = F.gelu(h)
        return self.drop(self.proj(h))


class Block(nn.Module):
    """Pre-norm residual block (Xiong et al. 2020): the residual stream is never normalised."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.norm1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.norm2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x, rope=None, cache=None, return_attention=False, mask=None, block_mask=None):
        y, att = self.attn(self.norm1(x), rope, cache, return_attention, mask, block_mask)
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return x, att


class GPT(nn.Module):
    supports_cache = True
    supports_padding = True  # forward takes key_mask and positions: left-padded rows decode as one batch
    supports_features = True  # forward(return_logits=False) gives lm_head's input, for the fused losses

    def __init__(self, config, vocab_size: int, max_seq_len: int):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.max_seq_len = max_seq_len
        self.n_kv_head = config.n_kv_head or config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.supports_documents = config.attention == "document"  # forward takes documents=

        self.wte = nn.Embedding(vocab_size, config.n_embd)
        self.wpe = nn.Embedding(max_seq_len, config.n_embd) if config.pos == "learned" else None
        if config.pos == "rope":
            if self.head_dim % 2:
                raise ValueError(
                    f"RoPE needs an even head size, but model.n_embd={config.n_embd} / "
                    f"model.n_head={config.n_head} = {self.head_dim}: change either, or set model.pos=learned"
                )
            cos, sin = rope_tables(self.head_dim, max_seq_len, config.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)  # (max_seq_len, D)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.norm_f = make_norm(config)
        self.lm_head = nn.Linear(config.n_embd, vocab_size, bias=False)
        if config.tie_embeddings:  # Press & Wolf 2017
            self.lm_head.weight = self.wte.weight

        # GPT-2 init (Radford et al. 2019): residual outputs scaled so the stream's variance
        # does not grow with depth
        self.apply(self._init_weights)
        for block in self.blocks:
            for linear in (block.attn.proj, block.mlp.proj):
                nn.init.normal_(linear.weight, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def init_cache(self, batch_size: int, max_len: int, device=None, dtype=None) -> KVCache:
        if max_len > self.max_seq_len:
            raise ValueError(
                f"a KV cache of {max_len} positions exceeds the model's max_seq_len={self.max_seq_len}: "
                f"pass max_len <= {self.max_seq_len}"
            )
        weight = self.wte.weight
        return KVCache(
            len(self.blocks), batch_size, self.n_kv_head, max_len, self.head_dim,
            device=device or weight.device, dtype=dtype or weight.dtype,
        )

    def forward(
        self, idx: torch.Tensor, *, cache: KVCache | None = None, return_attention: bool = False,
        key_mask: torch.Tensor | None = None, positions: torch.Tensor | None = None, return_hidden: bool = False,
        documents: torch.Tensor | None = None, return_logits: bool = True,
    ):
        """``key_mask`` (B, S), S = cached + new positions, is False at left padding;
        ``positions`` (B, T) are each new token's position in its own row (default: the
        cache position). Both are for batches of prompts of different lengths.
        ``return_hidden`` fills ``LMOutput.hidden`` with the residual stream (the logit lens)."""
        B, T = idx.shape
        pos = 0
        if cache is not None:
            pos = cache.pos
            if pos + T > cache.max_len:
                raise ValueError(
                    f"the KV cache holds {pos} of {cache.max_len} positions and cannot take {T} more: "
                    f"create it with a larger max_len (init_cache) or start a new one"
                )
            if B != cache.batch_size:
                raise ValueError(f"idx has batch size {B} but the KV cache was created for {cache.batch_size}")
        elif T > self.max_seq_len:
            raise ValueError(
                f"the input has {T} positions but the model was built for max_seq_len={self.max_seq_len}: "
                f"crop the input to its last {self.max_seq_len} tokens"
            )

        mask = None
        if key_mask is not None:
            if key_mask.shape != (B, pos + T):
                raise ValueError(f"key_mask has shape {tuple(key_mask.shape)}; it needs (batch, cached + new) = {(B, pos + T)}")
            mask = padding_mask(key_mask.bool(), T)  # (B, 1, T, S)
        block_mask = None
        if documents is not None and self.supports_documents and cache is None:
            if documents.shape != (B, T):
                raise ValueError(f"documents has shape {tuple(documents.shape)}; it needs (batch, positions) = {(B, T)}")
            # the explicit paths take a dense mask, and so does a CPU: FlexAttention has no backward there (torch 2.13)
            if return_attention or key_mask is not None or not idx.is_cuda:
                same = documents[:, :, None] == documents[:, None, :]  # (B, T, T)
                mask = (same & causal_mask(T, T, idx.device))[:, None] & (mask if mask is not None else True)
            else:
                block_mask = document_mask(documents)

        x = self.wte(idx)  # (B, T, C)
        rope = None
        if positions is None:
            if self.wpe is not None:
                x = x + self.wpe(torch.arange(pos, pos + T, device=idx.device))  # (T, C) broadcast
            else:
                rope = (self.rope_cos[pos : pos + T], self.rope_sin[pos : pos + T])  # (T, D) each
        elif self.wpe is not None:  # per-row positions: a left-padded row counts from its first real token
            x = x + self.wpe(positions)  # (B, T, C)
        else:
            rope = (self.rope_cos[positions][:, None], self.rope_sin[positions][:, None])  # (B, 1, T, D) each
        x = self.drop(x)

        attention = [] if return_attention else None
        hidden = [x] if return_hidden else None  # the residual stream: after the embedding, then each block
        for block in self.blocks:
            x, att = block(x, rope, cache, return_attention, mask, block_mask)
            if return_attention:
                attention.append(att)  # (B, H, T, S)
            if return_hidden:
                hidden.append(x)  # (B, T, C)
        if cache is not None:
            cache.pos += T

        if not return_logits:  # the fused losses (trainer.kernels) take the head's input, never the logits
            return LMOutput(logits=None, attention=attention, cache=cache, hidden=hidden, features=self.norm_f(x))
        logits = self.unembed(x)  # (B, T, V)
        return LMOutput(logits=logits, attention=attention, cache=cache, hidden=hidden)

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding table, whose output attribution methods perturb (lmforge explain)."""
        return self.wte

    def unembed(self, h: torch.Tensor) -> torch.Tensor:
        """A residual stream (B, T, C) to logits (B, T, V): the final norm, then the head."""
        return self.lm_head(self.norm_f(h))

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters, a tied matrix once; ``non_embedding`` drops the position table (nanoGPT)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.wpe is not None:
            n -= self.wpe.weight.numel()
        return n

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token, forward and backward (PaLM appendix B, Chowdhery et al. 2022)."""
        c = self.config
        return 6 * self.num_params(non_embedding=True) + 12 * c.n_layer * c.n_embd * seq_len
