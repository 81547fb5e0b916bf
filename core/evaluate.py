"""``lmforge eval <run dir>``: recompute a trained model's metrics and write ``eval.json``.

The run directory holds everything needed: ``config.yaml`` (the resolved config),
``tokenizer.json``, ``manifest.json`` (the cache keys of its data stages) and
``checkpoints/``. By default the validation split is read back from the run's cached
tokenize stage; ``--split train`` reads the training split instead, and ``--text`` scores
any text files after the run's own preprocessing steps and tokenizer, so the numbers
(bits per byte included) compare with the run's.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

from omegaconf import OmegaConf

from lmforge import tokens
from lmforge.contracts import Document
from lmforge.errors import ConfigError, DataError
from lmforge.hydra_bridge import check
from lmforge.stages import StageCache, atomic_write_json

log = logging.getLogger("lmforge")


def _read_run(run_dir: Path):
    missing = [f for f in ("config.yaml", "tokenizer.json", "manifest.json") if not (run_dir / f).is_file()]
    if missing:
        raise ConfigError(f"{run_dir} is not a finished lmforge run directory: {', '.join(missing)} missing; pass the directory `lmforge train` wrote")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    return cfg, check(cfg), json.loads((run_dir / "manifest.json").read_text())


def _checkpoint(run_dir: Path, given: str | None) -> Path:
    path = Path(given) if given else run_dir / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}: pass --checkpoint <file.ckpt>, or a run directory whose training finished")
    return path


def _split_ids(cfg, spec, manifest: dict, split: str):
    """Token ids of one split of the run's cached corpus, and its bytes per token."""
    tok_dir = StageCache(cfg.cache_dir).path("tokenize", manifest["stages"]["tokenize"])
    if not (tok_dir / "report.json").is_file():
        raise DataError(
            f"the run's tokenized corpus is no longer in the stage cache ({tok_dir}): rerun lmforge train with the "
            f"run's config.yaml and cache_dir to rebuild it, or score text files with --text"
        )
    train_ids, val_ids, bytes_per_token = tokens.split_tokens(tok_dir, spec.data.val_fraction)
    return (val_ids if split == "val" else train_ids), bytes_per_token


def _text_ids(spec, tokenizer, paths: list[Path]):
    """Text files as the run saw its corpus: its preprocessing steps, its tokenizer, a separator per document."""
    import numpy as np

    docs = [Document(id=str(p), text=p.read_text(encoding="utf-8", errors="replace"), source="eval") for p in paths]
    stats: Counter = Counter()
    for step_spec in spec.steps:
        step = step_spec.build()
        step.setup()
        docs = list(step.process(docs, stats))
    if not docs:
        raise DataError(f"the run's preprocessing dropped every --text file ({dict(stats)}): score other text")
    sep = tokenizer.special_ids.get("eos", tokenizer.special_ids.get("sep"))
    ids = [i for encoded in tokenizer.encode_batch([d.text for d in docs]) for i in [*encoded, *([sep] if sep is not None else [])]]
    nbytes = sum(len(d.text.encode("utf-8")) for d in docs)
    return np.asarray(ids, dtype=np.int64), nbytes / max(len(ids), 1)


def evaluate(run_dir: Path, *, checkpoint: str | None = None, split: str = "val", text: list[Path] | None = None, batches: int | None = None, out: Path | None = None) -> dict:
    cfg, spec, manifest = _read_run(run_dir)  # a wrong directory fails before torch is imported
    ckpt = _checkpoint(run_dir, checkpoint)
    import dataclasses

    import lightning as L
    import torch

    from lmforge.plugins.training import runtime
    from lmforge.plugins.training.data import Objective, TokenDataModule
    from lmforge.plugins.training.module import LMModule

    tokenizer = spec.tokenizer.build()
    tokenizer.load(run_dir / "tokenizer.json")
    ids, bytes_per_token = _text_ids(spec, tokenizer, text) if text else _split_ids(cfg, spec, manifest, split)

    window = spec.data.seq_len + 1
    if len(ids) < window:
        raise DataError(f"{'--text' if text else f'the {split} split'} gives {len(ids):,} tokens, fewer than one window of data.seq_len+1={window}: score more text")
    architecture = spec.model.build()
    objective = Objective(architecture.objective, tokenizer.vocab_size, tokenizer.special_ids, tokenizer.name)
    data_cfg = spec.data if batches is None else dataclasses.replace(spec.data, val_batches=batches)
    data_cfg = dataclasses.replace(data_cfg, batch_size=max(1, min(data_cfg.batch_size, (len(ids) - 1) // (data_cfg.seq_len + 1))))
    # the scored tokens fill the validation side; the training side only has to pass the size check
    datamodule = TokenDataModule(ids, ids, data_cfg, 1, 1, int(cfg.seed), objective)
    model = architecture.build(vocab_size=tokenizer.vocab_size, max_seq_len=spec.data.seq_len)
    module = LMModule(model, spec.optimizer, spec.scheduler, spec.loss, spec.trainer, tokenizer.vocab_size, bytes_per_token)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])

    trainer = L.Trainer(
        accelerator=spec.trainer.accelerator, devices=1, precision=runtime.precision(spec.trainer.precision),
        logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )
    metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    result = {
        "run_dir": str(run_dir),
        "checkpoint": str(ckpt),
        "step": int(state.get("global_step", 0)),
        "split": "text" if text else split,
        "text": [str(p) for p in text] if text else None,
        "tokens": int(len(ids)),
        "bytes_per_token": bytes_per_token,
        "device": str(trainer.strategy.root_device),
        **{f"{k[4:]}": float(v) for k, v in metrics.items() if k.startswith("val/")},
    }
    atomic_write_json(out or run_dir / "eval.json", result)
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lmforge eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a directory written by lmforge train")
    parser.add_argument("--checkpoint", help="a .ckpt file; default <run dir>/checkpoints/last.ckpt")
    parser.add_argument("--split", choices=("val", "train"), default="val", help="which split of the run's corpus to score")
    parser.add_argument("--text", type=Path, nargs="+", help="score these text files instead of a split")
    parser.add_argument("--batches", type=int, help="batches to score; 0 for the whole split (default: the run's data.val_batches)")
    parser.add_argument("--out", type=Path, help="where to write the metrics; default <run dir>/eval.json")
    args = parser.parse_args(argv)
    for path in args.text or []:
        if not path.is_file():
            raise ConfigError(f"--text {path}: no such file")
    result = evaluate(args.run_dir.resolve(), checkpoint=args.checkpoint, split=args.split, text=args.text, batches=args.batches, out=args.out)
    shown = ", ".join(f"{k} {result[k]:.4f}" for k in ("loss", "ppl", "bpb", "top1", "top5", "f1") if k in result)
    print(f"{result['split']}: {result['tokens']:,} tokens, step {result['step']}: {shown}")
    print(f"wrote {args.out or args.run_dir / 'eval.json'}")
    return 0
