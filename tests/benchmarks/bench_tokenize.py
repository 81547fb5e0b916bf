"""Tokenize-stage rate in MB/s against bare Hugging Face ``tokenizers`` on the same text.

The corpus is the Python standard library (about 12 MB of text, offline), collected with
``lmforge.stages.collect.collect`` into Parquet shards in a temporary folder: the same format
the preprocess stage writes, so these are the shards the tokenize stage reads in a run
with ``preprocess=none``. One tokenizer is trained on it and saved, then, in the same
run and alternating, the script times:

- ``stage``: ``lmforge.stages.tokenize.tokenize`` with the trained tokenizer.json already in its
  output folder, so it only encodes: read each shard, encode every document, append the
  separator, write the ``.bin`` ids and the ``.npz`` index;
- ``bare``: ``tokenizers.Tokenizer.encode_batch_fast`` (``add_special_tokens=False``) on
  the same texts, already in memory, one call per shard, reading each encoding's ids.

Rates are MB of UTF-8 text per second; each side's best of ``--repeats`` is compared.

    python tests/benchmarks/bench_tokenize.py --tokenizer bpe --repeats 3

Prints both rates and the ratio stage/bare (target >= 0.9).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from lmforge.hydra_bridge import component_config
from lmforge.plugins.collectors.stdlib import Stdlib, StdlibConfig
from lmforge.stages.collect import collect
from lmforge.stages.shards import read_documents, shard_paths
from lmforge.stages.tokenize import tokenize


def build_tokenizer(name: str, vocab_size: int | None, src: Path, folder: Path):
    node = {"name": name} | ({"vocab_size": vocab_size} if vocab_size else {})
    entry, config = component_config("tokenizer", node, "tokenizer")
    tokenizer = entry.cls(config)
    start = time.perf_counter()
    if tokenizer.trainable:
        tokenizer.train(d.text for d in read_documents(shard_paths(src)))
    tokenizer.save(folder / "tokenizer.json")
    return tokenizer, time.perf_counter() - start


def time_stage(tokenizer, src: Path, trained: Path, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    shutil.copyfile(trained, out / "tokenizer.json")  # the stage loads it instead of training
    start = time.perf_counter()
    tokenize(tokenizer, src, out)
    return time.perf_counter() - start


def time_bare(hf, shards: list[list[str]]) -> tuple[float, int]:
    start = time.perf_counter()
    ntokens = 0
    for texts in shards:
        ntokens += sum(len(e.ids) for e in hf.encode_batch_fast(texts, add_special_tokens=False))
    return time.perf_counter() - start, ntokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", default="bpe", help="registered tokenizer to train and time (default bpe)")
    parser.add_argument("--vocab-size", type=int, default=None, help="override tokenizer.vocab_size")
    parser.add_argument("--max-bytes", type=int, default=None, help="collect at most this many bytes (default: the whole stdlib)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side; the best is kept")
    args = parser.parse_args()

    from tokenizers import Tokenizer as HFModel

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src, trained = root / "src", root / "trained"
        src.mkdir(), trained.mkdir()
        collect(Stdlib(StdlibConfig(max_bytes=args.max_bytes)), src)
        shards = [[d.text for d in read_documents([p])] for p in shard_paths(src)]
        nbytes = sum(len(t.encode("utf-8")) for texts in shards for t in texts)
        tokenizer, train_s = build_tokenizer(args.tokenizer, args.vocab_size, src, trained)
        hf = HFModel.from_file(str(trained / "tokenizer.json"))
        print(f"corpus: {nbytes / 1e6:.1f} MB in {sum(map(len, shards))} documents, {len(shards)} shards; "
              f"tokenizer {args.tokenizer}: vocab {tokenizer.vocab_size}, trained in {train_s:.1f} s")

        time_bare(hf, [texts[:50] for texts in shards])  # warm-up: thread pool, caches
        stage_s, bare_s, ntokens = [], [], 0
        for _ in range(args.repeats):
            stage_s.append(time_stage(tokenizer, src, trained / "tokenizer.json", root / "out"))
            seconds, ntokens = time_bare(hf, shards)
            bare_s.append(seconds)
        mb = nbytes / 1e6
        stage, bare = mb / min(stage_s), mb / min(bare_s)
        print(f"tokens: {ntokens} ({nbytes / max(ntokens, 1):.2f} bytes per token)")
        print(f"stage (lmforge.stages.tokenize):          {stage:7.2f} MB/s")
        print(f"bare  (tokenizers encode_batch_fast):     {bare:7.2f} MB/s")
        print(f"ratio stage/bare: {stage / bare:.3f}  (target >= 0.9; best of {args.repeats}, python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
