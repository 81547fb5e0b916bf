"""``task=classify``: (text, label) pairs, scored with accuracy and precision, recall and F1.

The demo asks which standard-library package a function comes from, among its largest
packages (tkinter, idlelib, asyncio, logging, xml, multiprocessing, unittest, email, on a
Python that has them all; a missing one gives its place to the next largest), from the
function's source without its docstring. The baseline predicts the training split's
majority class.

Besides ``score``, the module gives what a report shows: ``per_class`` (precision,
recall, F1 and support by class) and ``write_confusion_matrix``, which writes the matrix
as JSON and draws it as a PNG beside it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from lmforge import hookimpl
from lmforge.contracts import Example, Segment, Task, TaskConfig

METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "micro_precision", "micro_recall", "micro_f1")
DEMO_CLASSES = 8  # the largest packages among those harvested
DEMO_PER_CLASS = 150  # at most this many functions of each, so that no class dominates
DEMO_LINES = 12  # the first lines of a function's source are its text


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0  # an empty denominator counts as 0, as scikit-learn's zero_division=0


def _f1(p: float, r: float) -> float:
    return _ratio(2 * p * r, p + r)


def per_class(predictions: list[str], references: list[str]) -> dict[str, dict[str, float]]:
    """``{class: {precision, recall, f1, support}}`` over the classes of the references and predictions."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    classes = sorted(set(references) | set(predictions))
    pairs = Counter(zip(references, predictions))
    table = {}
    for c in classes:
        tp = pairs[(c, c)]
        predicted = sum(n for (_, p), n in pairs.items() if p == c)
        support = sum(n for (r, _), n in pairs.items() if r == c)
        precision, recall = _ratio(tp, predicted), _ratio(tp, support)
        table[c] = {"precision": precision, "recall": recall, "f1": _f1(precision, recall), "support": support}
    return table


def classification_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Accuracy, and macro (the mean over classes) and micro (over all decisions) precision, recall and F1."""
    table = per_class(predictions, references)
    if not references:
        return dict.fromkeys(METRICS, 0.0)
    correct = sum(p == r for p, r in zip(predictions, references))
    # micro: every prediction is one decision; with one label per example precision = recall = accuracy
    micro_p = _ratio(correct, len(predictions))
    micro_r = _ratio(correct, len(references))
    macro = {k: sum(row[k] for row in table.values()) / len(table) for k in ("precision", "recall", "f1")}
    return {
        "accuracy": correct / len(references),
        "macro_precision": macro["precision"],
        "macro_recall": macro["recall"],
        "macro_f1": macro["f1"],
        "micro_precision": micro_p,
        "micro_recall": micro_r,
        "micro_f1": _f1(micro_p, micro_r),
    }


def confusion_matrix(predictions: list[str], references: list[str], classes: list[str] | None = None) -> tuple[list[str], list[list[int]]]:
    """The classes and the matrix: ``matrix[i][j]`` counts examples of class i predicted as j."""
    classes = list(classes) if classes is not None else sorted(set(references) | set(predictions))
    classes += sorted((set(references) | set(predictions)) - set(classes))  # predictions outside the classes
    index = {c: i for i, c in enumerate(classes)}
    matrix = [[0] * len(classes) for _ in classes]
    for r, p in zip(references, predictions):
        matrix[index[r]][index[p]] += 1
    return classes, matrix


def write_confusion_matrix(predictions: list[str], references: list[str], out_dir: Path | str, classes: list[str] | None = None) -> Path:
    """Write ``confusion_matrix.json`` (the numbers) and ``confusion_matrix.png`` (the picture) in ``out_dir``.

    Returns the PNG's path. Rows are the true classes, columns the predicted ones; the
    PNG colours each row by its share, so that small classes read as well as large ones.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    from lmforge.files import atomic_path, atomic_write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes, matrix = confusion_matrix(predictions, references, classes)
    atomic_write_json(out / "confusion_matrix.json", {"classes": classes, "matrix": matrix, "rows": "true class", "columns": "predicted class"})
    shares = [[_ratio(n, sum(row)) for n in row] for row in matrix]
    size = max(4.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            ax.text(j, i, str(n), ha="center", va="center", color="white" if shares[i][j] > 0.5 else "black", fontsize=8)
    ax.set_title(f"confusion matrix ({sum(map(sum, matrix)):,} examples)")
    fig.tight_layout()
    png = out / "confusion_matrix.png"
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return png


class Classify(Task):
    name = "classify"
    Config = TaskConfig
    type = "classify"
    fields = ("text", "label")
    metrics = METRICS

    majority: str = ""  # the training split's most frequent class, set by prepare

    def demo(self) -> list[dict[str, Any]]:
        from lmforge.plugins.tasks._stdlib import functions

        found = functions()
        sizes = Counter(f.package for f in found)
        classes = sorted(sizes, key=lambda p: (-sizes[p], p))[:DEMO_CLASSES]
        kept = []
        for package in classes:
            members = sorted((f for f in found if f.package == package), key=lambda f: hashlib.sha256(f.name.encode()).hexdigest())
            kept += members[:DEMO_PER_CLASS]
        kept.sort(key=lambda f: f.name)
        return [{"id": f.name, "text": "\n".join(f.source.splitlines()[:DEMO_LINES]), "label": f.package} for f in kept]

    def format(self, record: dict[str, Any]) -> Example:
        from lmforge.tasks import render_text, template_of

        label = str(record["label"]).strip()
        if not label:
            raise ValueError("the label is empty (task.fields.label); give every record a class")
        text = render_text(template_of(self), record)
        return Example(str(record["id"]), [Segment(text)], label=label, meta={"fields": {f: record[f] for f in self.fields}})

    def prepare(self, train: list[Example]) -> None:
        counts = Counter(e.label for e in train)
        self.labels = sorted(counts)
        self.majority = min(counts, key=lambda c: (-counts[c], c)) if counts else ""

    def score(self, predictions: list[str], examples: list[Example]) -> dict[str, float]:
        return classification_scores([str(p).strip() for p in predictions], [e.label for e in examples])

    def baseline(self, examples: list[Example]) -> list[str]:
        """The training split's majority class (after ``prepare``), else the majority of ``examples``."""
        majority = self.majority
        if not majority:
            counts = Counter(e.label for e in examples)
            majority = min(counts, key=lambda c: (-counts[c], c)) if counts else ""
        return [majority] * len(examples)

    def report(self, predictions: list[str], examples: list[Example], out_dir: Path | str | None = None) -> dict[str, Any]:
        """The per-class table, and with ``out_dir`` the confusion matrix written there."""
        predictions = [str(p).strip() for p in predictions]
        references = [e.label for e in examples]
        out: dict[str, Any] = {"per_class": per_class(predictions, references)}
        if out_dir is not None:
            out["confusion_matrix"] = str(write_confusion_matrix(predictions, references, out_dir, self.labels or None))
        return out


@hookimpl
def register_tasks(register):
    register(Classify)
