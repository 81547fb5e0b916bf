"""The guard's cost on streaming: tokens/s from ``lmforge serve --guard lexicon`` against the
same server with no guard, same run, same server code.

A run of ``model.size`` (default ``tiny``: the fastest model, where a per-token cost
shows most; random weights, context 512) is served twice at once by the real ``lmforge
serve`` in subprocesses on 127.0.0.1, one with ``--guard lexicon`` (the built-in list,
plus ``--lexicon`` entries if given) and one without. One client streams ``--tokens``
greedy tokens from each in turn, ``--repeats`` times; the medians and their ratio
(guarded / plain, target >= 0.9) are printed, with the machine. The reply must come
through whole: a reply the guard cuts would not measure the same work, and is reported.

    python tests/benchmarks/bench_guard.py [--size tiny] [--tokens 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "plugins" / "deploy")]

from bench_serve import PROMPTS, SERVER_ENV, stream_one  # noqa: E402
from test_serve import make_run, server  # noqa: E402


def scanner_cost(tokens: int) -> float:
    """Seconds per chunk of the lexicon guard's scanner over a reply of ``tokens`` chunks of 3-4 characters."""
    from lmforge.plugins.guards.lexicon import LexiconGuard

    guard = LexiconGuard()
    guard.setup()
    text = "def add(a, b):\n    return a + b  # the sum of two numbers\n" * (tokens // 12 + 1)
    chunks = [text[i : i + 4] for i in range(0, 4 * tokens, 4)]
    best = float("inf")
    for _ in range(5):
        scanner = guard.scanner()
        start = time.perf_counter()
        for chunk in chunks:
            scanner.feed(chunk)
        scanner.finish()
        best = min(best, (time.perf_counter() - start) / len(chunks))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="tiny", help="model.size of the served run (default tiny)")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each server (default 1)")
    args = parser.parse_args()
    os.environ.setdefault("LMFORGE_DISABLE_PLUGIN_AUTOLOAD", "1")
    SERVER_ENV.setdefault("OMP_NUM_THREADS", str(args.threads))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"model.size={args.size}, {args.tokens} greedy tokens streamed, {args.repeats} repeats, torch threads {args.threads} per server")
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp), f"model.size={args.size}", "model.n_layer=null", "model.n_head=null", "model.n_embd=null")
        with server(run, env=SERVER_ENV) as plain, server(run, "--guard", "lexicon", env=SERVER_ENV) as guarded:
            rates: dict[str, list[float]] = {"none": [], "lexicon": []}
            for url in (plain, guarded):  # warm-up
                stream_one(url, PROMPTS[0], 16)
            for repeat in range(args.repeats):
                pair = [("none", plain), ("lexicon", guarded)]
                for name, url in pair if repeat % 2 == 0 else pair[::-1]:  # neither always goes first
                    _, seconds, count = stream_one(url, PROMPTS[0], args.tokens)
                    if count < args.tokens - 1:
                        print(f"  note: guard={name} streamed {count} of {args.tokens} tokens (cut short): the rates are not comparable")
                    rates[name].append(count / seconds)
                    time.sleep(0.5)
    none, lexicon = statistics.median(rates["none"]), statistics.median(rates["lexicon"])
    print(f"  no guard:      {none:8.1f} tokens/s (median; {', '.join(f'{r:.0f}' for r in rates['none'])})")
    print(f"  guard=lexicon: {lexicon:8.1f} tokens/s (median; {', '.join(f'{r:.0f}' for r in rates['lexicon'])})")
    print(f"  ratio lexicon / none: {lexicon / none:.3f} (target >= 0.9)")
    scan = scanner_cost(args.tokens)
    print(f"  the lexicon scanner alone, in this process: {scan * 1e6:.1f} µs per chunk, {scan * none * 100:.2f}% of a token's time without a guard")


if __name__ == "__main__":
    main()
