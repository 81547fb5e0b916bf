"""task=summarize: the contract suite, ROUGE against a hand computation, and the name baseline."""

from __future__ import annotations

import pytest

from lmforge import tasks
from lmforge.contracts import Example, Segment
from lmforge.plugins.tasks.summarize import Summarize, rouge
from lmforge.testing import TaskContract


class TestSummarize(TaskContract):
    component = Summarize


def test_rouge_matches_a_hand_computation():
    # "the cat sat" vs "the cat sat on the mat": 3 of 3 unigrams match, 3 of 6 reference ones,
    # so F1 = 2 * 1 * 0.5 / 1.5; bigrams: 2 of 2 and 2 of 5; the longest common subsequence is 3
    # words. The second pair shares nothing. Each metric is the mean over the two pairs.
    scores = rouge(["the cat sat", "a dog"], ["the cat sat on the mat", "the cat"])
    assert scores["rouge1"] == pytest.approx((2 * 1 * 0.5 / 1.5 + 0) / 2)
    assert scores["rouge2"] == pytest.approx((2 * 1 * 0.4 / 1.4 + 0) / 2)
    assert scores["rougeL"] == pytest.approx(scores["rouge1"])


def test_the_demo_summarizes_a_function_without_its_docstring():
    data = tasks.load(Summarize())
    example = next(e for split in data.splits.values() for e in split if e.id == "statistics.mean")
    assert example.prompt.startswith("def mean(data):\n    T, total, n = _sum(data)") and example.prompt.endswith("\nSummary: ")
    assert '"""' not in example.prompt and example.reference == "Return the sample arithmetic mean of data."


def test_the_baseline_reads_the_function_name_else_the_first_line():
    def example(document: str) -> Example:
        return Example("x", [Segment(document), Segment("s", target=True)], meta={"fields": {"document": document, "summary": "s"}})

    task = Summarize()
    assert task.baseline([example("def get_close_matches(word):\n    pass"), example("\nA plain text.\nMore.")]) == ["get close matches", "A plain text."]
