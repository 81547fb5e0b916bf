"""The network behind ``model=rnn``: an LSTM or GRU language model.

Reads top to bottom: the state cache, then the model. The config schema lives in
``rnn.py``. Shapes: B batch, T new positions, E = n_embd, H = hidden, L layers, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from lmforge.contracts import LMOutput

GATES = {"lstm": 4, "gru": 3}  # weight blocks per layer: LSTM i, f, g, o; GRU r, z, n


class RecurrentState:
    """The cache of a recurrent model: its state after the positions seen so far.

    ``h`` (and ``c`` for an LSTM) are (L, B, H). Unlike a KV cache it does not grow with
    the positions; ``max_len`` only bounds ``pos`` so that generation treats every cache
    alike. ``RecurrentLM.forward`` replaces the state and advances ``pos``.
    """

    def __init__(self, batch_size: int, max_len: int):
        self.batch_size = batch_size
        self.max_len = max_len
        self.pos = 0
        self.state = None  # None before the first chunk: the RNN starts from zeros

    def reset(self) -> None:
        self.pos = 0
        self.state = None


class RecurrentLM(nn.Module):
    # Decoding carries the state forward: one step per new token, whatever the context length.
    supports_cache = True

    def __init__(self, config, vocab_size: int, max_seq_len: int):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        # A recurrence has no length limit; this is the training window, which generation
        # without a cache crops the context to.
        self.max_seq_len = max_seq_len
        E, H = config.n_embd, config.hidden

        self.wte = nn.Embedding(vocab_size, E)
        self.drop = nn.Dropout(config.dropout)
        rnn = nn.LSTM if config.cell == "lstm" else nn.GRU
        between = config.dropout if config.n_layer > 1 else 0.0  # torch warns about dropout on one layer
        self.rnn = rnn(E, H, num_layers=config.n_layer, dropout=between, batch_first=True)
        # tying needs the head's input to be E wide: project the state down when H != E
        head_in = E if config.tie_embeddings else H
        self.proj = nn.Linear(H, E, bias=False) if head_in != H else None
        self.lm_head = nn.Linear(head_in, vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight

        # embedding rows of about unit norm: at 400 wide that is AWD-LSTM's U(-0.1, 0.1)
        # (Merity et al. 2017); GPT's fixed std of 0.02 leaves a narrow model's gate inputs
        # near zero, and the recurrence then barely learns
        nn.init.normal_(self.wte.weight, mean=0.0, std=E**-0.5)
        if not config.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, mean=0.0, std=head_in**-0.5)
        if config.cell == "lstm":
            # forget-gate bias of 1 keeps early gradients flowing (Jozefowicz et al. 2015);
            # torch adds b_ih and b_hh, so set it on one of them
            for name, bias in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    nn.init.constant_(bias[H : 2 * H], 1.0)

    def init_cache(self, batch_size: int, max_len: int, device=None, dtype=None) -> RecurrentState:
        """A fresh state for ``batch_size`` rows; ``device`` and ``dtype`` follow the weights."""
        return RecurrentState(batch_size, max_len)

    def forward(self, idx: torch.Tensor, *, cache: RecurrentState | None = None, return_attention: bool = False):
        B, T = idx.shape
        state = None
        if cache is not None:
            if cache.pos + T > cache.max_len:
                raise ValueError(
                    f"the recurrent cache holds {cache.pos} of {cache.max_len} positions and cannot take {T} more: "
                    f"create it with a larger max_len (init_cache) or start a new one"
                )
            if B != cache.batch_size:
                raise ValueError(f"idx has batch size {B} but the cache was created for {cache.batch_size}")
            state = cache.state

        x = self.drop(self.wte(idx))  # (B, T, E)
        h, state = self.rnn(x, state)  # (B, T, H); state (L, B, H), a pair for an LSTM
        if self.proj is not None:
            h = self.proj(h)  # (B, T, E)
        logits = self.lm_head(self.drop(h))  # (B, T, V)

        if cache is not None:
            cache.state = state
            cache.pos += T
        return LMOutput(logits=logits, attention=[] if return_attention else None, cache=cache)

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding table, whose output attribution methods perturb (lmforge explain)."""
        return self.wte

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters, a tied matrix once; ``non_embedding`` drops an untied input table (a lookup, no FLOPs)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and not self.config.tie_embeddings:
            n -= self.wte.weight.numel()
        return n

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token, forward and backward.

        Every weight counted by ``num_params`` is used once per token: the recurrent
        matmuls ``W_ih x`` and ``W_hh h`` of each layer (GATES blocks of H rows), the
        projection and the head, 2 FLOPs each forward and 4 backward, as the 6N of a
        Transformer. The gate nonlinearities and the state update add about 3 FLOPs per
        gate unit and layer, forward (so 9 with backward). Nothing grows with ``seq_len``:
        the state has a fixed size, unlike attention over the context.
        """
        c = self.config
        elementwise = 9 * c.n_layer * GATES[c.cell] * c.hidden
        return 6 * self.num_params(non_embedding=True) + elementwise
