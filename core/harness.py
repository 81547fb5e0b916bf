"""``lmforge eval <run> --lm-eval TASKS``: lm-eval-harness tasks on a run, offline.

The harness scores the run through the model a plugin names ``lmforge`` with the
``lm_eval_models`` hook (lmforge's own is ``lmforge.plugins.evaluation``), so the run is
opened as every command opens it, through ``lmforge.runs.Run``. Tasks come from
``--include-path`` folders of task YAML and from lm-eval's own set; only the requested
tasks' data is read (local files with ``dataset_path: json``, or the ``datasets`` cache
when offline). The harness's table is printed and the results are merged into the
run's ``eval.json`` under ``lm_eval``, one entry per task, written atomically.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from lmforge.errors import ConfigError, DataError
from lmforge.files import atomic_write_json
from lmforge.runs import Run

MODEL = "lmforge"


def lm_eval():
    try:
        return importlib.import_module("lm_eval")
    except ImportError:
        raise ConfigError("--lm-eval needs lm-eval-harness, which is not installed: pip install 'lm-eval>=0.4'") from None


def register_models() -> list[str]:
    """Register every plugin's ``lm_eval_models`` with lm-eval's model registry; their names."""
    from lm_eval.api.registry import get_model, register_model

    from lmforge.loader import load_plugins

    names = []
    for models in load_plugins()[0].hook.lm_eval_models():
        for name, target in (models or {}).items():
            module, _, attr = target.partition(":")
            cls = getattr(importlib.import_module(module), attr)
            try:
                known = get_model(name)
            except (KeyError, ValueError):
                known = None
            if known is not cls:
                register_model(name)(cls)
            names.append(name)
    return names


def task_manager(tasks: list[str], include_path: Path | None):
    """lm-eval's task index: the ``--include-path`` folder alone when it holds every task
    asked for (indexing lm-eval's thousands of YAML files takes seconds), else both."""
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        if not include_path.is_dir():
            raise ConfigError(f"--include-path {include_path}: no such folder; pass the folder holding the task YAML files")
        local = TaskManager(include_path=str(include_path), include_defaults=False)
        if set(tasks) <= set(local.all_tasks):
            return local
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [t for t in tasks if t not in manager.all_tasks and not manager.match_tasks([t])]
    if unknown:
        where = f"in {include_path} or " if include_path else ""
        raise ConfigError(
            f"--lm-eval {','.join(unknown)}: no such lm-eval task {where}among lm-eval's own: check the name "
            f"(`lm-eval ls tasks` lists them), or pass --include-path DIR with the task's YAML"
        )
    return manager


def run_tasks(
    run_dir: Path | str,
    tasks: list[str],
    *,
    include_path: Path | None = None,
    limit: float | None = None,
    batch_size: int = 16,
    checkpoint: str | None = None,
    device: str | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    """Score the run on lm-eval ``tasks``; returns lm-eval's results and merges them into ``eval.json``."""
    run = Run.open(run_dir)  # a wrong directory fails before lm-eval and torch are imported
    ckpt = run.checkpoint(checkpoint)
    harness = lm_eval()
    if MODEL not in register_models():
        raise ConfigError(f"no installed plugin names the lm-eval model {MODEL!r} (lmforge.plugins.evaluation): reinstall lmforge")
    manager = task_manager(tasks, include_path)
    results = harness.simple_evaluate(
        model=MODEL,
        model_args={"pretrained": str(run.dir), **({"checkpoint": checkpoint} if checkpoint else {})},
        device=device,
        tasks=tasks,
        task_manager=manager,
        limit=limit,
        batch_size=batch_size,
        log_samples=False,
    )
    record = {
        "checkpoint": str(ckpt),
        "limit": limit,
        "results": results["results"],
        "n_shot": results.get("n-shot", {}),
        "versions": results.get("versions", {}),
        "lm_eval": getattr(harness, "__version__", None),
    }
    target = out or run.dir / "eval.json"
    previous = _read(target)
    kept = previous.get("lm_eval") if isinstance(previous.get("lm_eval"), dict) else {}
    merged = {**kept, **record, "results": {**kept.get("results", {}), **record["results"]}}
    atomic_write_json(target, {**previous, "lm_eval": merged})
    return results


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not readable JSON ({exc}): move it away, or pass --out FILE") from None
    return data if isinstance(data, dict) else {}


def previous_results(path: Path) -> dict:
    """The ``lm_eval`` entry of an ``eval.json`` (empty when none): what a later plain
    ``lmforge eval`` keeps when it rewrites the file."""
    try:
        found = _read(path).get("lm_eval")
    except DataError:
        return {}  # a damaged file is rewritten whole
    return {"lm_eval": found} if isinstance(found, dict) else {}


def table(results: dict) -> str:
    """The harness's own results table (and its groups table, when a task is a group)."""
    from lm_eval.utils import make_table

    text = make_table(results)
    if results.get("groups"):
        text += "\n" + make_table(results, "groups")
    return text
