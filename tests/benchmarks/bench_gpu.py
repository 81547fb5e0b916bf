"""GPU throughput of lmforge's training engine against a plain PyTorch loop: tokens/s, MFU, memory.

Every variant trains the same model (lmforge's transformer in the GPT-2-small shape: 12
layers, 12 heads, width 768, vocab 50304, GELU, LayerNorm, learned positions, no bias) on
the same random tokens from a 2-worker pinned DataLoader, global batch 16 x 1024, bf16
autocast, ``torch.compile``, fused AdamW with the same parameter groups, gradient clipping
at 1.0. Variants, in this order:

- ``baseline``: the hand-written loop with the loss compiled into the model's graph, as
  nanoGPT's ``forward(idx, targets)`` does;
- ``lmforge/<path>``: ``LMModule`` in a ``lightning.Trainer`` built from lmforge's trainer
  config and callbacks, as ``lmforge train`` builds them: first the path ``auto`` picks
  (lmforge's default), then the other ``trainer.kernels`` paths (``torch``, ``cce``,
  ``liger``, ``chunked``); a path that cannot run is reported with why;
- ``lmforge/<auto's path>+cudnn`` (``trainer.sdpa_backend=cudnn``), ``baseline+cudnn``:
  the same with PyTorch's attention on cuDNN's kernel instead of its default (flash);
- ``lmforge/<auto's path>+document``: ``model.attention=document`` on windows of random
  documents (mean 512 tokens). Its MFU counts causal attention's FLOPs, so it is an
  effective figure.

Each variant warms up (compilation included) before its timed steps; ``torch._dynamo`` is
reset between variants. MFU is FLOPs/token x tokens/s against the bf16 matmul peak
measured in this run; peak memory is ``torch.cuda.max_memory_allocated`` over the variant.
Variants that would start after ``--budget`` seconds are skipped and listed, so the whole
run fits one device call.

    python tests/benchmarks/bench_gpu.py --json out.json     # on a CUDA device, about 5 minutes
    python tests/benchmarks/bench_gpu.py --only baseline,lmforge/cce --micro 8
    python tests/benchmarks/bench_gpu.py --tiny              # a CPU smoke run of the script itself

Targets: lmforge's best path >= 1.10x the baseline's tokens/s, and >= 58% MFU.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
import traceback
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

PATHS = ("torch", "cce", "liger", "chunked")


class RandomTokens(Dataset):
    """``(inputs, targets)`` pairs of random tokens, the batch format of lmforge's data module;
    with ``documents``, also each position's document id, documents of random lengths."""

    def __init__(self, vocab: int, seq_len: int, n: int, documents: bool = False) -> None:
        self.vocab, self.seq_len, self.n, self.documents = vocab, seq_len, n, documents

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        window = torch.randint(0, self.vocab, (self.seq_len + 1,), generator=g)
        if not self.documents:
            return window[:-1], window[1:]
        starts = torch.rand(self.seq_len, generator=g) < 1 / 512  # a new document at ~1 in 512 positions
        return window[:-1], window[1:], torch.cumsum(starts.int(), 0).int()


def loader(args, steps: int, documents: bool = False) -> DataLoader:
    data = RandomTokens(args.vocab, args.seq, steps * args.batch, documents)
    return DataLoader(data, batch_size=args.micro, num_workers=2, pin_memory=args.cuda, drop_last=True, persistent_workers=True)


def build_model(args, attention: str = "causal"):
    from lmforge.plugins.models.transformer import Transformer, TransformerConfig

    torch.manual_seed(0)
    size = "tiny" if args.tiny else "base"
    cfg = TransformerConfig(size=size, mlp="gelu", norm="layernorm", pos="learned", bias=False, attention=attention)
    return Transformer(cfg).build(vocab_size=args.vocab, max_seq_len=args.seq)


def sync(args) -> None:
    if args.cuda:
        torch.cuda.synchronize()


def matmul_peak(args) -> float | None:
    """Practical bf16 peak: FLOP/s of a large square matmul on random data, best of a few loops."""
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


def baseline(args) -> float:
    """nanoGPT's loop: the cross-entropy compiled together with the model."""
    import torch.nn.functional as F

    from lmforge.engine.optim import param_groups

    device = "cuda" if args.cuda else "cpu"
    model = build_model(args).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=6e-4, betas=(0.9, 0.95), fused=args.cuda)

    def forward_loss(inputs, targets):
        logits = model(inputs).logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))

    loss_fn = torch.compile(forward_loss) if args.compile else forward_loss
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=args.cuda)
    accumulate = args.batch // args.micro
    start = None
    batches = iter(loader(args, args.warmup + args.steps))
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync(args)
            start = time.perf_counter()
        for _ in range(accumulate):
            inputs, targets = (t.to(device, non_blocking=True) for t in next(batches))
            with autocast:
                loss = loss_fn(inputs, targets) / accumulate
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(args)
    return args.steps * args.batch * args.seq / (time.perf_counter() - start)


def lmforge_loop(args, kernels: str, attention: str = "causal", sdpa: str = "auto") -> float:
    """``LMModule`` in a ``lightning.Trainer`` from lmforge's own trainer config and callbacks."""
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from lmforge.engine import console
    from lmforge.engine import trainer as runtime
    from lmforge.engine.config import LossConfig, TrainerConfig
    from lmforge.engine.module import LMModule
    from lmforge.plugins.training.loggers import CSV
    from lmforge.plugins.training.optimizers import AdamWConfig
    from lmforge.plugins.training.schedulers import CosineConfig

    accumulate = args.batch // args.micro

    class Clock(Callback):
        start = end = 0.0

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            if batch_idx == args.warmup * accumulate:
                sync(args)
                self.start = time.perf_counter()

        def on_train_end(self, trainer, module) -> None:
            sync(args)
            self.end = time.perf_counter()

    steps = args.warmup + args.steps
    trainer_cfg = TrainerConfig(
        max_steps=steps, val_check_interval=None, limit_val_batches=0, log_every_n_steps=10, accumulate_grad_batches=accumulate,
        enable_progress_bar=False, precision="bf16-mixed" if args.cuda else "32-true", compile=args.compile, kernels=kernels,
        sdpa_backend=sdpa,
    )
    model = build_model(args, attention)
    module = LMModule(
        model, vocab_size=args.vocab, optimizer=AdamWConfig(lr=6e-4), scheduler=CosineConfig(warmup_steps=10), loss=LossConfig(),
        max_steps=trainer_cfg.max_steps, grad_clip=trainer_cfg.gradient_clip_val, nonfinite=trainer_cfg.nonfinite,
        compile=trainer_cfg.compile, kernels=trainer_cfg.kernels, sdpa_backend=trainer_cfg.sdpa_backend,
    )
    clock = Clock()
    console.quiet()  # as lmforge.engine.fit: no tips or model table
    with tempfile.TemporaryDirectory() as tmp:
        callbacks = runtime.callbacks(Path(tmp), trainer_cfg, logging=True) + [clock]
        trainer = L.Trainer(
            **runtime.trainer_kwargs(trainer_cfg, model), callbacks=callbacks, logger=runtime.loggers(CSV(), Path(tmp)),
            enable_model_summary=False,
        )
        trainer.fit(module, train_dataloaders=loader(args, steps, documents=attention == "document"))
    return args.steps * args.batch * args.seq / (clock.end - clock.start)


def cudnn(run):
    """``run`` with scaled_dot_product_attention on cuDNN's kernel (traced so by torch.compile)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        return run()


def variants(args) -> list[tuple[str, object]]:
    from lmforge.engine import kernels
    from lmforge.engine.config import LossConfig

    device = torch.device("cuda" if args.cuda else "cpu")
    auto = kernels.choose("auto", LossConfig(), device, build_model(args))
    # most telling first: a variant that would start after --budget is skipped
    found = [("baseline", lambda: baseline(args)), (f"lmforge/{auto}", lambda: lmforge_loop(args, auto))]
    found.append((f"lmforge/{auto}+cudnn", lambda: lmforge_loop(args, auto, sdpa="cudnn")))
    for path in sorted(set(PATHS) - {auto}, key=PATHS.index):
        found.append((f"lmforge/{path}", lambda path=path: lmforge_loop(args, path)))
    found.append(("baseline+cudnn", lambda: cudnn(lambda: baseline(args))))
    found.append((f"lmforge/{auto}+document", lambda: lmforge_loop(args, auto, "document")))
    if args.only:
        wanted = args.only.split(",")
        found = [v for v in found if v[0] in wanted or v[0].split("+")[0] in wanted]
    return found


def unavailable(args, name: str) -> str | None:
    """Why a variant cannot run here, before spending a compile on it."""
    from lmforge.engine import kernels
    from lmforge.engine.config import LossConfig

    if "+cudnn" in name and not args.cuda:
        return "cuDNN attention needs a CUDA device"
    if not name.startswith("lmforge/"):
        return None
    path = name.split("/")[1].split("+")[0]
    try:
        kernels.choose(path, LossConfig(), torch.device("cuda" if args.cuda else "cpu"), build_model(args))
    except Exception as e:  # noqa: BLE001 - the reason is the report
        return str(e)
    return None


def measure(args) -> dict:
    began = time.perf_counter()
    peak = matmul_peak(args)
    flops = build_model(args).flops_per_token(args.seq)
    rows, longest = [], 0.0
    for name, run in variants(args):
        row = {"name": name}
        rows.append(row)
        elapsed = time.perf_counter() - began
        why = unavailable(args, name)
        if why:
            row["skipped"] = why
        elif rows[1:] and elapsed + longest > args.budget:
            row["skipped"] = f"over the time budget ({elapsed:.0f} s spent, the longest variant took {longest:.0f} s, --budget {args.budget:.0f})"
        else:
            torch._dynamo.reset()  # a fresh compile cache: new modules would otherwise hit the recompile limit
            if args.cuda:
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            try:
                tps = run()
            except Exception as e:  # noqa: BLE001 - one broken path must not hide the others' figures
                row["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
                traceback.print_exc()
            else:
                row["tokens_per_s"] = tps
                row["mfu"] = tps * flops / peak if peak else None
                row["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30 if args.cuda else None
            row["seconds"] = time.perf_counter() - start
            longest = max(longest, row["seconds"])
            gc.collect()
            if args.cuda:
                torch.cuda.empty_cache()
        print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in row.items() if k != "name"), flush=True)
    base = next((r.get("tokens_per_s") for r in rows if r["name"] == "baseline"), None)
    for row in rows:
        if base and row.get("tokens_per_s"):
            row["ratio"] = row["tokens_per_s"] / base
    return {
        "device": torch.cuda.get_device_name() if args.cuda else "cpu",
        "torch": torch.__version__,
        "batch": f"{args.batch}x{args.seq}, micro-batch {args.micro}",
        "timed_steps": args.steps,
        "warmup_steps": args.warmup,
        "peak_flops": peak,
        "flops_per_token": flops,
        "seconds": time.perf_counter() - began,
        "variants": rows,
    }


def show(figures: dict) -> None:
    print(f"\ndevice  {figures['device']}, torch {figures['torch']}, batch {figures['batch']}, {figures['timed_steps']} timed steps")
    if figures["peak_flops"]:
        print(f"bf16 matmul peak {figures['peak_flops'] / 1e12:.1f} TFLOP/s (8192^3, random data, measured)")
    print(f"{'variant':<28} {'tokens/s':>10} {'ratio':>6} {'MFU':>6} {'GiB':>6} {'s':>5}")
    for row in figures["variants"]:
        if "tokens_per_s" in row:
            mfu = f"{row['mfu']:.1%}" if row.get("mfu") else "-"
            mem = f"{row['peak_memory_gib']:.1f}" if row.get("peak_memory_gib") else "-"
            print(f"{row['name']:<28} {row['tokens_per_s']:>10,.0f} {row.get('ratio', 0):>6.3f} {mfu:>6} {mem:>6} {row['seconds']:>5.0f}")
        else:
            print(f"{row['name']:<28} {'skipped: ' + row['skipped'] if 'skipped' in row else 'failed: ' + row['error']}")
    print("targets: ratio >= 1.10 against the baseline, MFU >= 58%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per variant")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (compilation happens here)")
    parser.add_argument("--batch", type=int, default=16, help="global batch: sequences per optimizer step")
    parser.add_argument("--micro", type=int, default=None, help="micro-batch (gradient accumulation); default the global batch")
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--budget", type=float, default=170.0, help="seconds: no variant starts after this")
    parser.add_argument("--only", help="comma-separated variants, e.g. baseline,lmforge/cce")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--tiny", action="store_true", help="a tiny model on the CPU: checks the script, measures nothing")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.cuda = torch.cuda.is_available() and not args.tiny
    if args.tiny:
        args.steps, args.warmup, args.batch, args.micro, args.seq, args.vocab, args.compile = 2, 1, 2, 1, 32, 256, False
    elif not args.cuda:
        raise SystemExit("bench_gpu.py measures a CUDA device; pass --tiny to smoke-test it on a CPU")
    args.micro = args.micro or args.batch
    if args.batch % args.micro:
        raise SystemExit(f"--micro {args.micro} must divide --batch {args.batch}")
    if args.cuda:
        torch.set_float32_matmul_precision("high")
    figures = measure(args)
    show(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
