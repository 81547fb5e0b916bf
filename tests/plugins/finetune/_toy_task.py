"""A throwaway generative task for lmforge finetune's tests, registered through a real entry
point: say whether a word is a fruit (1) or a letter of the NATO alphabet (0). The answers
are single tokens of a tokenizer trained on Python code, so a tiny model learns them in a
few steps."""

from __future__ import annotations

from lmforge import hookimpl
from lmforge.contracts import Example, Segment, Task, TaskConfig

FRUITS = "apple banana cherry grape lemon mango olive peach pear plum melon kiwi lime fig date guava".split()
LETTERS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike oscar papa romeo".split()


class Kind(Task):
    name = "kind"
    Config = TaskConfig
    type = "generate"
    fields = ("word", "kind")
    metrics = ("exact",)
    special_tokens = ("<|is|>",)

    def demo(self):
        words = [(w, "fruit") for w in FRUITS] + [(w, "letter") for w in LETTERS]
        return [{"id": f"{w}-{i}", "word": w, "kind": k} for i in range(8) for w, k in words]

    def format(self, record):
        return Example(record["id"], [Segment(f"{record['word']} <|is|>"), Segment(" 1" if record["kind"] == "fruit" else " 0", target=True)])

    def score(self, predictions, examples):
        hits = sum(p.split()[:1] == e.reference.split() for p, e in zip(predictions, examples))  # the reply's first word
        return {"exact": hits / max(1, len(examples))}

    def baseline(self, examples):
        return [e.prompt.split()[0] for e in examples]  # repeat the word


@hookimpl
def register_tasks(register):
    register(Kind)
