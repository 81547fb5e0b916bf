"""Text generation for any model that meets the architecture contract, and a run's samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def generate(model, idx, max_new_tokens, *, temperature=1.0, top_k=None, eos_id=None, generator=None):
    """Extend ``idx`` (B, T) by up to ``max_new_tokens`` sampled tokens; returns (B, T + new).

    Uses the model's KV cache when it has one, else recomputes on the context cropped to
    ``model.max_seq_len``; once the cache is full it falls back to the same cropping.
    ``temperature=0`` is greedy. A row that produced ``eos_id`` is padded with it, and
    generation stops once every row has.
    """
    idx = idx.long()
    was_training = model.training
    model.eval()
    try:
        max_len = getattr(model, "max_seq_len", None)
        cache = None
        if getattr(model, "supports_cache", False) and max_new_tokens > 0:
            total = idx.size(1) + max_new_tokens
            cache = model.init_cache(idx.size(0), total if max_len is None else min(total, max_len))
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            if cache is not None and idx.size(1) <= cache.max_len:
                # first step prefills the prompt, later steps feed the one token not yet cached
                logits = model(idx[:, cache.pos :], cache=cache).logits
            else:
                cache = None
                context = idx if max_len is None else idx[:, -max_len:]
                logits = model(context).logits
            logits = logits[:, -1, :].float()  # (B, V)

            if temperature == 0:
                next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                next_id = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
            if eos_id is not None:
                next_id = next_id.masked_fill(done[:, None], eos_id)
                done |= next_id[:, 0] == eos_id
            idx = torch.cat([idx, next_id.to(idx.dtype)], dim=1)
            if eos_id is not None and bool(done.all()):
                break
        return idx
    finally:
        model.train(was_training)


def samples(model, tokenizer, prompts: list[str], cfg, device) -> str:
    """Continue each prompt with the trained model; returns the texts, one block each."""
    eos = tokenizer.special_ids.get("eos")
    generator = torch.Generator(device=device).manual_seed(0)
    blocks = []
    for prompt in prompts:
        ids = tokenizer.encode_batch([prompt])[0] or ([eos] if eos is not None else [0])
        idx = torch.tensor([ids], dtype=torch.long, device=device)
        out = generate(model, idx, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k, eos_id=eos, generator=generator)
        blocks.append(f"=== prompt: {prompt!r}\n{tokenizer.decode(out[0].tolist())}\n")
    return "\n".join(blocks)
