"""The two plots of a sweep report, drawn with matplotlib's Agg backend (no display)."""

from __future__ import annotations

import math
from pathlib import Path

from lmforge.stages import atomic_write_bytes
from lmforge.sweep_state import Record

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
    atomic_write_bytes(path, buf.getvalue())


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


def _axis(values: list) -> tuple[list[float], list[str] | None, bool]:
    """Values scaled to [0, 1]; the tick labels of a categorical axis; whether it is log-scaled."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        log = min(values) > 0 and max(values) / min(values) > 100
        xs = [math.log(v) for v in values] if log else [float(v) for v in values]
        lo, hi = min(xs), max(xs)
        return [(x - lo) / (hi - lo) if hi > lo else 0.5 for x in xs], None, log
    labels = sorted({str(v) for v in values})
    pos = {label: i / max(len(labels) - 1, 1) for i, label in enumerate(labels)}
    return [pos[str(v)] for v in values], labels, False


def plot_parallel(sweep_dir: Path, records: list[Record], params: list[str], objective: str) -> None:
    """One line per finished trial through its parameters and objective, coloured by the objective."""
    plt = _pyplot()
    done = [r for r in records if _finite(r)]
    names = [*params, objective]
    fig, ax = plt.subplots(figsize=(max(4, 2 * len(names)), 4))
    if done:
        columns = [_axis([r.params.get(p, "") for r in done]) for p in params] + [_axis([r.value for r in done])]
        values = [r.value for r in done]
        lo, hi = min(values), max(values)
        cmap = plt.get_cmap("viridis")
        for i, r in enumerate(done):
            shade = (r.value - lo) / (hi - lo) if hi > lo else 0.5
            ax.plot(range(len(names)), [col[0][i] for col in columns], c=cmap(shade), alpha=0.8, ls="--" if r.status == "pruned" else "-")
        for j, (_, labels, log) in enumerate(columns):
            ax.axvline(j, c="grey", lw=0.8)
            if labels:
                for k, label in enumerate(labels):
                    ax.text(j, k / max(len(labels) - 1, 1), f" {label}", fontsize=8, va="center")
            elif log:
                ax.text(j, -0.08, "log", fontsize=7, ha="center")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20)
    ax.set_yticks([])
    ax.set_title(f"parallel coordinates ({len(done)} finished trials; dashed: pruned)")
    _save(fig, Path(sweep_dir) / PARALLEL)
