"""The server's overhead and its batching, against the generation function in one process.

For each model size (``tiny``: width 128, 4 layers; ``small``: width 384, 6 layers; both
context 512, random weights), a run is served by the real ``lmforge serve`` in a
subprocess on 127.0.0.1 (its model in the server's engine process), and measured:

0. the scheduler alone in this process, no HTTP: 8 rows against 1;
1. one client streaming 256 greedy tokens, against ``lmforge.engine.complete`` on the same
   prompt and the same model in this process: tokens/s and their ratio (target >= 0.9);
2. 8 clients at once against the same 8 requests one after the other: total tokens/s
   and their ratio (target >= 3x on the CPU, from batching);
3. the latency to the first token (p50, p99) under 8 and 32 concurrent clients.

The clients run in this process, on the same CPUs as the server: see ``stream_one``.

    python tests/benchmarks/bench_serve.py [--sizes tiny small] [--tokens 256] [--client http.client|httpx]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "plugins" / "deploy")]

from test_serve import make_run, server  # noqa: E402

SERVER_ENV = {k: v for k, v in [a.split("=", 1) for a in os.environ.get("BENCH_SERVER_ENV", "").split()]}
PAUSE = 1.0  # seconds between measurements
CLIENT = "http.client"
PROMPTS = ["def add(a, b):", "import os\n", "class A:\n    pass\n", "print(", "x = [", "for i in range(10):", "return", "with open(p) as f:"]


def stream_one(url: str, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    """(seconds to the first token, seconds in all, tokens) of one streamed completion.

    The client is the standard library's ``http.client``, reading the events line by line
    and parsing each: it runs on the same CPUs as the server, and costs about a third of
    what ``httpx`` does per event (``--client httpx`` measures with that one)."""
    body = json.dumps({"model": "run", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True})
    start, first, count = time.perf_counter(), None, 0
    if CLIENT == "httpx":
        import httpx

        with httpx.stream("POST", url + "/v1/completions", content=body, headers={"Content-Type": "application/json"}, timeout=300) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"]:
                    count += 1
                    first = first or time.perf_counter() - start
        return first, time.perf_counter() - start, count
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=300)
    try:
        connection.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        r = connection.getresponse()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]!r}")
        while line := r.readline():
            if line.startswith(b"data: {") and json.loads(line[6:])["choices"]:
                count += 1
                first = first or time.perf_counter() - start
    finally:
        connection.close()
    return first, time.perf_counter() - start, count


def concurrently(url: str, n: int, max_tokens: int) -> tuple[float, list[tuple[float, float, int]]]:
    results: list = [None] * n

    def client(i):
        results[i] = stream_one(url, PROMPTS[i % len(PROMPTS)], max_tokens)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return time.perf_counter() - start, results


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, here and in the server (default 1: steadier on a shared machine)")
    parser.add_argument("--sizes", nargs="*", default=["tiny", "small"], help="model.size values, each measured in turn (default tiny small)")
    parser.add_argument("--model-overrides", nargs="*", default=[], help="more overrides for every size's run")
    parser.add_argument("--client", choices=["http.client", "httpx"], default="http.client", help="the benchmark's HTTP client (default http.client, the lighter)")
    args = parser.parse_args()
    global CLIENT
    CLIENT = args.client
    os.environ.setdefault("LMFORGE_DISABLE_PLUGIN_AUTOLOAD", "1")
    import torch

    torch.set_num_threads(args.threads)
    SERVER_ENV.setdefault("OMP_NUM_THREADS", str(args.threads))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()} here and in the server")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            measure(Path(tmp), size, args)


def measure(tmp: Path, size: str, args) -> None:
    from lmforge.engine import Sampling, complete
    from lmforge.runs import Run

    # the test runs' own tiny shape (support.TINY) gives way to the size's
    run = make_run(tmp, f"model.size={size}", "model.n_layer=null", "model.n_head=null", "model.n_embd=null", *args.model_overrides)
    print(f"model.size={size}, {sum(p.numel() for p in Run.open(run).model().parameters()):,} parameters (load average {os.getloadavg()[0]:.1f}):")
    opened = Run.open(run)
    model, tokenizer = opened.model(device="cpu"), opened.tokenizer
    ids = tokenizer.encode_batch([PROMPTS[0]])[0]
    sampling = Sampling(max_tokens=args.tokens, temperature=0, top_k=None)
    complete(model, tokenizer, [ids], Sampling(max_tokens=8, temperature=0, top_k=None))  # warm-up

    def scheduler_rate(n: int) -> float:
        """Tokens/s of the server's scheduler alone, in this process: n rows of 128 tokens."""
        from lmforge.plugins.deploy._engine import Job
        from lmforge.plugins.deploy._scheduler import Scheduler

        scheduler = Scheduler(lambda: (model, tokenizer)).start()
        scheduler.ready.wait(60)
        done = threading.Semaphore(0)
        jobs = [Job(tokenizer.encode_batch([PROMPTS[i % len(PROMPTS)]])[0], lambda e: e is None and done.release(), max_tokens=128, temperature=0) for i in range(n)]
        start = time.perf_counter()
        for job in jobs:
            scheduler.submit(job)
        for _ in jobs:
            done.acquire(timeout=300)
        seconds = time.perf_counter() - start
        scheduler.stop()
        return 128 * n / seconds

    def direct_rate() -> float:
        start = time.perf_counter()
        done = complete(model, tokenizer, [ids], sampling)[0]
        return len(done.token_ids) / (time.perf_counter() - start)

    one, eight = max(scheduler_rate(1) for _ in range(2)), max(scheduler_rate(8) for _ in range(2))
    print(f"0. the scheduler alone, in this process (no HTTP): 8 rows {eight:,.0f} tok/s vs 1 row {one:,.0f} tok/s = {eight / one:.2f}x")
    with server(run, "--max-concurrent", "64", env=SERVER_ENV) as url:
        stream_one(url, PROMPTS[0], 8)  # warm-up
        direct, served = 0.0, 0.0
        for _ in range(5):  # interleaved, best of 5, with pauses: the machine may be shared, and
            time.sleep(PAUSE)  # OpenMP threads spin a while after work, slowing whoever runs next
            direct = max(direct, direct_rate())
            time.sleep(PAUSE)
            _, seconds, count = stream_one(url, PROMPTS[0], args.tokens)
            served = max(served, count / seconds)
        print(f"1. one client streaming {args.tokens} tokens: {served:,.0f} tok/s served vs {direct:,.0f} tok/s direct = {served / direct:.2f}x (target >= 0.9)")

        new = 128
        seq_rate, conc_rate = 0.0, 0.0
        for _ in range(2):
            time.sleep(PAUSE)
            start = time.perf_counter()
            sequential = sum(stream_one(url, PROMPTS[i], new)[2] for i in range(8))
            seq_rate = max(seq_rate, sequential / (time.perf_counter() - start))
            time.sleep(PAUSE)
            wall, results = concurrently(url, 8, new)
            conc_rate = max(conc_rate, sum(r[2] for r in results) / wall)
        print(f"2. 8 clients x {new} tokens: {conc_rate:,.0f} tok/s concurrent vs {seq_rate:,.0f} tok/s sequential = {conc_rate / seq_rate:.2f}x (target >= 3)")

        for n in (8, 32):
            time.sleep(PAUSE)
            _, results = concurrently(url, n, 64)
            firsts = [r[0] * 1000 for r in results]
            print(f"3. time to first token, {n} concurrent clients: p50 {pct(firsts, 0.5):.0f} ms, p99 {pct(firsts, 0.99):.0f} ms (mean {statistics.mean(firsts):.0f} ms)")


if __name__ == "__main__":
    main()
