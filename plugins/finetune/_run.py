"""The wiring of ``lmforge finetune``, top to bottom.

check -> open the base run -> tokenizer (the task's special tokens added) -> examples ->
windows -> model (embeddings resized; LoRA adapters) -> fit -> task metrics -> records.
The base run is opened through ``lmforge.runs.Run``: its weights and tokenizer are the
starting point, never rebuilt here. The fine-tuned run's ``config.yaml`` is a run config
that ``Run.open`` reads like any other (so ``lmforge chat``, ``serve``, ``eval`` and
``export`` open it); ``finetune.yaml`` records the fine-tuning's own config, and
``manifest.json`` points at the base run's manifest. Returns the held-out target loss,
what a sweep minimises.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lmforge import engine
from lmforge.errors import ConfigError, DataError
from lmforge.files import atomic_write, atomic_write_json
from lmforge.plugins.finetune._config import FinetuneSpec, check

log = logging.getLogger("lmforge")

TEMPLATE_FILE = "chat_template"  # what lmforge chat and serve read from a run (plugins/deploy/_chat.py)


def finetune(cfg: DictConfig, run_dir: Path, launch_dir: Path) -> float:
    spec = check(cfg)
    base = open_base(spec.base)
    task = spec.task.build()
    log.info("base: %s (model=%s); task: %s (%s)", base.dir, base.spec.model.name, task.name, spec.task.provenance)
    objective = base.spec.model.entry.cls.objective
    if task.type in ("generate", "preference") and objective != "causal":
        raise ConfigError(
            f"task={task.name} is generative (the model writes a reply after a prompt), but base={spec.base} is a "
            f"{objective} language model (model={base.spec.model.name}), which cannot generate text: fine-tune a causal "
            f"base (a run of model=transformer or model=rnn), or choose a classify task"
        )
    seq_len = spec.finetune.seq_len or base.spec.data.seq_len
    if seq_len > base.spec.data.seq_len:
        raise ConfigError(
            f"finetune.seq_len={seq_len}: longer than the base run's context (data.seq_len={base.spec.data.seq_len}), "
            f"which sizes its position table: set finetune.seq_len={base.spec.data.seq_len} or less"
        )
    if task.type == "preference":
        aligned_format(base, task, spec.base)
    run_spec = spec.as_run_spec(base.spec)
    resume = resume_from(spec, run_spec)
    engine.seed(spec.seed)
    atomic_write(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(run_spec.record())))
    atomic_write(run_dir / "finetune.yaml", OmegaConf.to_yaml(OmegaConf.create(spec.record())))

    tokenizer, added = extend_tokenizer(base, task)
    tokenizer.save(run_dir / "tokenizer.json")
    splits = load_splits(task)
    model = base.model(checkpoint=base.default_checkpoint, vocab_size=tokenizer.vocab_size)
    if added:
        log.info(
            "tokenizer: added %d special token(s) task=%s needs (%s); embeddings%s resized from %d to %d rows",
            len(added), task.name, " ".join(added), " and output head" if _has_head(model, tokenizer.vocab_size) else "",
            base.tokenizer.vocab_size, tokenizer.vocab_size,
        )
    if template := chat_template(task):
        atomic_write(run_dir / TEMPLATE_FILE, template)

    callbacks, base_loss, base_scores = [], None, None
    if task.type == "classify":
        from lmforge.plugins.finetune import _classify

        prepared = _classify.prepare(model, tokenizer, task, splits, objective=objective, seq_len=seq_len,
                                     batch_size=spec.finetune.batch_size, seed=spec.seed)
        trained, data, vocab, counts = prepared.model, prepared.data, prepared.vocab_size, prepared.counts
    elif task.type == "preference":
        from lmforge.plugins.finetune import _preference

        base_scores = preference_base_scores(spec, task, model, tokenizer, splits["validation"])
        callbacks = method_callbacks(spec, model, tokenizer.vocab_size)  # LoRA on the policy, before it is wrapped
        prepared = _preference.prepare(model, tokenizer, task, splits, spec, seq_len=seq_len, run_dir=run_dir, resumed=resume,
                                       base_checkpoint=str(base.default_checkpoint), device=_device(spec.trainer.accelerator))
        base_loss = prepared.base.pop("loss")  # the preference loss at the start: ln 2 for dpo
        base_scores.update(prepared.base)
        trained, data, vocab, counts = prepared.model, prepared.data, prepared.vocab_size, prepared.counts
        callbacks += prepared.callbacks
    else:
        data, counts = windows(spec, task, tokenizer, splits, seq_len, model)
        trained, vocab, prepared = model, tokenizer.vocab_size, None
    if task.type != "preference":
        callbacks = method_callbacks(spec, trained, tokenizer.vocab_size)
    if task.type == "generate":
        base_loss = held_out_loss(spec, trained, data, vocab)
        log.info("base model's held-out target loss: %.4f", base_loss)
    params = sum(p.numel() for p in trained.parameters())
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    log.info("method: %s, %s of %s parameters trained", spec.finetune.method, f"{trainable:,}", f"{params:,}")

    manifest = run_manifest(spec, base, task, counts, launch_dir, complete=False)
    atomic_write_json(run_dir / "manifest.json", manifest)
    for part in (spec.optimizer, spec.scheduler, spec.logger):
        log.info("%s: %s (%s)", part.entry.cls.kind, part.name, part.provenance)
    from lmforge.loader import load_plugins

    callbacks += [c for extra in load_plugins()[0].hook.train_callbacks(run_dir=run_dir) for c in extra or []]
    trained.train()  # Run.model hands the base back in eval mode
    fitted = engine.fit(
        trained, data, vocab_size=vocab, trainer=spec.trainer, optimizer=spec.optimizer.build(),
        scheduler=spec.scheduler.build(), loss=spec.loss, logger=spec.logger.build(), run_dir=run_dir, resume=resume,
        callbacks=callbacks,
    )
    if not fitted.is_global_zero:
        return fitted.metrics["val_loss"]
    if task.type == "preference":
        trained = trained.policy  # the architecture: what the checkpoints hold and the metrics decode with
    if spec.finetune.method == "lora":
        from lmforge.plugins.finetune import _lora

        trained = _lora.merge(trained)
    trained = trained.to(fitted.device)
    if task.type == "preference":
        from lmforge.plugins.finetune import _preference

        scores, baseline = task_scores(spec, task, trained, tokenizer, spread(splits["validation"], spec.finetune.eval_examples), fitted, None, run_dir)
        scores = {**_preference.scores(fitted.metrics), **scores}
        fitted.metrics = {k: v for k, v in fitted.metrics.items() if not k.startswith(TWO_CLASS)}
    elif prepared is not None:
        from lmforge.plugins.finetune import _classify

        _classify.save_head(run_dir, prepared.head)
        scores = _classify.validation_scores(trained, tokenizer, task, splits["validation"], prepared.head, device=fitted.device)
        baseline = task.score(task.baseline(splits["validation"]), splits["validation"])
    else:
        scores, baseline = task_scores(spec, task, trained, tokenizer, splits["validation"], fitted, base_loss, run_dir)
    sizes = {"params": params, "trainable_params": trainable, "examples": {name: len(found) for name, found in splits.items()}, "data": counts}
    write_records(spec, base, task, fitted, scores, baseline, base_loss, sizes, run_dir, launch_dir, base_scores)
    return fitted.metrics["val_loss"]


def write_records(spec, base, task, fitted, scores: dict, baseline: dict, base_loss, sizes: dict, run_dir: Path, launch_dir: Path,
                  base_scores: dict | None = None) -> None:
    """summary.json, manifest.json (complete) and curves.png: what a finished fine-tune leaves behind."""
    summary = {
        **fitted.metrics,  # val_loss: the held-out loss on target tokens only
        "base_val_loss": base_loss,  # the base model's, on the same windows, before training
        "task": task.name,
        "metrics": scores,  # the task's metrics on the validation split
        "baseline": baseline,  # the task's trivial baseline on the same examples
        **({"base_metrics": base_scores} if base_scores is not None else {}),  # the base model's task metrics, before training
        "method": spec.finetune.method,
        "tokens_seen": fitted.tokens,
        "tokens_per_s": fitted.tokens_per_s,
        "train_seconds": fitted.seconds,
        "steps": fitted.steps,
        "skipped_steps": fitted.skipped_steps,
        "device": fitted.device,
        "precision": fitted.precision,
        **sizes,  # params, trainable_params, examples per split, data: windows, truncated, dropped
    }
    atomic_write_json(run_dir / "summary.json", summary)
    atomic_write_json(run_dir / "manifest.json", run_manifest(spec, base, task, sizes["data"], launch_dir, complete=True))
    if (run_dir / "metrics.csv").is_file():
        engine.plot_curves(run_dir / "metrics.csv", run_dir / "curves.png")
    shown = ", ".join(f"{k} {v:.4f}" + (f" (base {base_scores[k]:.4f})" if k in (base_scores or {}) else "") for k, v in scores.items())
    log.info("val loss %.4f (base %s); %s (baseline: %s); run directory %s", fitted.metrics["val_loss"],
             "n/a" if base_loss is None else f"{base_loss:.4f}", shown or "no task metrics",
             ", ".join(f"{k} {v:.4f}" for k, v in baseline.items() if v is not None) or "none", run_dir)


TWO_CLASS = ("val_top1", "val_top5", "val_precision", "val_recall", "val_f1", "val_ppl")  # the [z, 0] logits' artifacts


def preference_base_scores(spec: FinetuneSpec, task, model, tokenizer, examples: list) -> dict:
    """The base model's ``win_rate`` on the validation pairs, decoded before any training."""
    n = min(spec.finetune.eval_examples, len(examples))
    if n == 0:
        return {}
    device = _device(spec.trainer.accelerator)
    chosen = spread(examples, n)
    replies = decode(model.to(device), tokenizer, chosen, spec.finetune.max_new_tokens, stop=task.special_tokens)
    model.cpu()
    return {k: float(v) for k, v in task.score(replies, chosen).items()}


def spread(examples: list, n: int) -> list:
    """``n`` examples taken evenly through the split (a file grouped by kind is sampled across its kinds)."""
    if n >= len(examples):
        return list(examples)
    return [examples[i * len(examples) // n] for i in range(n)]


def _device(accelerator: str) -> str:
    import torch

    return "cuda" if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu"


def open_base(given: str):
    """The base run, opened through ``Run``; a missing or unfinished one is an error naming ``base=``."""
    from lmforge.runs import Run, RunError

    try:
        base = Run.open(given)
        base.read_checkpoint()  # its weights read, before any work
    except RunError as exc:
        raise ConfigError(f"base={given}: {exc}") from None
    if Path(given).expanduser().is_dir() and base.summary is None:
        raise ConfigError(
            f"base={given}: the run did not finish (no summary.json): finish it with lmforge train resume={given}, or "
            f"pass one of its checkpoints to start from that one, base={base.checkpoint()}"
        )
    return base


def extend_tokenizer(base, task) -> tuple[Any, list[str]]:
    """A copy of the base tokenizer with the task's special tokens it lacks added, and those tokens."""
    tokenizer = copy.deepcopy(base.tokenizer)
    backend = getattr(tokenizer, "tok", None)
    missing = [t for t in task.special_tokens if not _known(tokenizer, backend, t)]
    if not missing:
        return tokenizer, []
    if backend is None or not hasattr(backend, "add_special_tokens"):
        raise ConfigError(
            f"base={base.dir}: its tokenizer (tokenizer={base.spec.tokenizer.name}) lacks the token(s) "
            f"{', '.join(missing)} that task={task.name} needs, and it cannot be extended (it is not backed by a Hugging "
            f"Face tokenizers model): fine-tune a base whose tokenizer is (bpe, wordpiece, unigram, word, byte), or set "
            f"task.template to one that does not use them"
        )
    backend.add_special_tokens(missing)
    return tokenizer, missing


def aligned_format(base, task, given: str) -> None:
    """A preference task lays its pairs out as the base chats: with the base run's chat
    template when ``task.template`` is "" and the base has one (a chat fine-tune), and never
    with special tokens its tokenizer lacks (new, untrained tokens would be all the
    preference could learn from: fine-tune on the format first)."""
    from lmforge import tasks

    own = base.dir / TEMPLATE_FILE
    if not task.config.template and own.is_file():
        task.config.template = own.read_text(encoding="utf-8")
        log.info("task.template: the chat template of base=%s (%s)", given, own)
    sample = "".join(s.text for s in tasks.render_chat(tasks.template_of(task), [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]))
    backend = getattr(base.tokenizer, "tok", None)
    missing = [t for t in task.special_tokens if t in sample and not _known(base.tokenizer, backend, t)]
    if missing:
        raise ConfigError(
            f"base={given}: its tokenizer (tokenizer={base.spec.tokenizer.name}) has no token for {', '.join(missing)}, which "
            f"task.template lays the pairs out with, so the base has never seen this format and task={task.name} would align "
            f"untrained tokens. Fine-tune the base on the format first (lmforge finetune task=chat base={given}) and align "
            f"that run, or set task.template to a chat template written in the base's own text"
        )


def _known(tokenizer, backend, token: str) -> bool:
    if backend is not None and hasattr(backend, "token_to_id"):
        return backend.token_to_id(token) is not None
    return len(tokenizer.encode_batch([token])[0]) == 1


def _has_head(model, vocab_size: int) -> bool:
    import torch

    return any(isinstance(m, torch.nn.Linear) and m.out_features == vocab_size for m in model.modules())


def resume_from(spec: FinetuneSpec, run_spec) -> str | None:
    """The checkpoint ``resume=`` continues from, checked before any work (as ``lmforge train``
    checks it), and the run it belongs to fine-tuned the same base on the same task."""
    if not spec.resume:
        return None
    from lmforge.resume import resume_checkpoint

    ckpt = resume_checkpoint(run_spec)
    recorded = Path(ckpt).parent.parent / "finetune.yaml"
    if recorded.is_file():
        before = OmegaConf.to_container(OmegaConf.load(recorded))
        now = spec.record()
        keys = {"base": lambda r: str(Path(r["base"]).expanduser().resolve()), "task": lambda r: r["task"]["name"],
                **{f"finetune.{k}": (lambda r, k=k: r["finetune"].get(k)) for k in ("method", "packing", "seq_len", "lora_r", "lora_targets",
                                                                                  "preference", "beta", "simpo_gamma", "sft_weight")}}
        changed = [f"{k}={get(now)} (the checkpoint's run had {get(before)})" for k, get in keys.items() if get(now) != get(before)]
        if changed:
            raise ConfigError(f"resume={spec.resume}: {'; '.join(changed)}. Resume with the run's values, or start a new fine-tune without resume=")
    return ckpt


def load_splits(task) -> dict[str, list]:
    """The task's examples by split (``train``, ``validation``, ``test``), through ``lmforge.tasks.load``."""
    from lmforge import tasks

    data = tasks.load(task)
    log.info("examples: %s", data.summary())
    for notice in data.notices:
        log.warning("%s", notice)
    return data.splits


def chat_template(task) -> str | None:
    """The chat template a task trains with: a task over OpenAI ``messages`` renders them with one."""
    if own := getattr(task, "chat_template", None):
        return own
    if "messages" in task.fields or task.type == "preference":  # a preference task lays its pairs out with one
        from lmforge import tasks

        return tasks.template_of(task)
    return None


def windows(spec: FinetuneSpec, task, tokenizer, splits: dict[str, list], seq_len: int, model):
    """The training and validation windows of a generative task, and their counts."""
    from lmforge.plugins.finetune import _data

    special = tokenizer.special_ids
    eos = special.get("eos")
    pad = special.get("pad", eos if eos is not None else 0)
    overlong = getattr(task.config, "overlong", "truncate")
    if overlong not in ("truncate", "drop"):
        raise ConfigError(f"task.overlong={overlong}: must be truncate or drop")
    packed, counts = {}, {}
    for name in ("train", "validation"):
        if not splits.get(name):
            raise DataError(f"task={task.name}: the {name} split holds no example: give the task more data or change task.split")
        encoded = _data.encode(splits[name], tokenizer, eos)
        packed[name] = _data.pack(encoded, seq_len, pad_id=pad, packing=spec.finetune.packing, overlong=overlong, seed=spec.seed)
        counts[name] = packed[name].counts
        c = counts[name]
        log.info(
            "%s split: %d examples in %d windows of %d (%s), %d target tokens; %d truncated, %d dropped as longer than "
            "the window (task.overlong=%s)", name, c["examples"], c["windows"], seq_len,
            "packed" if spec.finetune.packing else "one per window", c["target_positions"], c["truncated"], c["dropped"], overlong,
        )
    if not len(packed["train"].inputs):
        raise DataError(f"task={task.name}: no training example is left (all {counts['train']['dropped']} dropped as overlong): set task.overlong=truncate or raise finetune.seq_len")
    # model.attention=document: each position's example goes with the batch, so no example attends to another
    documents = (packed["train"].documents, packed["validation"].documents) if getattr(model, "supports_documents", False) else None
    data = engine.window_data(packed["train"].pairs, packed["validation"].pairs, batch_size=spec.finetune.batch_size,
                              seed=spec.seed, max_steps=spec.trainer.max_steps, accumulate=spec.trainer.accumulate_grad_batches,
                              val_batches=spec.finetune.val_batches, what="finetune.batch_size", documents=documents)
    return data, counts


def held_out_loss(spec: FinetuneSpec, model, data, vocab_size: int) -> float:
    """The model's loss on the validation windows' target tokens, before any training. The
    trainer's device banner is left to the training's own trainer, so it shows once."""
    banner = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = banner.level
    banner.setLevel(logging.WARNING)
    try:
        metrics, _ = engine.validate(model, data, vocab_size=vocab_size, loss=spec.loss,
                                     accelerator=spec.trainer.accelerator, precision=spec.trainer.precision)
    finally:
        banner.setLevel(level)
    return metrics["loss"]


def method_callbacks(spec: FinetuneSpec, model, vocab_size: int) -> list:
    if spec.finetune.method != "lora":
        return []
    from lmforge.plugins.finetune import _lora

    f = spec.finetune
    chosen = _lora.apply(model if not hasattr(model, "lm") else model.lm, r=f.lora_r, alpha=f.lora_alpha,
                         dropout=f.lora_dropout, targets=f.lora_targets, vocab_size=vocab_size)
    log.info("lora: rank %d, alpha %g, on %d linear layers (%s...)", f.lora_r, f.lora_alpha, len(chosen), ", ".join(chosen[:3]))
    return [_lora.MergeOnSave()]


def task_scores(spec, task, model, tokenizer, examples: list, fitted, base_loss, run_dir: Path) -> tuple[dict, dict]:
    """The task's metrics on the validation examples, and its baseline's: decoded greedily for
    generative metrics; a metric named ``...loss`` is the held-out target loss (the base model's
    for the baseline)."""
    losses = [m for m in task.metrics if m.endswith("loss")]
    scores = {m: fitted.metrics["val_loss"] for m in losses}
    baseline = {m: base_loss for m in losses}
    n = min(spec.finetune.eval_examples, len(examples))
    if n == 0 or len(losses) == len(task.metrics):
        return scores, baseline
    chosen = examples[:n]
    log.info("decoding %d validation examples greedily for %s", n, ", ".join(m for m in task.metrics if m not in losses))
    predictions = decode(model, tokenizer, chosen, spec.finetune.max_new_tokens, stop=task.special_tokens)
    logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score's "Using default tokenizer." on every call
    scores.update({k: float(v) for k, v in task.score(predictions, chosen).items() if k not in losses})
    baseline.update({k: float(v) for k, v in task.score(task.baseline(chosen), chosen).items() if k not in losses})
    lines = [json.dumps({"id": ex.id, "prompt": ex.prompt, "reference": ex.reference, "prediction": p}, ensure_ascii=False) for ex, p in zip(chosen, predictions)]
    atomic_write(run_dir / "predictions.jsonl", "\n".join(lines) + "\n")
    return scores, baseline


def decode(model, tokenizer, examples: list, max_new_tokens: int, stop=()) -> list[str]:
    """Each example's prompt continued greedily through the shared generation code, up to the
    eos token or one of ``stop`` (the task's special tokens: a chat's end of turn or next role)."""
    from lmforge.engine import Sampling, complete
    from lmforge.plugins.finetune import _data

    budget = max(1, getattr(model, "max_seq_len", 10**9) - max_new_tokens)
    prompts = []
    for ex in examples:
        last = max((i for i, s in enumerate(ex.segments) if s.target), default=len(ex.segments))
        head = type(ex)(ex.id, ex.segments[:last])
        ids = _data.encode([head], tokenizer, None)[0].ids
        prompts.append(_data.keep_ends(ids, budget))  # cut as fine-tuning cut it: head and cue kept
    sampling = Sampling(max_tokens=max_new_tokens, temperature=0.0, top_k=None, seed=0, stop=tuple(stop))
    return [c.text.strip() for c in complete(model, tokenizer, prompts, sampling)]


def run_manifest(spec: FinetuneSpec, base, task, counts: dict, launch_dir: Path, complete: bool) -> dict:
    """manifest.json: the base run it started from (its manifest: the provenance chain), the task and data."""
    from lmforge.manifest import manifest

    components = {"task": task.name, "model": base.spec.model.name, "tokenizer": base.spec.tokenizer.name,
                  **{g: getattr(spec, g).name for g in ("optimizer", "scheduler", "logger")}}
    record = manifest(seed=spec.seed, stages={}, data={"task": counts}, launch_dir=launch_dir, components=components)
    base_record = {
        "run": str(base.dir), "manifest": str(base.dir / "manifest.json"), "checkpoint": str(base.default_checkpoint),
        "lmforge": (base.manifest or {}).get("lmforge"), "git_commit": (base.manifest or {}).get("git_commit"),
    }
    return {**record, "base": base_record, "finetune": {"task": task.name, "method": spec.finetune.method}, "complete": complete}
