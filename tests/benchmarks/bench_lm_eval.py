"""lm-eval log-likelihood scoring: lmforge's model (``LmforgeLM``) against the harness's ``hf`` model.

One run (a transformer of ``--layers`` x ``--width``, context ``--seq-len``, made without
training as the tests make runs) is exported with ``lmforge export --format hf``. Both
models score the same ``--requests`` log-likelihood requests on the same exported
weights, at the same batch size, device and dtype (fp32): lmforge's through ``Run.open``
on the export, the harness's through ``transformers``. The requests are multiple-choice
shaped: a context of 40-200 tokens of real Python source, four continuations of 1-12
tokens each. The two take turns over ``--repeat`` rounds and each keeps its best time,
so that a busy machine slows both alike. The script checks the two agree (log-likelihoods within 1e-3, the same
greedy flags), prints requests/s of each and the ratio (target: at least 1.0x), and the
machine.

    python tests/benchmarks/bench_lm_eval.py [--requests 256] [--batch-size 16] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/support.py

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("LMFORGE_DISABLE_PLUGIN_AUTOLOAD", "1")


def source_text() -> str:
    import argparse as a
    import json
    import pathlib

    return "\n".join(inspect.getsource(m) for m in (a, json.decoder, json.encoder, pathlib))


def make_requests(lm, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (context, continuation) pairs, four per context, cut at token boundaries of real source;
    a continuation that tokenizes to nothing after the context (the harness refuses it) is redrawn."""
    tokenizer = lm.tok
    ids = tokenizer.encode_batch([source_text()])[0]
    rng = random.Random(seed)
    pairs = []
    while len(pairs) < n:
        start, length = rng.randrange(0, len(ids) - 300), rng.randint(40, 200)
        context = tokenizer.decode(ids[start : start + length])
        if not context.strip():
            continue
        choices: list[str] = []
        while len(choices) < 4:
            at = rng.randrange(0, len(ids) - 20)
            continuation = tokenizer.decode(ids[at : at + rng.randint(1, 12)])
            if lm._encode_pair(context, continuation)[1]:
                choices.append(continuation)
        pairs += [(context, c) for c in choices]
    return pairs[:n]


def timed(models, requests, repeat: int):
    """Each model's results and its best time over ``repeat`` rounds, the models taking turns
    within each round, so that a busy machine slows both alike."""
    for lm in models:
        lm.loglikelihood(requests[:8], disable_tqdm=True)  # warm-up
    best, out = [float("inf")] * len(models), [None] * len(models)
    for _ in range(repeat):
        for k, lm in enumerate(models):
            start = time.perf_counter()
            out[k] = lm.loglikelihood(requests, disable_tqdm=True)
            best[k] = min(best[k], time.perf_counter() - start)
    return out, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--variant", choices=("llama", "gpt2"), default="llama")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds; the best of each model's is kept")
    args = parser.parse_args()

    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    import support
    from lmforge.plugins.deploy._export import export
    from lmforge.plugins.evaluation._lm_eval import LmforgeLM

    if args.threads:
        torch.set_num_threads(args.threads)
    gpt2 = ["model.pos=learned", "model.norm=layernorm", "model.mlp=gelu"] if args.variant == "gpt2" else []
    root = Path(tempfile.mkdtemp(prefix="bench-lm-eval-"))
    overrides = [f"model.n_layer={args.layers}", "model.n_head=4", f"model.n_embd={args.width}", f"data.seq_len={args.seq_len}", *gpt2]
    run = support.make_run(root, *overrides, noise=0.02)
    out = export(run, root / "hf")

    ours = LmforgeLM(str(out), batch_size=args.batch_size, device=args.device)
    theirs = HFLM(pretrained=str(out), dtype="float32", batch_size=args.batch_size, device=args.device)
    pairs = make_requests(ours, args.requests)
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    tokens = sum(len(ours.tok_encode(c + x)) for c, x in pairs)

    (mine, hf), (t_mine, t_hf) = timed([ours, theirs], requests, args.repeat)
    worst = max(abs(a[0] - b[0]) for a, b in zip(mine, hf))
    assert worst < 1e-3, f"the two models disagree: largest log-likelihood difference {worst:.2e}"
    assert [a[1] for a in mine] == [b[1] for b in hf], "the greedy flags differ"

    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), device {args.device}")
    print(f"model: {args.variant} {args.layers} layers x {args.width}, context {args.seq_len}, vocab {ours.tok.vocab_size}; "
          f"{len(requests)} requests ({tokens:,} tokens), batch {args.batch_size}, fp32; largest |dLL| {worst:.1e}")
    print(f"lmforge (LmforgeLM)  {len(requests) / t_mine:8.1f} requests/s  ({t_mine:.2f} s)")
    print(f"lm-eval hf (HFLM)    {len(requests) / t_hf:8.1f} requests/s  ({t_hf:.2f} s)")
    print(f"ratio lmforge / hf   {t_hf / t_mine:8.2f}x   (target >= 1.0x)")


if __name__ == "__main__":
    main()
