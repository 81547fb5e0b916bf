"""Collection rate from local sources, in MB/s, against reading the same bytes bare.

Each source is built in a temporary folder from the Python standard library (about
12 MB of text), so every machine can run it offline:

- ``stdlib``: the collector as shipped;
- ``books``: the same files as ``.txt`` books;
- ``code``: the same files committed to a local git repository;
- ``forum``: the same files as posts of a JSONL dump.

For each, the script times, in the same run: a bare read of the input files; the
collector alone (iterating its documents); and lmforge's whole collect stage (the
collector, exact dedup by content hash, zstd Parquet shards written atomically). It
prints the three rates, the stage against the collector alone (what storage costs) and
the stage against the bare read.

    python tests/benchmarks/bench_collect.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from lmforge.hydra_bridge import component_config
from lmforge.plugins.collectors.stdlib import Stdlib, StdlibConfig
from lmforge.stages.collect import collect


def bare_read(paths: list[Path]) -> tuple[int, float]:
    start = time.perf_counter()
    total = sum(len(p.read_bytes()) for p in paths)
    return total, time.perf_counter() - start


def build_sources(root: Path) -> dict[str, tuple[dict, list[Path]]]:
    files = Stdlib(StdlibConfig()).files()
    stdlib_root = Stdlib(StdlibConfig()).root
    books, repo = root / "books", root / "repo"
    for f in files:
        rel = f.relative_to(stdlib_root)
        for base, suffix in ((books, ".txt"), (repo, ".py")):
            target = (base / rel).with_suffix(suffix)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "stdlib copy"], check=True)
    dump = root / "forum.jsonl"
    with open(dump, "w", encoding="utf-8") as out:
        for i, f in enumerate(files):
            text = f.read_text(encoding="utf-8", errors="replace")
            out.write(json.dumps({"id": str(i), "text": text, "author": f"user{i % 50}"}) + "\n")
    return {
        "stdlib": ({"name": "stdlib"}, files),
        "books": ({"name": "books", "paths": [str(books)], "extensions": [".txt"]}, sorted(books.rglob("*.txt"))),
        "code": ({"name": "code", "repos": [str(repo)], "languages": ["python"]}, sorted(repo.rglob("*.py"))),
        "forum": ({"name": "forum", "paths": [str(dump)], "format": "jsonl", "salt": "bench-secret"}, [dump]),
    }


def collector_alone(collector, workdir: Path) -> float:
    start = time.perf_counter()
    for _ in collector.documents(workdir, Counter()):
        pass
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sources = build_sources(root)
        warm = root / "warm-up"
        warm.mkdir()
        collect(Stdlib(StdlibConfig(max_bytes=200_000)), warm)  # imports and first writes, not timed
        print(f"{'source':<7} {'input MB':>8} {'bare read':>10} {'collector':>10} {'stage':>8}   {'stage/collector':>15} {'stage/bare':>10}")
        for name, (node, inputs) in sources.items():
            entry, config = component_config("collector", node, "collector")
            nbytes, read_seconds = bare_read(inputs)
            alone = collector_alone(entry.cls(config), root / f"alone-{name}")
            out = root / f"out-{name}"
            out.mkdir()
            start = time.perf_counter()
            collect(entry.cls(config), out)
            seconds = time.perf_counter() - start
            mb = nbytes / 1e6
            print(
                f"{name:<7} {mb:8.1f} {mb / read_seconds:10.1f} {mb / alone:10.1f} {mb / seconds:8.1f}"
                f"   {alone / seconds:15.2f} {read_seconds / seconds:10.3f}",
                flush=True,
            )
    print(f"rates in MB/s of input bytes, one run each; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
