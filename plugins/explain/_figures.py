"""The PNG figures of an explanation, drawn from its numbers (``explain.json``'s content).

Sizes grow with the token count so that the token labels stay legible at 64 tokens and
more; the target position's label is drawn in red. matplotlib runs on the Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DPI = 110
FONT = 7  # points, token labels


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _ticks(ax, tokens: list[str], target: int | None, *, x: bool = True, y: bool | None = True, size: float = FONT) -> None:
    """Token labels on the x axis, and on the y axis unless ``y`` is False (no ticks) or None (left as they are)."""
    n = len(tokens)
    if x:
        ax.set_xticks(range(n), tokens, rotation=90, fontsize=size, fontfamily="monospace")
    else:
        ax.set_xticks([])
    if y:
        ax.set_yticks(range(n), tokens, fontsize=size, fontfamily="monospace")
    elif y is False:
        ax.set_yticks([])
    if target is not None:
        for labels in ((ax.get_xticklabels() if x else []), (ax.get_yticklabels() if y else [])):
            if len(labels) > target:
                labels[target].set_color("red")


def _side(n: int, per_token: float, low: float, high: float) -> float:
    return min(high, max(low, per_token * n))


def _title(ax, text: str, width_in: float, size: float = 9) -> None:
    """A title wrapped to the axes' width, so that a narrow figure does not cut it off."""
    import textwrap

    ax.set_title("\n".join(textwrap.wrap(text, max(30, int(width_in * 72 / (size * 0.6))))), fontsize=size)


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    _plt().close(fig)


def attention_heads(result: dict, path: Path) -> None:
    """A grid of every layer (rows) × head (columns); token labels on the outer panels."""
    plt = _plt()
    maps, tokens = result["attention"]["maps"], result["tokens"]
    L, H, n = len(maps), len(maps[0]), len(tokens)
    side = _side(n, 0.085, 2.0, 7.0)
    size = min(FONT, side * 72 / max(n, 1) * 0.85)
    fig, axes = plt.subplots(L, H, figsize=(side * H + 1, side * L + 1), squeeze=False)
    for l in range(L):
        for h in range(H):
            ax = axes[l][h]
            ax.imshow(maps[l][h], cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            _ticks(ax, tokens, result["target"]["position"], x=l == L - 1, y=h == 0, size=size)
            ax.set_title(f"layer {l + 1}, head {h + 1}", fontsize=8)
    fig.suptitle("attention of every head: row = query (where it looks from), column = key", fontsize=10)
    _save(fig, path)


def attention_mean(result: dict, path: Path) -> None:
    """Each layer's head average."""
    plt = _plt()
    mean, tokens = result["attention"]["mean"], result["tokens"]
    L, n = len(mean), len(tokens)
    cols = min(L, 3)
    rows = -(-L // cols)
    side = _side(n, 0.13, 3.0, 12.0)
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols + 1, side * rows + 1), squeeze=False)
    for i, ax in enumerate(a for row in axes for a in row):
        if i >= L:
            ax.axis("off")
            continue
        image = ax.imshow(mean[i], cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        _ticks(ax, tokens, result["target"]["position"], y=i % cols == 0)
        ax.set_title(f"layer {i + 1}: mean over heads", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.5, label="attention weight")
    _save(fig, path)


def attention_rollout(result: dict, path: Path) -> None:
    plt = _plt()
    tokens, n = result["tokens"], len(result["tokens"])
    side = _side(n, 0.15, 4.0, 16.0)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(result["attention"]["rollout"], cmap="magma", interpolation="nearest")
    _ticks(ax, tokens, result["target"]["position"])
    ax.set_xlabel("input token")
    ax.set_ylabel("position")
    _title(ax, "attention rollout (Abnar & Zuidema 2020): share of each input token in each position", side)
    fig.colorbar(image, ax=ax, shrink=0.7)
    _save(fig, path)


def _bars(ax, values: list[float], tokens: list[str], target: int, title: str, width_in: float) -> None:
    colours = ["tab:red" if v < 0 else "tab:blue" for v in values]
    ax.bar(range(len(values)), values, color=colours)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlim(-0.5, len(values) - 0.5)
    _ticks(ax, tokens, target, y=None)
    ax.tick_params(axis="y", labelsize=8)
    _title(ax, title, width_in)


def _predicted(result: dict) -> str:
    t = result["target"]
    return f"log p({t['token']!r} at position {t['position'] + 1})"


def saliency(result: dict, path: Path) -> None:
    plt = _plt()
    tokens, s = result["tokens"], result["saliency"]
    width = _side(len(tokens), 0.16, 6.0, 40.0)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(width, 6), sharex=True)
    target = result["target"]["position"]
    _bars(top, s["gradient"], tokens, target, f"saliency: |∂ {_predicted(result)} / ∂ embedding| per token", width)
    _bars(bottom, s["grad_x_input"], tokens, target, "gradient × input, summed over the embedding", width)
    _save(fig, path)


def ig(result: dict, path: Path) -> None:
    plt = _plt()
    tokens, g = result["tokens"], result["ig"]
    width = _side(len(tokens), 0.16, 6.0, 40.0)
    fig, ax = plt.subplots(figsize=(width, 3.5))
    _bars(
        ax, g["attribution"], tokens, result["target"]["position"],
        f"integrated gradients of {_predicted(result)}, {g['baseline']} baseline, {g['n_steps']} steps; "
        f"sum {sum(g['attribution']):+.3f} vs f(x) - f(baseline) {g['f_input'] - g['f_baseline']:+.3f} (delta {g['delta']:+.2g})",
        width,
    )
    _save(fig, path)


def logit_lens(result: dict, path: Path) -> None:
    """Layers (rows, the embeddings at the bottom) × positions: the top-1 token and its probability."""
    plt = _plt()
    lens, tokens = result["logit_lens"], result["tokens"]
    L, n = len(lens["top_ids"]), len(tokens)
    probs = [[cell[0] for cell in layer] for layer in lens["top_probs"]]
    fig, ax = plt.subplots(figsize=(_side(n, 0.55, 6.0, 60.0), 0.45 * L + 2))
    ax.imshow(probs, cmap="Blues", vmin=0, vmax=1, aspect="auto", origin="lower", interpolation="nearest")
    for l in range(L):
        for t in range(n):
            ax.text(t, l, lens["top_tokens"][l][t][0][:8], ha="center", va="center", fontsize=6,
                    fontfamily="monospace", color="white" if probs[l][t] > 0.6 else "black")
    _ticks(ax, tokens, result["target"]["position"], y=False)
    ax.set_yticks(range(L), ["embed"] + [f"layer {i}" for i in range(1, L)], fontsize=8)
    where = "predicts for that position" if result.get("masked") else "predicts next"
    ax.set_xlabel(f"input token (each column: what the stream there {where})")
    _title(ax, "logit lens: each layer's residual stream through the final norm and head; colour = top-1 probability", _side(n, 0.55, 6.0, 60.0))
    _save(fig, path)


DRAW = {
    "attention": [("attention-heads.png", attention_heads), ("attention-mean.png", attention_mean), ("attention-rollout.png", attention_rollout)],
    "saliency": [("saliency.png", saliency)],
    "ig": [("ig.png", ig)],
    "logit_lens": [("logit-lens.png", logit_lens)],
}


def draw(result: dict[str, Any], folder: Path) -> list[str]:
    """Draw every figure ``result`` has the numbers for into ``folder``; returns the file names."""
    names = []
    for key, figures in DRAW.items():
        if key in result:
            for name, function in figures:
                function(result, folder / name)
                names.append(name)
    return names
