"""Lemmatization speed: the ``lemma`` step against bare spaCy, and two workers against one.

The corpus is the Python standard library (about 12 MB of ``.py`` text, fewer with
``--max-mb``), collected by lmforge's collect stage into about sixteen shards of similar size,
so every machine can run it offline. One run times:

- bare spaCy: ``nlp.pipe`` over the corpus texts, already in memory, with the pipeline
  the step builds (``spacy.blank("en")`` + the lookup lemmatizer), built afresh for
  each repeat. Its token count is the "words" of every rate below;
- the ``lemma`` step's ``process`` over the same documents, in memory, with its own
  fresh pipeline;
- lmforge's preprocess stage with the ``lemma`` step and one worker: reading shards,
  the validity check, chunking, ``nlp.pipe``, joining the text back, writing shards;
- the same stage with two worker processes.

spaCy is imported once before the timings. Every side builds its pipeline inside its
timing (the stage sets the step up once and its forked workers inherit it), from
scratch: a pipeline that has seen the corpus before runs it about a quarter faster,
as its vocabulary and tokenizer cache are warm, so reusing one for bare spaCy across
repeats would race a warm pipeline against cold ones. The four measurements are repeated
``--repeats`` times, interleaved, and the median of each is compared, so that drift on
a shared machine hits every side.

It prints the rates, the stage against bare spaCy (target >= 0.8) and two workers
against one (target >= 1.7 on a 2-core machine), each from wall time and from CPU time.
The CPU figures hold up on a busy machine: for two workers, the speed-up two free
cores would give if the work split evenly, which shows the cost of the workers' setup
but not any imbalance.

    python tests/benchmarks/bench_lemma.py [--max-mb 12] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lmforge.plugins.collectors.stdlib import Stdlib, StdlibConfig
from lmforge.plugins.preprocessors._spacy import load_blank
from lmforge.plugins.preprocessors.lemma import Lemma
from lmforge.stages.collect import collect
from lmforge.stages.preprocess import preprocess
from lmforge.stages.shards import read_documents, shard_paths

SHARDS = 16  # several per worker, so that two workers finish close together


def build_corpus(root: Path, max_bytes: int | None) -> Path:
    probe, src = root / "probe", root / "src"
    probe.mkdir()
    src.mkdir()
    total = collect(Stdlib(StdlibConfig(max_bytes=max_bytes)), probe)["bytes"]
    collect(Stdlib(StdlibConfig(max_bytes=max_bytes)), src, shard_bytes=total // SHARDS)
    return src


def bare_spacy(texts: list[str]) -> int:
    """spaCy tokens in ``texts``, through a fresh copy of the pipeline the step builds."""
    nlp = load_blank("en", lemmatizer=True)
    return sum(len(doc) for doc in nlp.pipe(texts, batch_size=Lemma().batch_size))


def step_alone(docs: list) -> int:
    step = Lemma()
    step.setup()
    return sum(1 for _ in step.process(iter(docs), Counter()))


@dataclass
class Timing:
    wall: float  # seconds
    cpu: float  # CPU seconds of this process and of the worker processes that ended meanwhile
    result: object


def timed(function) -> Timing:
    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = function()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before))
    return Timing(wall, cpu, result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-mb", type=float, default=None, help="collect at most this many MB of the standard library")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median of each is compared")
    args = parser.parse_args()
    max_bytes = int(args.max_mb * 1e6) if args.max_mb else None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = build_corpus(root, max_bytes)
        docs = list(read_documents(shard_paths(src)))
        texts = [d.text for d in docs]
        mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        shards = len(shard_paths(src))
        load_blank("en", lemmatizer=True)  # imports spaCy, not timed
        runs: dict[str, list[Timing]] = {"stage1": [], "stage2": [], "bare": [], "alone": []}
        for repeat in range(args.repeats):
            for workers in (1, 2):
                out = root / f"out-{workers}-{repeat}"
                out.mkdir()
                runs[f"stage{workers}"].append(timed(lambda: preprocess([Lemma()], src, out, n_workers=workers)))
                assert runs[f"stage{workers}"][-1].result["documents"] == len(docs)
            runs["bare"].append(timed(lambda: bare_spacy(texts)))
            runs["alone"].append(timed(lambda: step_alone(docs)))
        median = {k: sorted(v, key=lambda t: t.wall)[len(v) // 2] for k, v in runs.items()}
        stage, bare, alone = {1: median["stage1"], 2: median["stage2"]}, median["bare"], median["alone"]
        words = bare.result

    print(f"corpus: Python {sys.version.split()[0]} standard library, {mb:.1f} MB, {len(docs):,} documents, "
          f"{shards} shards, {words:,} words (spaCy tokens); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"medians of {args.repeats} interleaved repeats")
    print(f"{'':<22} {'words/s':>9} {'wall s':>7} {'CPU s':>7}")
    rows = [("bare spaCy nlp.pipe", bare), ("lemma step process()", alone), ("stage, 1 worker", stage[1]), ("stage, 2 workers", stage[2])]
    for name, t in rows:
        print(f"{name:<22} {words / t.wall / 1e3:8.1f}k {t.wall:7.2f} {t.cpu:7.2f}")
    print("ratios                  wall    CPU")
    print(f"step process() / bare   {bare.wall / alone.wall:5.2f}  {bare.cpu / alone.cpu:5.2f}")
    print(f"stage 1 worker / bare   {bare.wall / stage[1].wall:5.2f}  {bare.cpu / stage[1].cpu:5.2f}   (target >= 0.8)")
    # CPU column: the speed-up two free cores would give if the workers shared the work evenly
    print(f"stage 2 workers / 1     {stage[1].wall / stage[2].wall:5.2f}  {2 * stage[1].cpu / stage[2].cpu:5.2f}   (target >= 1.7 on 2 cores)")


if __name__ == "__main__":
    main()
