"""Decoding speed: the KV cache against recomputing, and a batch of prompts against one by one.

1. KV cache: 256 new tokens after a 256-token prompt, greedy, on the ``tiny`` and ``small``
   transformer sizes (random weights, ``max_seq_len`` 512), with the cache and with
   ``supports_cache`` switched off (every step recomputes the whole context). Both must
   give the same ids; the script prints tokens/s of each and the ratio. The issue's
   target is at least 5x at ``small`` on the CPU.
2. Batching: ``lmforge.engine.stream`` on 4 prompts of different lengths (left-padded, one
   batch) against the same 4 decoded one after the other, ``small``, 128 new tokens each.
3. Against ``transformers`` (``--hf``): the GPT-2-small shape (12 layers, 12 heads, width
   768, vocab 50304, learned positions, LayerNorm, GELU), exported to ``GPT2LMHeadModel``
   the way ``lmforge export`` does it. Batch-1 greedy decoding of 256 new tokens after a
   128-token prompt through ``lmforge.engine.complete`` (what ``lmforge generate``, chat
   and serve run) against ``model.generate`` of the exported model, on the same device
   and dtype. Both must give the same ids (fp32; in bf16 rounding may split them, so the
   script prints the common prefix). The issue's target on a GPU is at least 1.0x.

    python tests/benchmarks/bench_generate.py [--threads N]
    python tests/benchmarks/bench_generate.py --hf --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from lmforge.engine import Sampling, complete
from lmforge.engine.generate import generate
from lmforge.plugins.models.transformer import Transformer, TransformerConfig

VOCAB, MAX_LEN, PROMPT, NEW = 4096, 512, 256, 256


class Ids:
    """A tokenizer stand-in: ``stream`` decodes text, the benchmark only counts tokens."""

    special_ids: dict[str, int] = {}

    def decode(self, ids):
        return " ".join(map(str, ids))


def build(size: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(size=size)).build(vocab_size=VOCAB, max_seq_len=MAX_LEN).eval()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def kv_cache(size: str) -> float:
    model = build(size)
    prompt = torch.randint(0, VOCAB, (1, PROMPT), generator=torch.Generator().manual_seed(1))
    generate(model, prompt[:, :16], 4, temperature=0)  # warm-up
    cached, t_cached = timed(lambda: generate(model, prompt, NEW, temperature=0))
    model.supports_cache = False
    recomputed, t_recomputed = timed(lambda: generate(model, prompt, NEW, temperature=0))
    assert torch.equal(cached, recomputed), "the cache changed the greedy ids"
    ratio = t_recomputed / t_cached
    print(f"{size:>5}: cache {NEW / t_cached:8.1f} tok/s   recompute {NEW / t_recomputed:8.1f} tok/s   ratio {ratio:5.2f}x")
    return ratio


def batching(size: str = "small", new: int = 128) -> float:
    model = build(size)
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in (64, 100, 128, 180)]
    greedy = Sampling(max_tokens=new, temperature=0, top_k=0)
    complete(model, Ids(), [prompts[0][:8]], Sampling(max_tokens=4, temperature=0))  # warm-up
    together, t_batch = timed(lambda: complete(model, Ids(), prompts, greedy))
    alone, t_alone = timed(lambda: [complete(model, Ids(), [p], greedy)[0] for p in prompts])
    assert [c.token_ids for c in together] == [c.token_ids for c in alone], "batching changed the greedy ids"
    tokens = sum(len(c.token_ids) for c in together)
    ratio = t_alone / t_batch
    print(f"{size:>5}, 4 prompts x {new} tokens: batched {tokens / t_batch:8.1f} tok/s   one by one {tokens / t_alone:8.1f} tok/s   ratio {ratio:5.2f}x")
    return ratio


def against_transformers(device: str, dtype: torch.dtype, prompt_len: int = 128, new: int = 256, repeats: int = 3) -> float:
    import transformers

    from lmforge.plugins.deploy import _hf

    config = TransformerConfig(n_layer=12, n_head=12, n_embd=768, mlp="gelu", norm="layernorm", pos="learned")
    torch.manual_seed(0)
    ours = Transformer(config).build(vocab_size=50304, max_seq_len=1024).eval()
    hf_config, tensors = _hf.convert("transformer", config.resolved(), ours, {"bos": None, "eos": None, "pad": None})
    theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config(**hf_config))
    missing, unexpected = theirs.load_state_dict(tensors, strict=False)
    assert not unexpected and all(k.endswith("attn.bias") or k == "lm_head.weight" for k in missing), (missing, unexpected)
    theirs.tie_weights()
    ours, theirs = ours.to(device, dtype), theirs.to(device, dtype).eval()
    prompt = torch.randint(0, 50304, (1, prompt_len), generator=torch.Generator().manual_seed(3))
    greedy = Sampling(max_tokens=new, temperature=0, top_k=0)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def run_ours():
        out = complete(ours, Ids(), [prompt[0].tolist()], greedy, stop_at_eos=False)[0].token_ids
        sync()
        return out

    def run_theirs():
        with torch.no_grad():
            out = theirs.generate(
                prompt.to(device), attention_mask=torch.ones_like(prompt, device=device), max_new_tokens=new,
                min_new_tokens=new, do_sample=False, pad_token_id=0,
            )
        sync()
        return out[0, prompt_len:].tolist()

    run_ours(), run_theirs()  # warm-up: kernels, allocator, caches
    t_ours = min(timed(run_ours)[1] for _ in range(repeats))
    t_theirs = min(timed(run_theirs)[1] for _ in range(repeats))
    a, b = run_ours(), run_theirs()
    same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), len(a))
    ratio = t_theirs / t_ours
    print(
        f"gpt2_small shape, {device} {str(dtype).removeprefix('torch.')}, batch 1, {prompt_len}-token prompt, {new} new tokens: "
        f"lmforge {new / t_ours:7.1f} tok/s   transformers.generate {new / t_theirs:7.1f} tok/s   ratio {ratio:5.2f}x   "
        f"greedy ids agree for {same}/{len(a)} tokens"
    )
    if dtype == torch.float32:
        assert same == len(a), "lmforge and transformers disagree on the greedy ids in fp32"
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--hf", action="store_true", help="only the comparison with transformers.generate")
    parser.add_argument("--device", default="cpu", help="device for --hf (cuda on a GPU)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="dtype for --hf")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    gpu = f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""
    print(f"machine: {cpu}, {os.cpu_count()} CPUs{gpu}, torch {torch.__version__} with {torch.get_num_threads()} threads")
    if args.hf:
        for dtype in dict.fromkeys([torch.float32, getattr(torch, args.dtype)]):
            ratio = against_transformers(args.device, dtype)
        print(f"transformers.generate: {'meets' if ratio >= 1.0 else 'MISSES'} the 1.0x target")
        return
    print(f"KV cache: {NEW} new tokens after a {PROMPT}-token prompt, greedy, batch 1")
    for size in ("tiny", "small"):
        ratio = kv_cache(size)
    print(f"small: {'meets' if ratio >= 5 else 'MISSES'} the 5x target")
    print("batching:")
    batching()


if __name__ == "__main__":
    main()
