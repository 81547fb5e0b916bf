"""``lmforge eval <run dir> --task <name> [task overrides]``: score a run on a task's test split.

The run, its base and the task's trivial baseline are scored on the same examples, so the
gain from fine-tuning shows side by side:

- a generative task (``summarize``, ``translate``, ``chat``): each example's prompt is
  continued greedily through the shared generation code (``lmforge.engine.complete``,
  batched) and ``task.score`` scores the replies; a metric ending in ``loss``
  (``assistant_loss``) is the model's mean cross-entropy on the target tokens instead;
- a ``classify`` task: the run's classification head (``classifier.json``, rebuilt by
  ``Run.model()``) predicts each label; besides the scores, the per-class table and the
  confusion matrix (``confusion_matrix.json`` and ``.png``) are written next to the numbers.
  The base run has no head, so the baseline (the majority class) is its comparison;
- a task with an ``evaluate`` method scores the models itself (``safety``: each with a
  guard off and on, ``--guard``): it returns its columns of scores, a line per example
  for ``predictions.jsonl``, and what else ``eval.json`` holds. A task whose class sets
  ``scores_any_run`` (a red-team set) scores a run fine-tuned on another task, on the
  split that fine-tune held out.

The task's config is the one the run was fine-tuned with (``finetune.yaml``), so the
test split is the very one fine-tuning held out; overrides (``task.data=...``) change it.
Everything goes into ``<run dir>/eval-<task>/`` (``--out``), each file written atomically:
``eval.json`` (the scores), ``predictions.jsonl`` (the run's reply or label for each
example, beside the reference) and for classify the confusion matrix.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import ConfigError, DataError
from lmforge.files import atomic_write, atomic_write_json
from lmforge.runs import Run, RunError

if TYPE_CHECKING:
    from lmforge.contracts import Example, Task

log = logging.getLogger("lmforge")

FINETUNE_RECORD = "finetune.yaml"  # what lmforge finetune records of its own config
IGNORE = -100


def finetune_record(run: Run) -> dict | None:
    """The run's ``finetune.yaml`` as a dict, or None for a run that ``lmforge train`` wrote."""
    path = run.dir / FINETUNE_RECORD
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def build_task(run: Run, name: str, overrides: list[str]) -> "Task":
    """Task ``name`` with the config the run was fine-tuned with, if any, and ``overrides`` on top.

    A run fine-tuned on another task is refused: its test split and its head belong to that one.
    """
    from omegaconf import OmegaConf

    from lmforge.hydra_bridge import Selected, component_config

    record = finetune_record(run)
    trained = (record or {}).get("task") or {}
    if trained and trained.get("name") != name:
        if not _scores_any_run(name):
            raise ConfigError(
                f"--task {name}: {run.dir} was fine-tuned on task={trained.get('name')}, not {name}; score it with "
                f"--task {trained.get('name')}, or fine-tune its base on {name} first (lmforge finetune base={record.get('base')} task={name})"
            )
        trained = {"split": trained["split"]} if "split" in trained else {}  # the split that fine-tune held out
    node = OmegaConf.create({"name": name, **trained})
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{item!r}: a task override is key=value, e.g. task.data=data.jsonl")
        if key.removeprefix("task.") == "name":
            raise ConfigError(f"{item!r}: the task is chosen with --task, not task.name")
    dotlist = [item.removeprefix("task.") for item in overrides]
    try:
        node = OmegaConf.merge(node, OmegaConf.from_dotlist(dotlist))
    except Exception as exc:  # OmegaConf's grammar errors
        raise ConfigError(f"task overrides {' '.join(overrides)}: {str(exc).splitlines()[0]}") from None
    return Selected(*component_config("task", node, "task")).build()


def _scores_any_run(name: str) -> bool:
    """Whether task ``name`` is an evaluation set for a run fine-tuned on any task (its class
    sets ``scores_any_run``: task=safety's red-team prompts score a DPO or chat run)."""
    from lmforge.loader import load_plugins

    entry = load_plugins()[1].components["task"].get(name)
    return bool(getattr(entry.cls, "scores_any_run", False)) if entry is not None else False


def base_of(run: Run) -> Run | None:
    """The run a fine-tune started from, or None: the manifest's ``base.run`` (an absolute
    path), else ``finetune.yaml``'s ``base=`` (as typed, so maybe relative to where it ran)."""
    record = finetune_record(run) or {}
    given = ((run.manifest or {}).get("base") or {}).get("run") or record.get("base")
    if not given:
        return None
    try:
        return Run.open(given)
    except RunError as exc:
        log.warning("the base run is not scored: %s", exc)
        return None


# Scoring ---------------------------------------------------------------------------------

def _segment_ids(tokenizer, examples: list["Example"], upto_last_target: bool) -> list[tuple[list[int], list[bool]]]:
    """Each example's ids, segment by segment (as fine-tuning tokenizes them), and which are targets.

    ``upto_last_target``: only the segments before the last target (the prompt a reply
    continues). Otherwise every segment, then the eos token, a target when the last segment is.
    """
    texts, counts = [], []
    for ex in examples:
        last = max((i for i, s in enumerate(ex.segments) if s.target), default=len(ex.segments))
        segments = ex.segments[:last] if upto_last_target else ex.segments
        texts += [s.text for s in segments]
        counts.append(segments)
    encoded = iter(tokenizer.encode_batch(texts) if texts else [])
    eos = tokenizer.special_ids.get("eos")
    out = []
    for segments in counts:
        ids, target = [], []
        for s in segments:
            piece = next(encoded)
            ids += piece
            target += [s.target] * len(piece)
        if not upto_last_target and eos is not None and segments:
            ids.append(eos)
            target.append(segments[-1].target)
        out.append((ids, target))
    return out


def prompt_ids(model, tokenizer, examples: list["Example"], max_tokens: int) -> list[list[int]]:
    """Each example's prompt as token ids, tokenized and cut as fine-tuning does: one too long
    for the model's context leaves room for ``max_tokens`` of reply (at most half the context)
    by dropping its middle, its head and its cue kept (``keep_ends``)."""
    from lmforge.tasks import keep_ends

    limit = int(getattr(model, "max_seq_len", 0)) or None
    prompts = []
    for ids, _ in _segment_ids(tokenizer, examples, upto_last_target=True):
        ids = ids or [tokenizer.special_ids.get("eos", 0)]
        if limit:
            ids = keep_ends(ids, max(1, limit - min(max_tokens, limit // 2)))
        prompts.append(ids)
    return prompts


def generate(model, tokenizer, examples: list["Example"], *, max_tokens: int, batch_size: int, progress=None) -> list[str]:
    """Greedy replies to each example's prompt, ``batch_size`` prompts at a time."""
    from lmforge import engine

    prompts = prompt_ids(model, tokenizer, examples, max_tokens)
    sampling = engine.Sampling(max_tokens=max_tokens, temperature=0.0, top_k=None, seed=0)
    replies = []
    for start in range(0, len(prompts), batch_size):
        replies += [c.text.strip() for c in engine.complete(model, tokenizer, prompts[start : start + batch_size], sampling)]
        if progress is not None:
            progress(len(replies))
    return replies


def target_loss(model, tokenizer, examples: list["Example"], *, batch_size: int, device) -> float:
    """The mean cross-entropy (nats) on the target tokens of ``examples``, each scored alone.

    An example longer than the model's context keeps its last tokens (its target's end).
    """
    import torch
    import torch.nn.functional as F

    limit = int(getattr(model, "max_seq_len", 0)) or None
    pairs = []
    for ids, target in _segment_ids(tokenizer, examples, upto_last_target=False):
        if limit and len(ids) > limit + 1:
            ids, target = ids[-(limit + 1):], target[-(limit + 1):]
        if len(ids) >= 2:
            pairs.append((ids[:-1], [t if keep else IGNORE for t, keep in zip(ids[1:], target[1:])]))
    total, count = 0.0, 0
    model.eval().to(device)
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            width = max(len(i) for i, _ in chunk)
            pad = tokenizer.special_ids.get("pad", tokenizer.special_ids.get("eos", 0))
            inputs = torch.tensor([i + [pad] * (width - len(i)) for i, _ in chunk], device=device)
            targets = torch.tensor([t + [IGNORE] * (width - len(t)) for _, t in chunk], device=device)
            logits = model(inputs).logits.float()  # (B, T, V); right padding: a causal model's real tokens never see it
            total += float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"))
            count += int((targets != IGNORE).sum())
    if not count:
        raise DataError("the test split has no target tokens to score a loss on: check task.template")
    return total / count


def score_model(run: Run, task: "Task", examples: list["Example"], *, checkpoint: str | None, device: str, max_tokens: int, batch_size: int, progress=None) -> tuple[dict[str, float], list[str]]:
    """The task's metrics of ``run`` on ``examples``, and its predictions (replies or labels)."""
    from lmforge import engine

    model = run.model(checkpoint, device=device)
    tokenizer = run.tokenizer
    if task.type == "classify":
        predictions = engine.predict_labels(model, tokenizer, [_text(e) for e in examples], batch_size=batch_size, device=device)
        if progress is not None:
            progress(len(predictions))
        return task.score(predictions, examples), predictions
    losses = [m for m in task.metrics if m.endswith("loss")]
    decoded = [m for m in task.metrics if not m.endswith("loss")]
    scores: dict[str, float] = {}
    predictions: list[str] = []
    if decoded:
        predictions = generate(model, tokenizer, examples, max_tokens=max_tokens, batch_size=batch_size, progress=progress)
        scores.update({k: float(v) for k, v in task.score(predictions, examples).items() if not k.endswith("loss")})
    if losses:
        loss = target_loss(model, tokenizer, examples, batch_size=batch_size, device=device)
        scores.update({name: loss for name in losses})
    return scores, predictions


def _text(example: "Example") -> str:
    return "".join(s.text for s in example.segments)


def _check_run(run: Run, task: "Task", what: str) -> None:
    objective = run.spec.model.entry.cls.objective
    if task.type == "classify" and run.head is None:
        raise ConfigError(
            f"--task {task.name} is a classify task, but {what} {run.dir} has no classification head (no classifier.json): "
            f"fine-tune it first, lmforge finetune base={run.dir} task={task.name}"
        )
    if task.type != "classify" and run.head is not None:
        raise ConfigError(f"--task {task.name} is generative, but {what} {run.dir} is a classifier (classifier.json): score it with its classify task")
    if task.type != "classify" and objective != "causal":
        raise ConfigError(
            f"--task {task.name} is generative, but {what} {run.dir} is a {objective} model (model={run.spec.model.name}), "
            f"which cannot generate text: score a causal run"
        )


def evaluate_task(
    run_dir: Path, name: str, overrides: list[str] = (), *, checkpoint: str | None = None, split: str = "test",
    base: bool = True, max_tokens: int = 64, batch_size: int = 16, device: str = "auto", out: Path | None = None,
    guard: str | None = None, guard_options: list[str] = (),
) -> dict[str, Any]:
    """Score ``run_dir`` (and its base, and the baseline) on ``split`` of task ``name``; write ``eval.json``.

    A task with an ``evaluate`` method scores the models its own way (task=safety: each with
    a guard off and on, ``guard`` and ``guard_options`` choosing it; see its module).
    """
    from lmforge import tasks

    run = Run.open(run_dir)
    run.checkpoint(checkpoint)
    task = build_task(run, name, list(overrides))
    own = getattr(task, "evaluate", None)
    if not callable(own) and (guard is not None or guard_options):
        raise ConfigError(f"--guard: task={name} is scored without a guard; a task that scores models with a guard off and on (task=safety) takes it")
    _check_run(run, task, "the run")
    data = tasks.load(task)
    for notice in data.notices:
        log.warning("%s", notice)
    if split not in data.splits:
        raise ConfigError(f"--split {split}: task={name} has the splits {', '.join(data.splits)}")
    examples = data[split]
    if not examples:
        raise DataError(f"the {split} split of task={name} is empty ({data.summary()}): raise its share in task.split")
    device = _device(device)
    parent = base_of(run) if base else None
    base_run = parent if task.type != "classify" else None  # a base run has no head: the baseline is the comparison
    if base_run is not None:
        _check_run(base_run, task, "its base run")
    columns: dict[str, dict[str, float]] = {}
    lines: list[dict] | None = None
    started = time.perf_counter()
    with _progress(len(examples) * (2 if base_run is not None else 1)) as advance:
        if callable(own):
            report = own(run, base_run, examples, overrides=list(overrides), checkpoint=checkpoint, device=device, max_tokens=max_tokens,
                         batch_size=batch_size, guard=guard, guard_options=list(guard_options), progress=advance)
            columns, lines = report.pop("scores"), report.pop("predictions")
        else:
            columns["run"], predictions = score_model(run, task, examples, checkpoint=checkpoint, device=device, max_tokens=max_tokens, batch_size=batch_size, progress=advance(0))
            if base_run is not None:
                columns["base"], _ = score_model(base_run, task, examples, checkpoint=None, device=device, max_tokens=max_tokens, batch_size=batch_size, progress=advance(len(examples)))
    if "baseline" not in columns:
        columns["baseline"] = {k: float(v) for k, v in task.score(task.baseline(examples), examples).items()}
    out_dir = Path(out) if out else run.dir / f"eval-{name}"
    if lines is None:
        # a task's optional report (classify: the per-class table, and the confusion matrix written into out_dir)
        report = task.report(predictions, examples, out_dir) if callable(getattr(task, "report", None)) else {}
        lines = [{"id": e.id, "prediction": p, "reference": e.label or e.reference} for e, p in zip(examples, predictions)]
    result = {
        "run_dir": str(run.dir),
        "checkpoint": str(run.checkpoint(checkpoint)),
        "base_run": str(base_run.dir) if base_run is not None else None,
        "task": task.name,
        "task_config": {"name": task.name, **_plain(task.config)},
        "split": split,
        "examples": len(examples),
        "data": data.summary(),
        "metrics": list(task.metrics),
        "scores": columns,
        "gain": {k: v - columns["base"][k] for k, v in columns["run"].items() if "base" in columns and k in columns["base"]},
        "device": device,
        "seconds": round(time.perf_counter() - started, 2),
        **report,
    }
    if task.type == "classify" and parent is not None:
        result["base_note"] = "the base run has no classification head: the baseline is what the head is compared with"
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "predictions.jsonl", "".join(f"{json.dumps(line, ensure_ascii=False)}\n" for line in lines))
    atomic_write_json(out_dir / "eval.json", result)
    return result


def _plain(config) -> dict:
    import dataclasses

    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config or {})


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class _progress:
    """A rich progress bar over the examples scored (run, then base); ``advance(offset)``
    gives the callback for one model's scoring."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True)
        self.total = total

    def __enter__(self):
        self.bar.start()
        job = self.bar.add_task("scoring", total=self.total)
        return lambda offset: (lambda done: self.bar.update(job, completed=offset + done))

    def __exit__(self, *exc) -> None:
        self.bar.stop()


def table(result: dict) -> str:
    """The scores as a rich table (run, base, gain, baseline; or the columns a task's own
    ``evaluate`` scored, in order), its notes, and a classifier's per-class table."""
    from rich.console import Console
    from rich.table import Table

    scores = result["scores"]
    columns = [c for c in scores if c != "baseline"]
    names = list(dict.fromkeys(name for c in columns for name in scores[c]))
    gains = result.get("gain") if columns == ["run", "base"] else None
    title = f"task={result['task']}, {result['split']} split, {result['examples']:,} examples"
    grid = Table(title=title + (f", guard={result['guard']['name']}" if result.get("guard") else ""))
    grid.add_column("metric")
    for column in [*columns, *(["gain"] if gains is not None else []), "baseline"]:
        grid.add_column(column, justify="right")
    for name in names:
        row = [name, *(f"{scores[c][name]:.4f}" if name in scores[c] else "n/a" for c in columns)]
        if gains is not None:
            row.append(f"{gains[name]:+.4f}" if name in gains else "")
        baseline = scores["baseline"].get(name)
        row.append(f"{baseline:.4f}" if baseline is not None else "n/a")
        grid.add_row(*row)
    console = Console(width=100, record=True, force_terminal=False)
    with console.capture() as captured:
        console.print(grid)
        for note in [result.get("base_note"), *result.get("notes", [])]:
            if note:
                console.print(note)
        if per_class := result.get("per_class"):
            classes = Table(title="per class")
            for column in ("class", "precision", "recall", "f1", "support"):
                classes.add_column(column, justify="left" if column == "class" else "right")
            for label, row in per_class.items():
                classes.add_row(label, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(int(row["support"])))
            console.print(classes)
    return captured.get().rstrip()
