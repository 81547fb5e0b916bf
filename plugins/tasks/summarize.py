"""``task=summarize``: (document, summary) pairs, scored with ROUGE-1, ROUGE-2 and ROUGE-L.

The demo is code summarization from the standard library: a function's source, without
its docstring, summarized by the docstring's first line. The baseline reads the function
name as the summary (``get_close_matches`` -> "get close matches"); for a document that
is not a function, the document's first line.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from lmforge import hookimpl
from lmforge.contracts import Example, Task, TaskConfig

ROUGE = ("rouge1", "rouge2", "rougeL")
DEMO_LINES = 15  # the demo keeps functions this short, so that a small context holds them


def rouge(predictions: list[str], references: list[str], kinds: tuple[str, ...] = ROUGE) -> dict[str, float]:
    """Mean ROUGE F1 (rouge-score, with its Porter stemmer) of each prediction against its reference, in [0, 1]."""
    from rouge_score import rouge_scorer

    logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score logs "Using default tokenizer." on each scorer
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        return {k: 0.0 for k in kinds}
    scorer = rouge_scorer.RougeScorer(list(kinds), use_stemmer=True)
    totals = dict.fromkeys(kinds, 0.0)
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(reference.strip(), prediction.strip())
        for k in kinds:
            totals[k] += scores[k].fmeasure
    return {k: totals[k] / len(references) for k in kinds}


class Summarize(Task):
    name = "summarize"
    Config = TaskConfig
    type = "generate"
    fields = ("document", "summary")
    metrics = ROUGE

    def demo(self) -> list[dict[str, Any]]:
        from lmforge.plugins.tasks._stdlib import functions

        return [
            {"id": f.name, "document": f.source, "summary": f.summary}
            for f in functions()
            if 3 <= len(f.summary.split()) <= 24 and len(f.source.splitlines()) <= DEMO_LINES
        ]

    def format(self, record: dict[str, Any]) -> Example:
        from lmforge.tasks import render_fields, template_of

        segments = render_fields(template_of(self), record, "summary")
        return Example(str(record["id"]), segments, meta={"fields": {f: record[f] for f in self.fields}})

    def score(self, predictions: list[str], examples: list[Example]) -> dict[str, float]:
        return rouge(predictions, [e.reference for e in examples])

    def baseline(self, examples: list[Example]) -> list[str]:
        from lmforge.plugins.tasks._stdlib import words

        out = []
        for e in examples:
            document = str(e.meta["fields"]["document"])
            match = re.search(r"\b(?:def|class)\s+(\w+)", document)
            lines = [line for line in document.splitlines() if line.strip()]
            out.append(words(match.group(1)) if match else (lines[0].strip() if lines else ""))
        return out


@hookimpl
def register_tasks(register):
    register(Summarize)
