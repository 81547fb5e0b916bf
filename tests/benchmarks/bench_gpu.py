"""GPU throughput of lmforge's training engine against a plain PyTorch loop, and MFU.

Both sides train the same model (lmforge's transformer in the GPT-2-small shape: 12
layers, 12 heads, width 768, vocab 50304, GELU, LayerNorm, learned positions, no bias)
on the same random tokens from a 2-worker DataLoader, batch 16 x 1024, bf16 autocast,
``torch.compile``, fused AdamW with the same parameter groups and gradient clipping at
1.0. The plain loop is hand-written; the lmforge side is ``LMModule`` in a
``lightning.Trainer`` built from lmforge's trainer config and callbacks, as
``lmforge train`` builds them. Each side warms up (compilation included) before its timed
steps. MFU is FLOPs/token x tokens/s against the bf16 matmul peak measured in this run.

    python tests/benchmarks/bench_gpu.py                 # the whole measurement, a few minutes
    python tests/benchmarks/bench_gpu.py --tiny          # a CPU smoke run of the script itself

The baseline is the plain loop with the loss compiled into the model's graph, as nanoGPT
does; the plain loop with only the model compiled is printed beside it. Prints tokens/s of
each, the ratios (target >= 1.10) and MFU (target >= 58%).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset


class RandomTokens(Dataset):
    """``(inputs, targets)`` pairs of random tokens, the batch format of lmforge's data module."""

    def __init__(self, vocab: int, seq_len: int, n: int) -> None:
        self.vocab, self.seq_len, self.n = vocab, seq_len, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        window = torch.randint(0, self.vocab, (self.seq_len + 1,), generator=torch.Generator().manual_seed(i))
        return window[:-1], window[1:]


def loader(args, steps: int) -> DataLoader:
    data = RandomTokens(args.vocab, args.seq, steps * args.batch)
    return DataLoader(data, batch_size=args.batch, num_workers=2, pin_memory=args.cuda, drop_last=True, persistent_workers=True)


def build_model(args):
    from lmforge.plugins.models.transformer import Transformer, TransformerConfig

    torch.manual_seed(0)
    if args.tiny:
        cfg = TransformerConfig(size="tiny", mlp="gelu", norm="layernorm", pos="learned", bias=False)
    else:
        cfg = TransformerConfig(size="base", mlp="gelu", norm="layernorm", pos="learned", bias=False)
    return Transformer(cfg).build(vocab_size=args.vocab, max_seq_len=args.seq)


def sync(args) -> None:
    if args.cuda:
        torch.cuda.synchronize()


def matmul_peak(args) -> float | None:
    """Practical bf16 peak: FLOP/s of a large square matmul, best of a few timed loops."""
    if not args.cuda:
        return None
    n = 8192
    a, b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16), torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(5):
        sync(args)
        start = time.perf_counter()
        for _ in range(20):
            a @ b
        sync(args)
        best = max(best, 20 * 2 * n**3 / (time.perf_counter() - start))
    return best


def plain_loop(args, loss_in_graph: bool) -> float:
    """The hand-written loop. ``loss_in_graph`` compiles the cross-entropy with the model, as
    nanoGPT's ``forward(idx, targets)`` does; otherwise only the model is compiled."""
    import torch.nn.functional as F

    from lmforge.engine.optim import param_groups

    device = "cuda" if args.cuda else "cpu"
    model = build_model(args).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=6e-4, betas=(0.9, 0.95), fused=args.cuda)

    def forward_loss(inputs, targets):
        logits = model(inputs).logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))

    step_fn = model if not args.compile else torch.compile(model)
    loss_fn = torch.compile(forward_loss) if args.compile and loss_in_graph else None
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=args.cuda)
    start = None
    for step, (inputs, targets) in enumerate(loader(args, args.warmup + args.steps)):
        if step == args.warmup:
            sync(args)
            start = time.perf_counter()
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast:
            if loss_fn is not None:
                loss = loss_fn(inputs, targets)
            else:
                logits = step_fn(inputs).logits
                loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(args)
    return args.steps * args.batch * args.seq / (time.perf_counter() - start)


def lmforge_loop(args, log_every: int = 10) -> float:
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from lmforge.engine import trainer as runtime
    from lmforge.engine.module import LMModule
    from lmforge.engine.config import LossConfig, TrainerConfig
    from lmforge.plugins.training.loggers import CSV
    from lmforge.plugins.training.optimizers import AdamWConfig
    from lmforge.plugins.training.schedulers import CosineConfig

    class Clock(Callback):
        start = end = 0.0

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            if batch_idx == args.warmup:
                sync(args)
                self.start = time.perf_counter()

        def on_train_end(self, trainer, module) -> None:
            sync(args)
            self.end = time.perf_counter()

    steps = args.warmup + args.steps
    trainer_cfg = TrainerConfig(
        max_steps=steps, val_check_interval=None, limit_val_batches=0, log_every_n_steps=log_every,
        enable_progress_bar=False, precision="bf16-mixed" if args.cuda else "32-true", compile=args.compile,
    )
    model = build_model(args)
    module = LMModule(
        model, vocab_size=args.vocab, optimizer=AdamWConfig(lr=6e-4), scheduler=CosineConfig(warmup_steps=10), loss=LossConfig(),
        max_steps=trainer_cfg.max_steps, grad_clip=trainer_cfg.gradient_clip_val, nonfinite=trainer_cfg.nonfinite, compile=trainer_cfg.compile,
    )
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        callbacks = runtime.callbacks(Path(tmp), trainer_cfg, logging=True) + [clock]
        trainer = L.Trainer(**runtime.trainer_kwargs(trainer_cfg, model), callbacks=callbacks, logger=runtime.loggers(CSV(), Path(tmp)))
        trainer.fit(module, train_dataloaders=loader(args, steps))
    return args.steps * args.batch * args.seq / (clock.end - clock.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=15, help="untimed steps first (compilation happens here)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--tiny", action="store_true", help="a tiny model on the CPU: checks the script, measures nothing")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.cuda = torch.cuda.is_available() and not args.tiny
    if args.tiny:
        args.steps, args.warmup, args.batch, args.seq, args.vocab, args.compile = 4, 2, 2, 32, 256, False
    elif not args.cuda:
        raise SystemExit("bench_gpu.py measures a CUDA device; pass --tiny to smoke-test it on a CPU")
    if args.cuda:
        torch.set_float32_matmul_precision("high")

    peak = matmul_peak(args)
    flops = build_model(args).flops_per_token(args.seq)
    plain_model = plain_loop(args, loss_in_graph=False)
    plain = plain_loop(args, loss_in_graph=True)
    ours = lmforge_loop(args)
    quiet = lmforge_loop(args, log_every=100) if args.cuda else math.nan
    mfu = (lambda tps: tps * flops / peak) if peak else (lambda tps: None)
    figures = {
        "device": torch.cuda.get_device_name() if args.cuda else "cpu",
        "torch": torch.__version__,
        "peak_flops": peak,
        "plain_model_compiled_tokens_per_s": plain_model,
        "plain_tokens_per_s": plain,
        "lmforge_tokens_per_s": ours,
        "ratio": ours / plain,
        "ratio_vs_model_compiled": ours / plain_model,
        "lmforge_log_every_100_tokens_per_s": quiet,
        "plain_model_compiled_mfu": mfu(plain_model),
        "plain_mfu": mfu(plain),
        "lmforge_mfu": mfu(ours),
    }
    show = lambda tps: f"{tps:10,.0f} tokens/s" + (f"   MFU {mfu(tps):.1%}" if peak else "")  # noqa: E731
    print(f"device            {figures['device']}, torch {torch.__version__}, batch {args.batch}x{args.seq}, {args.steps} timed steps")
    if peak:
        print(f"bf16 matmul peak  {peak / 1e12:10.1f} TFLOP/s (8192^3, measured)")
    print(f"plain, model compiled          {show(plain_model)}")
    print(f"plain, model + loss compiled   {show(plain)}   (nanoGPT's way: the baseline)")
    print(f"lmforge                        {show(ours)}   (logging every 10 steps, the default)")
    if args.cuda:
        print(f"lmforge, logging every 100     {show(quiet)}")
    print(f"ratio lmforge / baseline       {ours / plain:10.3f}   (target >= 1.10; MFU target >= 58%)")
    print(f"ratio lmforge / model compiled {ours / plain_model:10.3f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
