"""task=classify: the contract suite, the metrics against a hand computation, the confusion matrix."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from lmforge import tasks
from lmforge.contracts import Example, Segment
from lmforge.plugins.tasks import _stdlib
from lmforge.plugins.tasks.classify import Classify, classification_scores, per_class, write_confusion_matrix
from lmforge.testing import TaskContract

# 6 examples of classes a, b, c; predictions right 4 times
REFERENCES = ["a", "a", "a", "b", "b", "c"]
PREDICTIONS = ["a", "a", "b", "b", "c", "c"]


class TestClassify(TaskContract):
    component = Classify


def test_the_metrics_match_a_hand_computation():
    # a: predicted 2 times, both right; 3 true -> P 1, R 2/3.  b: predicted 2 (1 right), 2 true -> 1/2, 1/2.
    # c: predicted 2 (1 right), 1 true -> 1/2, 1.
    f1 = {"a": 2 * 1 * (2 / 3) / (1 + 2 / 3), "b": 0.5, "c": 2 * 0.5 * 1 / 1.5}
    table = per_class(PREDICTIONS, REFERENCES)
    assert table["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": f1["a"], "support": 3})
    assert table["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": f1["c"], "support": 1})
    scores = classification_scores(PREDICTIONS, REFERENCES)
    assert scores == pytest.approx({
        "accuracy": 4 / 6,
        "macro_precision": (1 + 0.5 + 0.5) / 3,
        "macro_recall": (2 / 3 + 0.5 + 1) / 3,
        "macro_f1": sum(f1.values()) / 3,
        "micro_precision": 4 / 6,
        "micro_recall": 4 / 6,
        "micro_f1": 4 / 6,
    })


def test_a_prediction_outside_the_classes_counts_against_precision_as_a_class_of_its_own():
    scores = classification_scores(["a", "zzz"], ["a", "b"])
    assert scores["accuracy"] == 0.5 and scores["macro_precision"] == pytest.approx((1 + 0 + 0) / 3)


def test_the_confusion_matrix_is_written_as_numbers_and_a_png(tmp_path):
    png = write_confusion_matrix(PREDICTIONS, REFERENCES, tmp_path / "eval")
    numbers = json.loads((tmp_path / "eval" / "confusion_matrix.json").read_text())
    assert numbers["classes"] == ["a", "b", "c"]
    assert numbers["matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]  # rows true, columns predicted
    assert png == tmp_path / "eval" / "confusion_matrix.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_baseline_is_the_training_majority_and_the_report_has_the_table(tmp_path):
    def example(label: str) -> Example:
        return Example(label, [Segment("x")], label=label)

    task = Classify()
    task.prepare([example("b"), example("a"), example("b")])
    assert task.labels == ["a", "b"] and task.baseline([example("a")] * 3) == ["b"] * 3
    report = task.report(["b", "a"], [example("a"), example("a")], tmp_path)
    assert report["per_class"]["a"]["recall"] == 0.5 and (tmp_path / "confusion_matrix.png").is_file()


def test_the_demo_names_a_functions_package_among_eight():
    data = tasks.load(Classify())
    # the 8 largest packages this Python has: tkinter is among them only where it is installed
    sizes = Counter(f.package for f in _stdlib.functions())
    assert set(data.labels) == set(sorted(sizes, key=lambda p: (-sizes[p], p))[:8])
    assert len(data.labels) == 8 and {"asyncio", "logging"} <= set(data.labels)
    example = next(e for split in data.splits.values() for e in split if e.id == "logging.getLogger")
    assert example.label == "logging" and example.segments[0].text.startswith("def getLogger(")
    counts = [sum(e.label == c for split in data.splits.values() for e in split) for c in data.labels]
    assert max(counts) / sum(counts) < 0.2  # no class dominates: the majority baseline stays weak
