"""The run wiring of ``lmforge train``, top to bottom.

collect -> preprocess -> tokenize -> data module -> model -> callbacks and loggers ->
trainer -> fit -> evaluate. Each data stage is cached (``lmforge.stages``); the function
returns the final validation loss so that sweeps can optimise it.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lmforge import __version__, corpus, tokens
from lmforge.errors import ConfigError, DataError
from lmforge.hydra_bridge import Selected, check
from lmforge.loader import load_plugins
from lmforge.manifest import manifest
from lmforge.stages import StageCache, atomic_write_json, atomic_write_text, stage_key

log = logging.getLogger("lmforge")


def _versions(*selected: Selected) -> dict[str, str]:
    return {"lmforge": __version__, **{s.entry.provenance.distribution: s.entry.provenance.version for s in selected}}


def _resume_path(resume: str | None) -> str | None:
    if not resume:
        return None
    path = Path(resume).expanduser()
    ckpt = path / "checkpoints" / "last.ckpt" if path.is_dir() else path
    if not ckpt.is_file():
        raise ConfigError(f"resume={resume}: no checkpoint at {ckpt}; pass a run directory holding checkpoints/last.ckpt or a .ckpt file")
    return str(ckpt)


def train(cfg: DictConfig, run_dir: Path, launch_dir: Path) -> float:
    spec = check(cfg)  # every key and type, before any work
    ckpt_path = _resume_path(cfg.resume)
    import lightning as L

    from lmforge.plugins.training import checkpointing, runtime
    from lmforge.plugins.training.data import Objective, TokenDataModule
    from lmforge.plugins.training.metrics import Throughput
    from lmforge.plugins.training.module import LMModule

    L.seed_everything(spec_seed := int(cfg.seed), workers=True)
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    cache = StageCache(cfg.cache_dir)

    collector = spec.collector.build()
    log.info("collector: %s (%s)", collector.name, spec.collector.entry.provenance)
    collect_key = stage_key("collect", [collector.name, vars(spec.collector.config)], _versions(spec.collector), [], collector.cache_token())
    with cache.open("collect", collect_key) as stage:
        report = stage.report() if stage.hit else corpus.collect(collector, stage.dir, progress=sys.stderr.isatty())
    atomic_write_json(run_dir / "collection_report.json", report)
    if report["documents"] == 0:
        keys = ", ".join(f"collector.{k}" for k in vars(spec.collector.config)) or "the collector option"
        raise DataError(f"collector={collector.name} produced no documents (skipped: {report['counts'] or 'none'}): check {keys}")

    steps = [s.build() for s in spec.steps]
    log.info("preprocess: %s", " -> ".join(s.name for s in steps) or "none")
    step_cfgs = [[s.name, vars(s.config)] for s in spec.steps]
    pre_key = stage_key("preprocess", step_cfgs, _versions(*spec.steps), [collect_key], "".join(s.cache_token() for s in steps))
    with cache.open("preprocess", pre_key) as stage:
        pre_report = stage.report() if stage.hit else corpus.preprocess(steps, cache.path("collect", collect_key), stage.dir, spec.preprocess.n_workers, sys.stderr.isatty())
    if pre_report["documents"] == 0:
        raise DataError(f"preprocessing dropped every document ({pre_report['counts']}): loosen the preprocess.steps options")

    tokenizer = spec.tokenizer.build()
    log.info("tokenizer: %s (%s)", tokenizer.name, spec.tokenizer.entry.provenance)
    tok_key = stage_key("tokenize", [tokenizer.name, vars(spec.tokenizer.config)], _versions(spec.tokenizer), [pre_key], tokenizer.cache_token())
    with cache.open("tokenize", tok_key) as stage:
        if stage.hit:
            tokenizer.load(stage.dir / "tokenizer.json")
        tok_report = stage.report() if stage.hit else tokens.tokenize(tokenizer, cache.path("preprocess", pre_key), stage.dir)
    tok_dir = cache.path("tokenize", tok_key)
    shutil.copyfile(tok_dir / "tokenizer.json", run_dir / "tokenizer.json")

    train_ids, val_ids, bytes_per_token = tokens.split_tokens(tok_dir, spec.data.val_fraction)
    trainer_cfg = spec.trainer
    architecture = spec.model.build()
    objective = Objective(architecture.objective, tokenizer.vocab_size, tokenizer.special_ids, tokenizer.name)
    datamodule = TokenDataModule(train_ids, val_ids, spec.data, trainer_cfg.max_steps, trainer_cfg.accumulate_grad_batches, spec_seed, objective)
    log.info("data: %s train tokens, %s validation tokens, %.2f bytes/token", f"{len(train_ids):,}", f"{len(val_ids):,}", bytes_per_token)

    model = architecture.build(vocab_size=tokenizer.vocab_size, max_seq_len=spec.data.seq_len)
    log.info("model: %s (%s), %s parameters", architecture.name, spec.model.entry.provenance, f"{model.num_params():,}")
    module = LMModule(model, spec.optimizer, spec.scheduler, spec.loss, trainer_cfg, tokenizer.vocab_size, bytes_per_token)

    throughput = Throughput(spec.data.batch_size * spec.data.seq_len, model.flops_per_token(spec.data.seq_len))
    callbacks = runtime.callbacks(run_dir, trainer_cfg, logging=spec.logger.name != "none") + [throughput]
    for extra in load_plugins()[0].hook.train_callbacks(run_dir=run_dir):
        callbacks += list(extra or [])
    trainer = L.Trainer(**runtime.trainer_kwargs(trainer_cfg, model), callbacks=callbacks, logger=runtime.logger(spec.logger, run_dir), default_root_dir=run_dir)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except checkpointing.SIGTERMException:
        raise SystemExit(checkpointing.SIGTERM_EXIT) from None  # last.ckpt holds the step it stopped at

    val_metrics = {f"val_{k[4:]}": float(v) for k, v in trainer.validate(module, datamodule=datamodule, verbose=False)[0].items() if k.startswith("val/")}
    val_loss = val_metrics["val_loss"]
    if not trainer.is_global_zero:  # under DDP every rank trained and validated; rank 0 writes the records
        return val_loss
    # Lightning hands the module back on the CPU after fit and validate; sample where it trained
    device = trainer.strategy.root_device
    samples = runtime.samples(model.to(device), tokenizer, spec.sample, device)
    atomic_write_text(run_dir / "samples.txt", samples)
    summary = {
        **val_metrics,  # val_loss (nats), val_ppl, val_bpb, val_top1, val_top5, val_precision, val_recall, val_f1
        "tokens_seen": throughput.tokens,
        "tokens_per_s": throughput.tokens_per_second,
        "train_seconds": throughput.seconds,
        "params": model.num_params(),
        "steps": trainer.global_step,
        "skipped_steps": int(module.skipped_steps),
        # runs with other preprocessing or tokenizers compare by val_bpb; this says which they were
        "signature": {"preprocess": [s.name for s in spec.steps], "preprocess_key": pre_key, "tokenizer": tokenizer.name, "bytes_per_token": bytes_per_token},
        "device": str(device),
        "precision": str(trainer.precision),
    }
    atomic_write_json(run_dir / "summary.json", summary)
    data = {"collect": report, "preprocess": pre_report, "tokenize": tok_report, "train_tokens": len(train_ids), "val_tokens": len(val_ids)}
    stages = {"collect": collect_key, "preprocess": pre_key, "tokenize": tok_key}
    components = {g: getattr(spec, g).name for g in ("collector", "tokenizer", "model")} | {"preprocess": [s.name for s in spec.steps]}
    atomic_write_json(run_dir / "manifest.json", manifest(seed=spec_seed, stages=stages, data=data, launch_dir=launch_dir, components=components))
    log.info("val loss %.4f, perplexity %.2f, %.0f tokens/s; run directory %s", val_loss, summary["val_ppl"], summary["tokens_per_s"], run_dir)
    return val_loss
