"""``lmforge eval <run dir>``: recompute a trained model's metrics and write ``eval.json``.

The run is opened through ``lmforge.runs.Run`` (its checked config, tokenizer and model).
By default the validation split is read back from the run's cached tokenize stage;
``--split train`` reads the training split instead, and ``--text`` scores any text files
after the run's own preprocessing steps and tokenizer, so the numbers (bits per byte
included) compare with the run's. ``--task NAME`` scores the run, its base and the task's
baseline on a downstream task's test split instead (``lmforge.task_eval``; ``--task safety``
with a guard off and on, ``--guard``), and
``--lm-eval TASKS`` runs lm-eval-harness tasks on it, offline (``lmforge.harness``).
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
    target = out or run.dir / "eval.json"
    from lmforge.harness import previous_results

    atomic_write_json(target, {**result, **previous_results(target)})  # lm-eval's results stay
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lmforge eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a directory written by lmforge train, or a checkpoint inside one")
    parser.add_argument("--checkpoint", help="a .ckpt file; default <run dir>/checkpoints/last.ckpt")
    parser.add_argument("--split", choices=("val", "train", "validation", "test"), help="the run's corpus: val (default) or train; with --task: test (default), validation or train")
    parser.add_argument("--text", type=Path, nargs="+", help="score these text files instead of a split")
    parser.add_argument("--batches", type=int, help="batches to score; 0 for the whole split (default: the run's data.val_batches)")
    parser.add_argument("--out", type=Path, help="where to write the metrics; default <run dir>/eval.json (with --task: a folder, default <run dir>/eval-<task>)")
    parser.add_argument("--lm-eval", metavar="TASKS", help="run lm-eval-harness tasks (comma-separated) instead, offline on local task YAML and data")
    parser.add_argument("--include-path", type=Path, metavar="DIR", help="with --lm-eval: a folder of task YAML files")
    parser.add_argument("--limit", type=float, help="with --lm-eval: score at most N documents per task (below 1: that share)")
    parser.add_argument("--batch-size", type=int, default=16, help="with --lm-eval or --task: requests per forward pass (default 16)")
    parser.add_argument("--task", metavar="NAME", help="score the run, its base and the baseline on a task's test split (docs/tasks.md)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="with --task: task overrides, e.g. task.data=data.jsonl")
    parser.add_argument("--max-tokens", type=int, default=64, help="with --task: new tokens at most per greedy reply (default 64)")
    parser.add_argument("--no-base", action="store_true", help="with --task: do not score the base run")
    parser.add_argument("--guard", metavar="NAME", help="with --task safety: the guard of the guarded columns (default: the run's config `guard`, else lexicon; none for no guarded columns)")
    parser.add_argument("--guard-option", action="append", default=[], metavar="KEY=VALUE", help="with --guard: an option of the guard, e.g. action=flag (repeatable)")
    args = parser.parse_intermixed_args(argv)
    if args.lm_eval is not None:
        return _lm_eval(args)
    if args.task is not None:
        return _task(args)
    if args.overrides:
        raise ConfigError(f"{args.overrides[0]}: key=value overrides go with --task <name>")
    if args.guard is not None or args.guard_option:
        raise ConfigError("--guard: only with --task safety (the run and its base scored with the guard off and on)")
    if args.split in ("validation", "test"):
        raise ConfigError(f"--split {args.split}: only with --task; the run's corpus has the splits val and train")
    for path in args.text or []:
        if not path.is_file():
            raise ConfigError(f"--text {path}: no such file")
    result = evaluate(args.run_dir, checkpoint=args.checkpoint, split=args.split or "val", text=args.text, batches=args.batches, out=args.out)
    shown = ", ".join(f"{k} {result[k]:.4f}" for k in ("loss", "ppl", "bpb", "top1", "top5", "f1") if k in result)
    print(f"{result['split']}: {result['tokens']:,} tokens, step {result['step']}: {shown}")
    print(f"wrote {args.out or Path(result['run_dir']) / 'eval.json'}")
    return 0


def _lm_eval(args) -> int:
    from lmforge import harness

    tasks = [t.strip() for t in args.lm_eval.split(",") if t.strip()]
    if clash := [flag for flag, given in (("--text", args.text), ("--task", args.task), ("--split", args.split), ("--guard", args.guard)) if given]:
        raise ConfigError(f"--lm-eval with {clash[0]}: one kind of evaluation at a time; run lmforge eval twice")
    if not tasks:
        raise ConfigError("--lm-eval: name at least one task, e.g. --lm-eval hellaswag,arc_easy")
    if args.limit is not None and (args.limit <= 0 or (args.limit >= 1 and not args.limit.is_integer())):
        raise ConfigError(f"--limit {args.limit:g}: give a whole number of documents, or a share between 0 and 1")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: must be 1 or more")
    limit = int(args.limit) if args.limit is not None and args.limit >= 1 else args.limit
    results = harness.run_tasks(
        args.run_dir, tasks, include_path=args.include_path, limit=limit, batch_size=args.batch_size, checkpoint=args.checkpoint, out=args.out,
    )
    print(harness.table(results))
    print(f"wrote {args.out or Run.open(args.run_dir).dir / 'eval.json'}")
    return 0


def _task(args) -> int:
    from lmforge import task_eval

    for flag, value in (("--batch-size", args.batch_size), ("--max-tokens", args.max_tokens)):
        if value < 1:
            raise ConfigError(f"{flag} {value}: must be 1 or more")
    split = {"val": "validation", None: "test"}.get(args.split, args.split)
    result = task_eval.evaluate_task(
        args.run_dir, args.task, args.overrides, checkpoint=args.checkpoint, split=split, base=not args.no_base,
        max_tokens=args.max_tokens, batch_size=args.batch_size, out=args.out, guard=args.guard, guard_options=args.guard_option,
    )
    print(task_eval.table(result))
    if picture := result.get("confusion_matrix"):
        print(f"confusion matrix: {picture}")
    print(f"wrote {Path(args.out or Path(result['run_dir']) / f'eval-{args.task}') / 'eval.json'}")
    return 0
