"""CPU overhead of ``lmforge train`` against a hand-written PyTorch loop, and CLI start-up.

Both sides train the same model (the default tiny transformer), on the same token
windows (read from lmforge's own tokenize stage), with the same batch, optimizer,
schedule and gradient clipping, for the same number of steps, in one invocation of this
script. Each side runs in a fresh process, and runs alternate (lmforge, raw, lmforge,
raw...) so that drift on a shared machine hits both; the median of each side is
compared. Validation is left out of both timings.

    python tests/benchmarks/bench_train.py --steps 100 --repeats 3

Prints tokens/s for both, the ratio (target >= 0.97), and the start-up time of
``lmforge plugins`` against a bare ``python -c pass``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def lmforge_run(steps: int, workdir: Path, cache: Path, index: int, extra: list[str]) -> float:
    run_dir = workdir / f"lmforge-{index}"
    subprocess.run(
        [sys.executable, "-m", "lmforge.cli", "train", f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}",
         "trainer.limit_val_batches=1", "sample.max_new_tokens=1", f"hydra.run.dir={run_dir}", *extra],
        check=True, capture_output=True, env={**os.environ, "LMFORGE_CACHE_DIR": str(cache)},
    )
    return json.loads((run_dir / "summary.json").read_text())["tokens_per_s"]


def raw_run(steps: int, tok_dir: Path) -> float:
    """The raw loop in a fresh process, as ``lmforge train`` runs in one."""
    out = subprocess.run(
        [sys.executable, __file__, "--raw-child", str(tok_dir), "--steps", str(steps)],
        check=True, capture_output=True, text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def raw_loop(steps: int, cfg, tok_dir: Path) -> float:
    """The same training as hand-written PyTorch: no Lightning, no callbacks, no logging."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from lmforge.plugins.models.transformer import Transformer
    from lmforge.engine.data import RandomWindows
    from lmforge.engine.optim import build_optimizer, lr_lambda
    from lmforge.engine.config import DataConfig
    from lmforge.hydra_bridge import component_config
    from lmforge.stages.tokenize import split_tokens
    from lmforge.hydra_bridge import structured

    data = structured(DataConfig, dict(cfg.data), "data", "data")
    train_ids, _, _ = split_tokens(tok_dir, data.val_fraction)
    vocab = json.loads((tok_dir / "report.json").read_text())["vocab_size"]
    torch.manual_seed(cfg.seed)
    model_cfg = {k: v for k, v in cfg.model.items() if k != "name"}
    model = Transformer(Transformer.Config(**model_cfg)).build(vocab_size=vocab, max_seq_len=data.seq_len)
    optimizer = build_optimizer(model, component_config("optimizer", cfg.optimizer, "optimizer")[1], on_cuda=False)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(component_config("scheduler", cfg.scheduler, "scheduler")[1], steps))
    windows = RandomWindows(train_ids, data.seq_len, steps * data.batch_size, cfg.seed)
    loader = DataLoader(windows, batch_size=data.batch_size, shuffle=False, num_workers=data.num_workers, drop_last=True)
    model.train()
    start = time.perf_counter()
    for batch in loader:
        logits = model(batch[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    seconds = time.perf_counter() - start
    return steps * data.batch_size * data.seq_len / seconds


def startup(args: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--raw-child", type=Path, help=argparse.SUPPRESS)  # internal: run the raw loop here
    parser.add_argument("overrides", nargs="*", help="extra overrides for lmforge train, e.g. trainer.enable_progress_bar=false")
    args = parser.parse_args()

    from hydra import compose, initialize_config_module

    from lmforge import hydra_bridge

    hydra_bridge.install()
    with initialize_config_module(config_module="lmforge.conf", version_base="1.3"):
        cfg = compose("train")
    if args.raw_child:
        print(raw_loop(args.steps, cfg, args.raw_child))
        return

    with tempfile.TemporaryDirectory() as tmp:
        workdir, cache = Path(tmp), Path(tmp) / "cache"
        lmforge_run(2, workdir, cache, -1, args.overrides)  # fills the stage cache; not timed
        tok_dir = next(p for p in (cache / "tokenize").iterdir() if p.is_dir())
        ours, raw = [], []
        for i in range(args.repeats):
            ours.append(lmforge_run(args.steps, workdir, cache, i, args.overrides))
            raw.append(raw_run(args.steps, tok_dir))
            print(f"  repeat {i + 1}: lmforge {ours[-1]:,.0f} tok/s, raw PyTorch {raw[-1]:,.0f} tok/s", flush=True)

    a, b = statistics.median(ours), statistics.median(raw)
    print(f"model: default tiny transformer, batch {cfg.data.batch_size}x{cfg.data.seq_len}, {args.steps} steps, torch threads {__import__('torch').get_num_threads()}")
    print(f"lmforge train     {a:10,.0f} tokens/s (median of {args.repeats})")
    print(f"raw PyTorch loop  {b:10,.0f} tokens/s (median of {args.repeats})")
    print(f"ratio             {a / b:10.3f}   (target >= 0.97)")
    plugins = startup([sys.executable, "-m", "lmforge.cli", "plugins"], 10)
    bare = startup([sys.executable, "-c", "pass"], 10)
    print(f"lmforge plugins   {plugins:10.3f} s start-up (median of 10; bare python {bare:.3f} s; target < 2 s)")


if __name__ == "__main__":
    main()
