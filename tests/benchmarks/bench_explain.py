"""What each ``lmforge explain`` method costs, against one forward + backward of the same model.

The ``small`` transformer (6 layers, 6 heads, width 384, vocab 4096, random weights) on
the same 128 tokens, CPU by default. The baseline is one training step's work: a forward
pass, the cross-entropy over every position and a backward pass into every weight. Each
method is timed as ``explain_ids`` runs it, in rounds that alternate with the baseline so
that a change in the machine's load moves both (best of ``--repeats``), and its ratio to
the baseline is printed, with the load average. Integrated gradients at 50 steps also
prints its forward+backward passes (the issue's target: at most 15). Its time is the
compute of 50 points, each a forward pass and a backward pass into the input; the line
after it, the 50 points' forward passes alone without a gradient, is the floor that no
batching goes under on a compute-bound CPU. A GPU runs a batched pass in about the time
of one.

    python tests/benchmarks/bench_explain.py [--threads N] [--device cuda] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from lmforge.plugins.explain._command import explain_ids
from lmforge.plugins.models.transformer import Transformer, TransformerConfig

VOCAB, TOKENS = 4096, 128


class Ids:
    """A tokenizer stand-in: the methods only label tokens with it."""

    special_ids = {"pad": 0}

    def decode(self, ids):
        return " ".join(map(str, ids))


def timed(candidates: dict, repeats: int, sync) -> dict[str, float]:
    """The best time of each candidate, in rounds that run every candidate once."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for fn in candidates.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in candidates.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(size="small")).build(vocab_size=VOCAB, max_seq_len=TOKENS).to(device).eval()
    ids = torch.randint(1, VOCAB, (TOKENS,), generator=torch.Generator().manual_seed(1)).tolist()
    x = torch.tensor([ids], device=device)

    def step() -> None:
        logits = model(x[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), x[:, 1:].reshape(-1))
        loss.backward()
        model.zero_grad(set_to_none=True)

    results = {}

    def method(name: str, **kwargs):
        def run() -> None:
            results.update(explain_ids(model, ids, tokenizer=Ids(), masked=False, methods=(name,), **kwargs))

        return run

    def forwards() -> None:  # IG's 50 points through the model, without a gradient
        with torch.no_grad():
            model(x.expand(50, -1), return_logits=False)

    candidates = {"baseline": step} | {m: method(m) for m in ("attention", "saliency")}
    candidates |= {"ig": method("ig", n_steps=50), "forwards": forwards, "logit-lens": method("logit-lens")}
    took = timed(candidates, args.repeats, sync)
    passes = results["ig"]["passes"]
    base = took.pop("baseline")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(f"device {device} ({name}), {torch.get_num_threads()} threads, {os.cpu_count()} cores{load}; small transformer, {TOKENS} tokens")
    print(f"baseline: one forward + backward {base * 1000:.1f} ms")
    print(f"{'method':<30}{'ms':>9}{'x baseline':>12}")
    labels = {"ig": f"ig, 50 steps in {passes} passes", "forwards": "  its 50 forwards, no grad"}
    for key, seconds in took.items():
        print(f"{labels.get(key, key):<30}{seconds * 1000:>9.1f}{seconds / base:>12.2f}")

if __name__ == "__main__":
    main()
