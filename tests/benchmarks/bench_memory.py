"""Peak memory of collect + preprocess + tokenize as the corpus grows 4x.

The same pipeline (``books`` collector over plain-text files, ``normalize``, byte-level
BPE) runs in a fresh process on a 1x corpus (the standard library's sources as ``.txt``,
about 12 MB) and on a 4x corpus (four copies, each line-shuffled per copy so that no
document is an exact duplicate). Each child reports its peak RSS
(``resource.getrusage``); the script prints both and the ratio. Streaming stages keep
the ratio near 1; a stage that held the corpus in memory would approach 4.

    python tests/benchmarks/bench_memory.py
"""

from __future__ import annotations

import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def child(corpus: Path, work: Path) -> None:
    """Run the three stages on ``corpus``; print the peak RSS in MB and the sizes."""
    from lmforge.stages.collect import collect
    from lmforge.stages.preprocess import preprocess
    from lmforge.plugins.collectors.books import Books, BooksConfig
    from lmforge.plugins.preprocessors.normalize import Normalize
    from lmforge.plugins.tokenizers.bpe import BPE, BPEConfig
    from lmforge.stages.tokenize import tokenize

    raw, clean, toks = work / "collect", work / "preprocess", work / "tokenize"
    for folder in (raw, clean, toks):
        folder.mkdir(parents=True)
    report = collect(Books(BooksConfig(paths=[str(corpus)], extensions=[".txt"])), raw)
    preprocess([Normalize()], raw, clean)
    stats = tokenize(BPE(BPEConfig(vocab_size=4096)), clean, toks)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(json.dumps({"peak_mb": peak_mb, "bytes": report["bytes"], "tokens": stats["tokens"]}))


def build(root: Path, copies: int) -> Path:
    from lmforge.plugins.collectors.stdlib import Stdlib, StdlibConfig

    stdlib = Stdlib(StdlibConfig())
    corpus = root / f"corpus-{copies}x"
    for copy in range(copies):
        rng = random.Random(copy)
        for f in stdlib.files():
            lines = f.read_text(encoding="utf-8", errors="replace").splitlines()
            if copy:
                rng.shuffle(lines)  # same vocabulary and size, different documents
            target = corpus / f"copy{copy}" / f.relative_to(stdlib.root).with_suffix(".txt")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("\n".join(lines), encoding="utf-8")
    return corpus


def run(corpus: Path, work: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(corpus), str(work)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        one = run(build(root, 1), root / "work-1x")
        shutil.rmtree(root / "work-1x")
        four = run(build(root, 4), root / "work-4x")
    print(f"1x corpus: {one['bytes'] / 1e6:6.1f} MB text, {one['tokens']:,} tokens, peak RSS {one['peak_mb']:7.1f} MB")
    print(f"4x corpus: {four['bytes'] / 1e6:6.1f} MB text, {four['tokens']:,} tokens, peak RSS {four['peak_mb']:7.1f} MB")
    print(f"ratio 4x/1x peak RSS: {four['peak_mb'] / one['peak_mb']:.3f}   (target <= 1.2)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
