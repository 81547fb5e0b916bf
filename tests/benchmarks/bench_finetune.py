"""Fine-tuning throughput against pretraining, and LoRA against full fine-tuning.

Three trainings of the same transformer through ``lmforge.engine.fit`` (the trainer
``lmforge train`` and ``lmforge finetune`` both run), each in a subprocess of its own so
that its peak memory is its own:

- ``pretrain``: random-token windows from ``engine.token_data``, every position a target;
- ``full``: target-masked, packed windows of synthetic examples (prompts of 16-160 tokens,
  replies of 8-64, packed by ``lmforge finetune``'s own ``pack``) through
  ``engine.window_data``, every weight trained;
- ``lora``: the same windows, LoRA adapters (rank 8) on every linear but the head, through
  ``lmforge finetune``'s own ``_lora.apply``.

Tokens/s counts the window positions processed after ``--warmup`` steps (the same
``batch x seq_len`` per step in all three). The issue's targets: fine-tuning (``full``)
at least 0.95x pretraining; LoRA against full is reported (peak memory: CUDA's
``max_memory_allocated`` on a GPU, the process's peak RSS on the CPU).

    python tests/benchmarks/bench_finetune.py [--size small] [--steps 12] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

VOCAB = 8192


def examples(n: int, seq_len: int, seed: int = 0):
    import numpy as np

    from lmforge.plugins.finetune._data import Encoded

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        prompt, reply = int(rng.integers(16, 161)), int(rng.integers(8, 65))
        ids = rng.integers(0, VOCAB, prompt + reply).tolist()
        out.append(Encoded(ids, [False] * prompt + [True] * reply))
    return out


def one(mode: str, size: str, steps: int, warmup: int, seq_len: int, batch: int, device: str) -> dict:
    """Train ``steps`` steps in ``mode`` in this process; returns tokens/s, peak memory and counts."""
    import resource
    import tempfile
    from pathlib import Path

    import numpy as np
    import torch
    from lightning.pytorch.callbacks import Callback

    from lmforge import engine
    from lmforge.engine.config import DataConfig, LossConfig, TrainerConfig
    from lmforge.hydra_bridge import Selected, component_config
    from lmforge.plugins.finetune import _data, _lora
    from lmforge.plugins.models.transformer import Transformer, TransformerConfig

    engine.seed(0)
    model = Transformer(TransformerConfig(size=size, dropout=0.0)).build(vocab_size=VOCAB, max_seq_len=seq_len)
    total = steps * batch
    targets_share = 1.0
    if mode == "pretrain":
        tokens = np.random.default_rng(0).integers(0, VOCAB, total * (seq_len + 1) + seq_len * 8).astype(np.uint16)
        data = engine.token_data(tokens, tokens[: seq_len * 8 + 1], DataConfig(seq_len=seq_len, batch_size=batch, val_batches=1),
                                 objective="causal", tokenizer=_Ids(), seed=0, max_steps=steps)
    else:
        packed = _data.pack(examples(total * 4, seq_len), seq_len, pad_id=0, packing=True, overlong="truncate", seed=0)
        targets_share = packed.counts["target_positions"] / packed.targets.size
        data = engine.window_data(packed.pairs, (packed.inputs[:batch], packed.targets[:batch]), batch_size=batch, seed=0, max_steps=steps)
        if mode == "lora":
            _lora.apply(model, r=8, alpha=16, dropout=0.0, targets=None, vocab_size=VOCAB)

    class Clock(Callback):
        """Wall time from the end of step ``warmup`` to the end of the last step (validation excluded)."""

        start, seconds = 0.0, 0.0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_step in (warmup, steps):
                _sync(device)
                now = time.perf_counter()
                self.start, self.seconds = (now, 0.0) if trainer.global_step == warmup else (self.start, now - self.start)

    def build(kind: str, name: str, **options):
        return Selected(*component_config(kind, {"name": name, **options}, kind)).build()

    clock = Clock()
    trainer = TrainerConfig(max_steps=steps, val_check_interval=steps, enable_progress_bar=False, log_every_n_steps=steps,
                            accelerator=device, devices=1, checkpoint_top_k=0)
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as run_dir:
        engine.fit(model, data, vocab_size=VOCAB, trainer=trainer, optimizer=build("optimizer", "adamw", lr=3e-4),
                   scheduler=build("scheduler", "constant"), loss=LossConfig(), logger=build("logger", "none"),
                   run_dir=Path(run_dir), callbacks=[clock])
    timed = (steps - warmup) * batch * seq_len
    peak = torch.cuda.max_memory_allocated() if device != "cpu" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"mode": mode, "tokens_per_s": timed / clock.seconds, "peak_bytes": peak, "target_share": targets_share,
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def _sync(device: str) -> None:
    if device != "cpu":
        import torch

        torch.cuda.synchronize()


class _Ids:
    """A tokenizer stand-in: ``token_data`` only reads its size and special ids."""

    vocab_size, special_ids, name = VOCAB, {}, "ids"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="small", help="transformer size: tiny, small, base")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on the CPU")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one mode here and print its JSON
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.one:
        result = one(args.one, args.size, args.steps, args.warmup, args.seq_len, args.batch, args.device)
        print("RESULT " + json.dumps(result))
        return
    results = {}
    for mode in ("pretrain", "full", "lora"):
        cmd = [sys.executable, __file__, "--one", mode, *sys.argv[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{mode} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        results[mode] = json.loads(line[len("RESULT "):])
    machine = f"{platform.machine()} {os.cpu_count()} CPUs" if args.device == "cpu" else args.device
    if args.device != "cpu":
        import torch

        machine = torch.cuda.get_device_name(0)
    print(f"machine: {machine}; transformer size={args.size}, batch {args.batch} x {args.seq_len}, {args.steps} steps ({args.warmup} warm-up)")
    for mode, r in results.items():
        print(f"  {mode:<9} {r['tokens_per_s']:>10,.0f} tokens/s   peak {r['peak_bytes'] / 2**20:>8,.0f} MiB   "
              f"trainable {r['trainable']:>11,}   target share {r['target_share']:.2f}")
    full, pre, lora = results["full"], results["pretrain"], results["lora"]
    print(f"fine-tuning / pretraining tokens/s: {full['tokens_per_s'] / pre['tokens_per_s']:.3f}  (target >= 0.95)")
    print(f"LoRA / full tokens/s: {lora['tokens_per_s'] / full['tokens_per_s']:.3f};  LoRA / full peak memory: "
          f"{lora['peak_bytes'] / full['peak_bytes']:.3f}")


if __name__ == "__main__":
    main()
