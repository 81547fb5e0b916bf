"""``guard=classifier``: a run fine-tuned with ``task=classify`` as the moderation model.

Llama Guard-style, but small: fine-tune any run on labelled safe and unsafe texts
(``lmforge finetune task=classify task.data=moderation.jsonl``), then point ``run`` at it.
The labels listed in ``safe`` are safe; every other label is a hazard category. A text is
``action`` (block or flag) when the probability of the unsafe labels together reaches
``threshold``; its categories are the unsafe labels, likeliest first, scored with their
probabilities.

A reply is re-classified whole each time ``stride`` more characters have come, and at its
end; the text since the last check is held back until it passes.

Importing this module is cheap: torch loads on the first check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from lmforge import hookimpl
from lmforge.contracts import Guard, GuardConfig, Scanner, Verdict


@dataclass
class ClassifierGuardConfig(GuardConfig):
    run: str = ""  # a run directory fine-tuned with task=classify (required)
    checkpoint: Optional[str] = None  # a .ckpt of that run; null = the run's own
    safe: List[str] = field(default_factory=lambda: ["safe"])  # the labels that are safe
    threshold: float = 0.5  # the unsafe labels' probability, together, that triggers the action
    action: str = "block"  # block | flag
    stride: int = 64  # a streamed reply is re-checked every this many characters, and at its end
    device: str = "cpu"  # where the moderation model runs

    def __post_init__(self) -> None:
        if self.action not in ("block", "flag"):
            raise ValueError(f"action={self.action!r}: use block (refuse) or flag (let through, logged)")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold={self.threshold}: a probability above 0 and at most 1, such as 0.5")
        if self.stride < 0:
            raise ValueError(f"stride={self.stride}: characters between checks, 0 (every chunk) or more; e.g. stride=64")
        if not self.safe:
            raise ValueError("safe=[]: name the label(s) of safe texts, e.g. safe=[safe]")


class ClassifierGuard(Guard):
    name = "classifier"
    Config = ClassifierGuardConfig

    def __init__(self, config: ClassifierGuardConfig | None = None) -> None:
        super().__init__(config)
        self._model = None
        self._tokenizer = None

    def setup(self) -> None:
        from lmforge.errors import ConfigError
        from lmforge.runs import Run

        c = self.config
        if not c.run:
            raise ConfigError("guard.run is empty: guard=classifier needs a run fine-tuned with task=classify; e.g. --guard-option run=runs/moderation")
        run = Run.open(c.run)
        if run.head is None:
            raise ConfigError(
                f"guard.run={c.run}: not a classify run (it has no classification head, classifier.json): fine-tune one with "
                f"`lmforge finetune task=classify base={c.run}` on labelled safe and unsafe texts, and point guard.run at that"
            )
        labels = list(run.head.labels)
        if not set(c.safe) & set(labels) or set(labels) <= set(c.safe):
            raise ConfigError(
                f"guard.safe={list(c.safe)}: the run {c.run} has the labels {labels}; list the safe one(s) among them and leave at least one unsafe"
            )
        self._model = run.model(c.checkpoint, device=c.device)
        self._tokenizer = run.tokenizer

    def probabilities(self, texts: list[str]) -> list[dict[str, float]]:
        """Each text's probability of each label."""
        from lmforge.engine import encode_rows, predict_proba

        if self._model is None:
            self.setup()
        rows, _ = encode_rows(self._tokenizer, texts, self._model.record, "truncate")
        labels = self._model.labels
        return [dict(zip(labels, p.tolist())) for batch in predict_proba(self._model, rows, device=self.config.device) for p in batch]

    def check(self, text: str) -> Verdict:
        probs = self.probabilities([text])[0]
        unsafe = {label: p for label, p in probs.items() if label not in self.config.safe}
        scores = {label: round(p, 4) for label, p in unsafe.items()}
        if sum(unsafe.values()) < self.config.threshold:
            return Verdict("allow", (), scores)
        return Verdict(self.config.action, tuple(sorted(unsafe, key=lambda k: -unsafe[k])), scores)

    def scanner(self) -> Scanner:
        return Scanner(self, stride=self.config.stride)


@hookimpl
def register_guards(register):
    register(ClassifierGuard)
