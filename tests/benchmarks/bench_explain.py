"""What each ``lmforge explain`` method costs, against one forward + backward of the same model.

The ``small`` transformer (6 layers, 6 heads, width 384, vocab 4096, random weights) on
the same 128 tokens, CPU by default. The baseline is one training step's work: a forward
pass, the cross-entropy over every position and a backward pass into every weight. Each
method is timed as ``explain_ids`` runs it (best of ``--repeats``), and its ratio to the
baseline is printed. Integrated gradients at 50 steps also prints its forward+backward
passes (the issue's target: at most 15); its time ratio is the compute of 50 batched
points, which a GPU runs in about the time of a few passes and a CPU in about 50
backward-into-the-input passes.

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


def best(fn, repeats: int, sync) -> float:
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


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

    step()  # warm-up
    base = best(step, args.repeats, sync)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device {device} ({name}), {torch.get_num_threads()} threads, {os.cpu_count()} cores; small transformer, {TOKENS} tokens")
    print(f"baseline: one forward + backward {base * 1000:.1f} ms")
    print(f"{'method':<28}{'ms':>9}{'x baseline':>12}")
    for method, kwargs in (("attention", {}), ("saliency", {}), ("ig", {"n_steps": 50}), ("logit-lens", {})):
        result = {}

        def run() -> None:
            result.update(explain_ids(model, ids, tokenizer=Ids(), masked=False, methods=(method,), **kwargs))

        run()  # warm-up
        took = best(run, args.repeats, sync)
        label = method if method != "ig" else f"ig, 50 steps in {result['ig']['passes']} passes"
        print(f"{label:<28}{took * 1000:>9.1f}{took / base:>12.2f}")


if __name__ == "__main__":
    main()
