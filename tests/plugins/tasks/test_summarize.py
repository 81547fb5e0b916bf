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


SAMPLE = [-3, -2, 0, 1, 2, 5]  # something of every filter's kind, so no reduction is over nothing
REDUCE = {"the sum of the ": sum, "the number of ": len, "the largest of the ": max, "the smallest of the ": min,
          "a list of the ": list, "the sorted ": sorted}
MAP = {"squares of the ": lambda v: v * v, "absolute values of the ": abs, "doubles of the ": lambda v: v * 2, "": lambda v: v}
FILTER = {"positive ": lambda v: v > 0, "negative ": lambda v: v < 0, "even ": lambda v: v % 2 == 0, "odd ": lambda v: v % 2 == 1,
          "nonzero ": lambda v: v != 0, "": lambda v: True}


def test_every_demo_summary_says_what_its_function_computes():
    records = Summarize().demo()
    assert len(records) >= 1000 and len({r["summary"] for r in records}) >= 100
    for record in records:
        text = record["summary"]
        reduce_words = next(w for w in REDUCE if text.startswith("Return " + w))
        rest = text[len("Return " + reduce_words):]
        map_words = next(w for w in MAP if w and rest.startswith(w)) if any(w and rest.startswith(w) for w in MAP) else ""
        rest = rest[len(map_words):]
        filter_words = next(w for w in FILTER if w and rest.startswith(w)) if any(w and rest.startswith(w) for w in FILTER) else ""
        argument = rest[len(filter_words):].removeprefix("values in ").removesuffix(".")
        scope: dict = {}
        exec(record["document"], scope)  # the generated function, run
        function = next(v for k, v in scope.items() if k != "__builtins__")
        assert function.__code__.co_varnames[0] == argument, record
        expected = REDUCE[reduce_words]([MAP[map_words](v) for v in SAMPLE if FILTER[filter_words](v)])
        assert function(list(SAMPLE)) == expected, record


def test_a_demo_example_prompts_with_the_function_and_targets_its_summary():
    data = tasks.load(Summarize())
    example = data["train"][0]
    assert example.prompt.startswith("def ") and example.prompt.endswith("\nSummary: ")
    assert example.reference == example.meta["fields"]["summary"] and example.reference.startswith("Return ")


def test_the_baseline_reads_the_function_name_else_the_first_line():
    def example(document: str) -> Example:
        return Example("x", [Segment(document), Segment("s", target=True)], meta={"fields": {"document": document, "summary": "s"}})

    task = Summarize()
    assert task.baseline([example("def get_close_matches(word):\n    pass"), example("\nA plain text.\nMore.")]) == ["get close matches", "A plain text."]
