"""The run wiring of ``lmforge train``, top to bottom.

check -> collect -> preprocess -> tokenize -> build -> fit -> write records, one
function each, in that order. Each data stage is cached (``lmforge.stages``) and returns
its directory, key and report; the training goes through the engine's entry point
(``lmforge.engine.fit``). ``train`` returns the final validation loss so that sweeps
can optimise it. What ``resume=`` must satisfy is checked first (``lmforge.resume``).
"""

from __future__ import annotations

import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lmforge import __version__, engine
from lmforge.errors import ConfigError, DataError
from lmforge.files import atomic_write, atomic_write_json, write_fault
from lmforge.hydra_bridge import RunSpec, Selected, check
from lmforge.loader import load_plugins
from lmforge.manifest import manifest
from lmforge.resume import resume_checkpoint
from lmforge.stages.interrupt import data_stage

log = logging.getLogger("lmforge")


@dataclass
class Done:
    """A finished data stage: where its output lives, its cache key and its report."""

    dir: Path
    key: str
    report: dict


@dataclass
class Built:
    """The model and its data, ready to fit."""

    model: Any
    data: Any  # the engine's data module
    val_ids: Any  # the validation tokens, for sample prompts
    sizes: dict  # parameters, train and validation tokens, bytes per token


def train(cfg: DictConfig, run_dir: Path, launch_dir: Path) -> float:
    spec = check(cfg)  # every key and type, before any work
    resume = resume_checkpoint(spec)  # the checkpoint reads, fits the config and has steps left, before any stage
    engine.seed(spec.seed)
    _write(run_dir, "config.yaml", OmegaConf.to_yaml(OmegaConf.create(spec.record())))
    from lmforge.stages.cache import StageCache

    cache = StageCache(spec.cache_dir)
    with data_stage("collect", spec.cache_dir):
        collected = collect(spec, cache, run_dir)
    with data_stage("preprocess", spec.cache_dir):
        preprocessed = preprocess(spec, cache, collected)
    with data_stage("tokenize", spec.cache_dir):
        tokenized, tokenizer = tokenize(spec, cache, preprocessed, run_dir)
    stages = {"collect": collected, "preprocess": preprocessed, "tokenize": tokenized}
    built = build(spec, tokenizer, tokenized)
    # a run stopped before its records (SIGTERM, Ctrl-C) still names its data: lmforge eval scores its splits
    atomic_write_json(run_dir / "manifest.json", run_manifest(spec, built, stages, launch_dir, complete=False))
    fitted = fit(spec, built, tokenizer, run_dir, resume)
    if fitted.is_global_zero:  # under DDP every rank trained and validated; rank 0 writes the records
        write_records(spec, built, fitted, stages, tokenizer, run_dir, launch_dir)
    return fitted.metrics["val_loss"]


def _write(run_dir: Path, name: str, text: str) -> None:
    try:
        atomic_write(run_dir / name, text)
    except OSError as exc:
        if message := write_fault(exc, "hydra.run.dir"):
            raise ConfigError(f"the run directory {run_dir}: {message}") from None
        raise


def _versions(*selected: Selected) -> dict[str, str]:
    return {"lmforge": __version__, **{s.provenance.distribution: s.provenance.version for s in selected}}


def collect(spec: RunSpec, cache, run_dir: Path) -> Done:
    from lmforge.stages.cache import stage_key
    from lmforge.stages.collect import collect as run_collect

    collector = spec.collector.build()
    log.info("collector: %s (%s)", collector.name, spec.collector.provenance)
    config = [collector.name, vars(spec.collector.config)]
    key = stage_key("collect", config, _versions(spec.collector), [], collector.cache_token())
    with cache.open("collect", key) as stage:
        report = stage.report() if stage.hit else run_collect(collector, stage.dir, progress=sys.stderr.isatty())
    if report.get("skipped_files"):  # the skipped inputs, by name, go beside the report
        shutil.copyfile(cache.path("collect", key) / report["skipped_files"], run_dir / "collection_skipped.jsonl")
        report = {**report, "skipped_files": "collection_skipped.jsonl"}
    atomic_write_json(run_dir / "collection_report.json", report)
    if report["documents"] == 0:
        keys = ", ".join(f"collector.{k}" for k in vars(spec.collector.config)) or "the collector option"
        skipped = report["counts"] or "none"
        named = f"; each file and its reason in {run_dir / report['skipped_files']}" if report.get("skipped_files") else ""
        raise DataError(f"collector={collector.name} produced no documents (skipped: {skipped}{named}): check {keys}")
    return Done(cache.path("collect", key), key, report)


def preprocess(spec: RunSpec, cache, collected: Done) -> Done:
    from lmforge.stages.cache import stage_key
    from lmforge.stages.preprocess import preprocess as run_preprocess

    steps = [s.build() for s in spec.steps]
    shown = [f"{s.name} ({s.provenance})" for s in spec.steps]
    log.info("preprocess: %s", " -> ".join(shown) or "none")
    configs = [[s.name, vars(s.config)] for s in spec.steps]
    token = "".join(s.cache_token() for s in steps)
    key = stage_key("preprocess", configs, _versions(*spec.steps), [collected.key], token)
    with cache.open("preprocess", key) as stage:
        if stage.hit:
            report = stage.report()
        else:
            report = run_preprocess(steps, collected.dir, stage.dir, spec.preprocess.n_workers, sys.stderr.isatty())
    if report["documents"] == 0:
        dropped = {k[len("dropped:"):]: n for k, n in report["counts"].items() if k.startswith("dropped:")}
        hint = "loosen the preprocess.steps options"
        for reason in sorted(dropped, key=dropped.get, reverse=True)[:1]:  # the threshold that dropped the most
            for i, step in enumerate(steps):
                if option := getattr(step, "drop_reasons", {}).get(reason):
                    value = getattr(step.config, option, None)
                    hint = (f"most were dropped as {reason} ({dropped[reason]:,}) by step {i} ({step.name}): loosen "
                            f"preprocess.steps[{i}].{option} (now {value}), e.g. preprocess.steps.{i}.{option}=..., or null for off")
                    break
        raise DataError(f"preprocessing dropped every document ({report['counts']}): {hint}")
    return Done(cache.path("preprocess", key), key, report)


def tokenize(spec: RunSpec, cache, preprocessed: Done, run_dir: Path):
    """The tokenize stage; returns it and the trained tokenizer, also copied into the run."""
    from lmforge.stages.cache import stage_key
    from lmforge.stages.tokenize import tokenize as run_tokenize

    tokenizer = spec.tokenizer.build()
    log.info("tokenizer: %s (%s)", tokenizer.name, spec.tokenizer.provenance)
    config = [tokenizer.name, vars(spec.tokenizer.config)]
    key = stage_key("tokenize", config, _versions(spec.tokenizer), [preprocessed.key], tokenizer.cache_token())
    with cache.open("tokenize", key) as stage:
        if stage.hit:
            tokenizer.load(stage.dir / "tokenizer.json")
        report = stage.report() if stage.hit else run_tokenize(tokenizer, preprocessed.dir, stage.dir)
    done = Done(cache.path("tokenize", key), key, report)
    shutil.copyfile(done.dir / "tokenizer.json", run_dir / "tokenizer.json")
    return done, tokenizer


def build(spec: RunSpec, tokenizer, tokenized: Done) -> Built:
    """The architecture at its size, and the token windows of the train and validation splits."""
    from lmforge.stages.tokenize import split_starts, split_tokens

    train_ids, val_ids, bytes_per_token = split_tokens(tokenized.dir, spec.data.val_fraction)
    shown = f"{len(train_ids):,}", f"{len(val_ids):,}", bytes_per_token
    log.info("data: %s train tokens, %s validation tokens, %.2f bytes/token", *shown)
    architecture = spec.model.build()
    model = architecture.build(vocab_size=tokenizer.vocab_size, max_seq_len=spec.data.seq_len)
    # model.attention=document: the batches carry each position's document id
    starts = split_starts(tokenized.dir, spec.data.val_fraction) if getattr(model, "supports_documents", False) else None
    data = engine.token_data(
        train_ids, val_ids, spec.data, objective=architecture.objective, tokenizer=tokenizer, seed=spec.seed,
        max_steps=spec.trainer.max_steps, accumulate=spec.trainer.accumulate_grad_batches, starts=starts,
    )
    log.info("model: %s (%s), %s parameters", architecture.name, spec.model.provenance, f"{model.num_params():,}")
    sizes = {"params": model.num_params(), "train_tokens": len(train_ids), "val_tokens": len(val_ids)}
    return Built(model, data, val_ids, {**sizes, "bytes_per_token": bytes_per_token})


def fit(spec: RunSpec, built: Built, tokenizer, run_dir: Path, resume: str | None) -> engine.Fitted:
    """Train with the chosen optimizer, schedule and logger, and the plugins' callbacks."""
    for part in (spec.optimizer, spec.scheduler, spec.logger):
        log.info("%s: %s (%s)", part.entry.cls.kind, part.name, part.provenance)
    callbacks = [c for extra in load_plugins()[0].hook.train_callbacks(run_dir=run_dir) for c in extra or []]
    return engine.fit(
        built.model, built.data, vocab_size=tokenizer.vocab_size, trainer=spec.trainer,
        optimizer=spec.optimizer.build(), scheduler=spec.scheduler.build(), loss=spec.loss, logger=spec.logger.build(),
        run_dir=run_dir, bytes_per_token=built.sizes["bytes_per_token"], resume=resume, callbacks=callbacks,
    )


def sample_prompts(spec: RunSpec, tokenizer, val_ids, n: int = 3, words: int = 4) -> list[str]:
    """``sample.prompts``, else the collector's own, else the first words of validation documents."""
    if spec.sample.prompts is not None:
        return list(spec.sample.prompts)
    prompts = spec.collector.build().sample_prompts()
    if prompts:
        return prompts
    sep = tokenizer.special_ids.get("eos", tokenizer.special_ids.get("sep"))
    ends = (val_ids == sep).nonzero()[0] if sep is not None else []
    starts, prompts = [0, *(int(i) + 1 for i in ends)], []
    for start in starts[: 4 * n]:
        window = [int(i) for i in val_ids[start : start + 64]]
        cut = sep in window
        text = tokenizer.decode(window[: window.index(sep)] if cut else window)
        found = text.split()
        head = " ".join(found[: min(words, len(found) - (not cut))])  # a cut-off window's last word may be partial
        if head and head + " " not in prompts:
            prompts.append(head + " ")
        if len(prompts) == n:
            break
    return prompts


def run_manifest(spec: RunSpec, built: Built, stages: dict[str, Done], launch_dir: Path, complete: bool) -> dict:
    """manifest.json: the stage keys, data reports, components and versions. ``complete`` is
    false while training runs, for a run that is stopped before its records."""
    data = {name: done.report for name, done in stages.items()} | {k: built.sizes[k] for k in ("train_tokens", "val_tokens")}
    keys = {name: done.key for name, done in stages.items()}
    chosen = ("collector", "tokenizer", "model", "optimizer", "scheduler", "logger")
    components = {group: getattr(spec, group).name for group in chosen}
    components["preprocess"] = [s.name for s in spec.steps]
    record = manifest(seed=spec.seed, stages=keys, data=data, launch_dir=launch_dir, components=components)
    return {**record, "complete": complete}


def write_records(
    spec: RunSpec, built: Built, fitted: engine.Fitted, stages: dict[str, Done], tokenizer, run_dir: Path,
    launch_dir: Path,
) -> None:
    """samples.txt, summary.json, manifest.json and curves.png: what a finished run leaves behind."""
    prompts = sample_prompts(spec, tokenizer, built.val_ids)
    atomic_write(run_dir / "samples.txt", engine.sample(built.model, tokenizer, prompts, spec.sample, fitted.device))
    sizes = built.sizes
    summary = {
        **fitted.metrics,  # val_loss (nats), val_ppl, val_bpb, val_top1, val_top5, val_precision, val_recall, val_f1
        "tokens_seen": fitted.tokens,
        "tokens_per_s": fitted.tokens_per_s,
        "train_seconds": fitted.seconds,
        "params": sizes["params"],
        "steps": fitted.steps,
        "skipped_steps": fitted.skipped_steps,
        # runs with other preprocessing or tokenizers compare by val_bpb; this says which they were
        "signature": {
            "preprocess": [s.name for s in spec.steps], "preprocess_key": stages["preprocess"].key,
            "tokenizer": spec.tokenizer.name, "bytes_per_token": sizes["bytes_per_token"],
        },
        "device": fitted.device,
        "precision": fitted.precision,
    }
    atomic_write_json(run_dir / "summary.json", summary)
    atomic_write_json(run_dir / "manifest.json", run_manifest(spec, built, stages, launch_dir, complete=True))
    if (run_dir / "metrics.csv").is_file():
        engine.plot_curves(run_dir / "metrics.csv", run_dir / "curves.png")
    log.info(
        "val loss %.4f, perplexity %.2f, %.0f tokens/s; run directory %s",
        fitted.metrics["val_loss"], fitted.metrics["val_ppl"], fitted.tokens_per_s, run_dir,
    )
