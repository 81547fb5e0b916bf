"""The two plots of a sweep report, drawn with matplotlib's Agg backend (no display).

Each is drawn from the records whose numbers ``sweep_results.csv`` holds beside it.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from typing import Any

from lmforge.files import atomic_write
from lmforge.plugins.sweep.state import Record

HISTORY, PARALLEL = "optimization_history.png", "parallel_coordinates.png"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write(path, buf.getvalue())


def _finite(r: Record) -> bool:
    return r.value is not None and math.isfinite(r.value)


def plot_history(sweep_dir: Path, records: list[Record], objective: str, direction: str) -> None:
    """Each trial's objective by trial number, with the best so far as a step line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    styles = {"ok": ("C0", "o"), "pruned": ("C1", "v"), "failed": ("C3", "x")}
    for status, (color, marker) in styles.items():
        pts = [(r.number, r.value) for r in records if r.status == status and _finite(r)]
        if pts:
            ax.scatter(*zip(*pts), c=color, marker=marker, label=status)
    better = min if direction == "min" else max
    xs, best, current = [], [], None
    for r in sorted(records, key=lambda r: r.number):
        if r.status == "ok" and _finite(r):
            current = r.value if current is None else better(current, r.value)
        if current is not None:
            xs.append(r.number)
            best.append(current)
    if xs:
        ax.step(xs, best, where="post", c="k", label="best so far")
    failed = [r.number for r in records if not _finite(r)]
    if failed:
        for n in failed:
            ax.axvline(n, c="C3", alpha=0.3, lw=1)
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title(f"optimization history ({len(records)} trials, {len(failed)} failed)")
    ax.legend(loc="best")
    _save(fig, Path(sweep_dir) / HISTORY)


def _short(x: float) -> str:
    return f"{x:.3g}"


def _axis(values: list, log: bool | None = None, choices: list | None = None) -> tuple[list[float], list[tuple[float, str]], bool]:
    """Values scaled to [0, 1], the axis's ticks as (position, label), and whether it is log-scaled.

    A choice (or any non-numeric column) gets one tick per option; a numeric axis its
    minimum, middle and maximum. ``log`` None guesses it: positive values spanning over 100x.
    """
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if choices is not None or not numeric:
        labels = [str(c) for c in choices] if choices is not None else sorted({str(v) for v in values})
        labels += sorted({str(v) for v in values} - set(labels))
        pos = {label: i / max(len(labels) - 1, 1) for i, label in enumerate(labels)}
        return [pos[str(v)] for v in values], [(pos[label], label) for label in labels], False
    if log is None:
        log = min(values) > 0 and max(values) / min(values) > 100
    log = bool(log) and min(values) > 0
    xs = [math.log(v) for v in values] if log else [float(v) for v in values]
    lo, hi = min(xs), max(xs)
    if hi == lo:
        return [0.5] * len(xs), [(0.5, _short(values[0]))], log
    mid = math.exp((lo + hi) / 2) if log else (lo + hi) / 2
    ticks = [(0.0, _short(min(values))), (0.5, _short(mid)), (1.0, _short(max(values)))]
    return [(x - lo) / (hi - lo) for x in xs], ticks, log


def plot_parallel(sweep_dir: Path, records: list[Record], params: list[str], objective: str, space: list | None = None) -> None:
    """One line per finished trial through its parameters and objective, coloured by the objective.

    Each axis is labelled with its range (min, middle, max; geometric on a log axis) or its
    options; the colour bar maps the colour to the objective, as Optuna's plot does.
    """
    import matplotlib.colors as mcolors

    plt = _pyplot()
    spec: dict[str, Any] = {}
    for p in space or []:
        p = p if isinstance(p, dict) else dataclasses.asdict(p)
        spec[p["name"]] = p
    done = [r for r in records if _finite(r)]
    names = [*params, objective]
    fig, ax = plt.subplots(figsize=(max(5, 2.2 * len(names)), 4.5))
    if done:
        columns = []
        for p in params:
            s = spec.get(p, {})
            choices = s.get("choices") if s.get("kind") == "choice" else None
            columns.append(_axis([r.params.get(p, "") for r in done], s.get("log") if s else None, choices))
        columns.append(_axis([r.value for r in done], False))
        values = [r.value for r in done]
        norm = mcolors.Normalize(min(values), max(values) if max(values) > min(values) else min(values) + 1)
        cmap = plt.get_cmap("viridis_r")  # bright = low: the best of a minimisation stands out
        for i, r in sorted(enumerate(done), key=lambda ir: -ir[1].value):  # the best drawn last, on top
            ax.plot(range(len(names)), [col[0][i] for col in columns], c=cmap(norm(r.value)), alpha=0.85, lw=1.5,
                    ls="--" if r.status == "pruned" else "-")
        for j, (_, ticks, _) in enumerate(columns):
            ax.axvline(j, c="0.3", lw=1)
            for y, label in ticks:
                ax.plot([j - 0.03, j], [y, y], c="0.3", lw=1)
                ax.text(j - 0.05, y, label, fontsize=8, ha="right", va="center",
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
        names = [f"{n}\n(log)" if col[2] else n for n, col in zip(names, columns)]
        mappable = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(mappable, ax=ax, label=objective, pad=0.02)
    ax.set_xlim(-0.6, len(names) - 0.8)
    ax.set_ylim(-0.06, 1.06)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"parallel coordinates ({len(done)} finished trials; dashed: pruned)")
    _save(fig, Path(sweep_dir) / PARALLEL)
