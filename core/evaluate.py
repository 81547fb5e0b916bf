"""``lmforge eval <run dir>``: recompute a trained model's metrics and write ``eval.json``.

The run is opened through ``lmforge.runs.Run`` (its checked config, tokenizer and model).
By default the validation split is read back from the run's cached tokenize stage;
``--split train`` reads the training split instead, and ``--text`` scores any text files
after the run's own preprocessing steps and tokenizer, so the numbers (bits per byte
included) compare with the run's.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from lmforge.errors import ConfigError, DataError
from lmforge.files import atomic_write_json
from lmforge.runs import Run


def _split_ids(run: Run, split: str):
    """Token ids of one split of the run's cached corpus, and its bytes per token."""
    from lmforge.stages.cache import StageCache
    from lmforge.stages.tokenize import split_tokens

    if not run.manifest:
        raise DataError(
            f"{run.dir} has no manifest.json (its training did not finish), so its data stages are unknown: "
            f"score text files with --text"
        )
    tok_dir = StageCache(run.spec.cache_dir).path("tokenize", run.manifest["stages"]["tokenize"])
    if not (tok_dir / "report.json").is_file():
        raise DataError(
            f"the run's tokenized corpus is no longer in the stage cache ({tok_dir}): rerun lmforge train with the "
            f"run's config.yaml and cache_dir to rebuild it, or score text files with --text"
        )
    train_ids, val_ids, bytes_per_token = split_tokens(tok_dir, run.spec.data.val_fraction)
    return (val_ids if split == "val" else train_ids), bytes_per_token


def _text_ids(run: Run, paths: list[Path]):
    """Text files as the run saw its corpus: its preprocessing steps, its tokenizer, a separator per document."""
    import numpy as np

    docs, stats = run.preprocess([p.read_text(encoding="utf-8", errors="replace") for p in paths], source="eval")
    if not docs:
        raise DataError(f"the run's preprocessing dropped every --text file ({dict(stats)}): score other text")
    tokenizer = run.tokenizer
    sep = tokenizer.special_ids.get("eos", tokenizer.special_ids.get("sep"))
    ids = [i for encoded in tokenizer.encode_batch([d.text for d in docs]) for i in [*encoded, *([sep] if sep is not None else [])]]
    nbytes = sum(len(d.text.encode("utf-8")) for d in docs)
    return np.asarray(ids, dtype=np.int64), nbytes / max(len(ids), 1)


def evaluate(run_dir: Path, *, checkpoint: str | None = None, split: str = "val", text: list[Path] | None = None, batches: int | None = None, out: Path | None = None) -> dict:
    run = Run.open(run_dir)  # a wrong directory fails before torch is imported
    run.checkpoint(checkpoint)
    from lmforge import engine

    ids, bytes_per_token = _text_ids(run, text) if text else _split_ids(run, split)
    spec = run.spec
    window = spec.data.seq_len + 1
    if len(ids) < window:
        raise DataError(f"{'--text' if text else f'the {split} split'} gives {len(ids):,} tokens, fewer than one window of data.seq_len+1={window}: score more text")
    ckpt = run.read_checkpoint(checkpoint)
    data_cfg = spec.data if batches is None else dataclasses.replace(spec.data, val_batches=batches)
    data_cfg = dataclasses.replace(data_cfg, batch_size=max(1, min(data_cfg.batch_size, (len(ids) - 1) // (data_cfg.seq_len + 1))))
    # the scored tokens fill the validation side; the training side only has to pass the size check
    objective = spec.model.entry.cls.objective
    data = engine.token_data(ids, ids, data_cfg, objective=objective, tokenizer=run.tokenizer, seed=spec.seed, max_steps=1)
    metrics, device = engine.validate(
        run.model(ckpt), data, vocab_size=run.tokenizer.vocab_size, loss=spec.loss, bytes_per_token=bytes_per_token,
        accelerator=spec.trainer.accelerator, precision=spec.trainer.precision,
    )
    result = {
        "run_dir": str(run.dir),
        "checkpoint": str(ckpt.path),
        "step": ckpt.step,
        "split": "text" if text else split,
        "text": [str(p) for p in text] if text else None,
        "tokens": int(len(ids)),
        "bytes_per_token": bytes_per_token,
        "device": device,
        **metrics,
    }
    atomic_write_json(out or run.dir / "eval.json", result)
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lmforge eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a directory written by lmforge train, or a checkpoint inside one")
    parser.add_argument("--checkpoint", help="a .ckpt file; default <run dir>/checkpoints/last.ckpt")
    parser.add_argument("--split", choices=("val", "train"), default="val", help="which split of the run's corpus to score")
    parser.add_argument("--text", type=Path, nargs="+", help="score these text files instead of a split")
    parser.add_argument("--batches", type=int, help="batches to score; 0 for the whole split (default: the run's data.val_batches)")
    parser.add_argument("--out", type=Path, help="where to write the metrics; default <run dir>/eval.json")
    args = parser.parse_args(argv)
    for path in args.text or []:
        if not path.is_file():
            raise ConfigError(f"--text {path}: no such file")
    result = evaluate(args.run_dir, checkpoint=args.checkpoint, split=args.split, text=args.text, batches=args.batches, out=args.out)
    shown = ", ".join(f"{k} {result[k]:.4f}" for k in ("loss", "ppl", "bpb", "top1", "top5", "f1") if k in result)
    print(f"{result['split']}: {result['tokens']:,} tokens, step {result['step']}: {shown}")
    print(f"wrote {args.out or Path(result['run_dir']) / 'eval.json'}")
    return 0
