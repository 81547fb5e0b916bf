"""``curves.png``: a run's training and validation loss and learning rate against steps.

Drawn from ``metrics.csv`` (the numbers stay next to the picture) with matplotlib's Agg
backend, so it needs no display. Written at the end of every run that logs metrics.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from lmforge.files import atomic_write


def read_series(metrics_csv: Path) -> dict[str, list[tuple[int, float]]]:
    """Each column of ``metrics.csv`` as (step, value) pairs, blank cells left out."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(metrics_csv, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            step = row.get("step")
            if not step:
                continue
            for key, value in row.items():
                if key not in ("step", "epoch") and value not in ("", None):
                    series.setdefault(key, []).append((int(float(step)), float(value)))
    return series


def plot_curves(metrics_csv: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_series(metrics_csv)
    lr_key = next((k for k in series if k.startswith("lr-")), None)
    fig, (loss_ax, lr_ax) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for key, style in (("train/loss", dict(c="C0", lw=1, label="train loss")), ("val/loss", dict(c="C1", marker="o", label="validation loss"))):
        if series.get(key):
            loss_ax.plot(*zip(*series[key]), **style)
    loss_ax.set_ylabel("loss (nats/token)")
    loss_ax.grid(alpha=0.3)
    if loss_ax.has_data():
        loss_ax.legend(loc="upper right")
    loss_ax.set_title(f"training curves ({Path(metrics_csv).parent.name})")
    if lr_key:
        lr_ax.plot(*zip(*series[lr_key]), c="C2", lw=1)
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("optimizer step")
    lr_ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write(out, buf.getvalue())
