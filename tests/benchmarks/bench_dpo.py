"""A DPO step against an SFT step on the same batch, with the reference cached and live.

The ``small`` transformer (6 layers, width 384, vocab 8192) on batches of ``--pairs``
preference pairs, each a prompt of 96 tokens and two replies of 32 (windows of 128):

- ``sft``: the baseline, a plain PyTorch step: the 2 x pairs sequences (chosen and
  rejected) forward, the cross-entropy on the reply tokens, backward, AdamW;
- ``dpo (cached)``: ``PreferenceModel.training_loss`` on the same batch, the reference's
  log-probabilities read from the table ``lmforge finetune`` computes once before training;
- ``dpo (live)``: the same with ``finetune.reference=live``: a frozen copy of the base
  runs a forward pass on every batch, the cost the cache removes.

The three run in turn, step after step, for ``--steps`` rounds after ``--warmup``, so a
change in the machine's load falls on all three; each one's median and its ratio to
``sft`` are printed. The issue's expectation: cached ≈ 1.0x, live above it by about one forward.

    python tests/benchmarks/bench_dpo.py [--pairs 8] [--steps 10] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.plugins.finetune._preference import IGNORE, Objective, PreferenceModel, reference_logps, split_batch
from lmforge.plugins.models.transformer import Transformer, TransformerConfig

VOCAB, PROMPT, REPLY = 8192, 96, 32


def batch(pairs: int, seed: int = 0) -> np.ndarray:
    """(pairs, 5, T) rows as ``lmforge finetune`` lays them out: a shared prompt, two replies."""
    rng = np.random.default_rng(seed)
    width = PROMPT + REPLY
    rows = np.zeros((pairs, 5, width), dtype=np.int32)
    for i in range(pairs):
        prompt = rng.integers(0, VOCAB, PROMPT)
        for r in (0, 2):
            ids = np.concatenate([prompt, rng.integers(0, VOCAB, REPLY + 1)])
            rows[i, r] = ids[:-1][:width]
            rows[i, r + 1] = np.where(np.arange(width) >= PROMPT - 1, ids[1:][:width], IGNORE)
        rows[i, 4, 0] = i
    return rows


def interleaved(steps: dict, rounds: int, warmup: int, sync) -> dict[str, float]:
    """The median seconds of each step function, run in turn round after round, so that a
    change in the machine's load falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(warmup + rounds):
        for name, step in steps.items():
            sync()
            start = time.perf_counter()
            step()
            sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(found) for name, found in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    base = Transformer(TransformerConfig(size="small", dropout=0.0)).build(vocab_size=VOCAB, max_seq_len=PROMPT + REPLY).to(device)
    rows = batch(args.pairs)
    inputs = torch.from_numpy(rows.astype(np.int64)).to(device)
    ids, targets, _ = split_batch(inputs)
    table = torch.from_numpy(reference_logps(base, rows, batch_size=args.pairs, device=device)).to(device)
    objective = Objective("dpo", 0.1, 0.0, 0.0)

    def step_of(model: torch.nn.Module, loss):
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss(model).backward()
            optimizer.step()

        return step

    pair_loss = lambda m: m.training_loss(inputs, None).loss  # noqa: E731
    found = interleaved({
        "sft": step_of(copy.deepcopy(base).train(), lambda m: F.cross_entropy(m(ids).logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)),
        "dpo (cached)": step_of(PreferenceModel(copy.deepcopy(base), objective, table, copy.deepcopy(base)).train(), pair_loss),
        "dpo (live)": step_of(PreferenceModel(copy.deepcopy(base), objective, table, copy.deepcopy(base), live=True).train(), pair_loss),
    }, args.steps, args.warmup, sync)
    sft = found["sft"]

    params = sum(p.numel() for p in base.parameters())
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    print(f"model: transformer small, {params / 1e6:.1f}M parameters; batch: {args.pairs} pairs = {2 * args.pairs} sequences of {PROMPT + REPLY} tokens")
    if platform.system() == "Linux":
        print(f"load average (1 min): {open('/proc/loadavg').read().split()[0]}")
    print(f"{'step':<16}{'ms':>10}{'vs sft':>10}")
    for name, seconds in found.items():
        print(f"{name:<16}{seconds * 1e3:>10.1f}{seconds / sft:>9.2f}x")


if __name__ == "__main__":
    main()
