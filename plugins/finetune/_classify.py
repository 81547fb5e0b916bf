"""``lmforge finetune`` on a ``classify`` task: the head on the base model, its data, its record.

The seam ``lmforge finetune`` calls when ``task.type == "classify"`` (it builds the run
directory, the tokenizer, the records, resume and the trainer; this module the rest)::

    prepared = prepare(model, tokenizer, task, splits, objective=..., seq_len=..., batch_size=..., seed=...)
    fitted = engine.fit(prepared.model, prepared.data, vocab_size=prepared.vocab_size, ...)
    save_head(run_dir, prepared.head)                  # classifier.json: Run.model() rebuilds the head from it
    scores = validation_scores(prepared.model, tokenizer, task, splits["validation"], device=...)

- ``model`` is the base run's built model with its weights (``Run.model()``), any
  architecture: ``lmforge.classifier.Classifier`` pools at ``[CLS]`` for an encoder
  (``objective="masked"``) and at the last real token for a decoder.
- ``splits`` maps split names to ``Example`` lists (``train``, ``validation``, ``test``);
  an example's text is its segments joined, its label ``Example.label``.
- batches are ``(inputs (B, T), targets (B, 1))``: the engine's loss and metrics apply
  unchanged (``val_top1`` is the accuracy), with ``vocab_size`` = the number of labels.
- overlong examples are truncated or dropped per ``task.config.overlong``;
  ``prepared.counts`` holds how many, per split, for the log and ``summary.json``.

The checkpoint holds the head's weights beside the model's (``model.lm.*``,
``model.norm.*``, ``model.score.*``); ``classifier.json`` holds the labels, the pooling
and the row length, so ``lmforge.runs.Run.open(run_dir).model()`` returns the classifier.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import DataError
from lmforge.files import atomic_write_json

if TYPE_CHECKING:
    import torch

    from lmforge.contracts import Example, Task, Tokenizer

log = logging.getLogger("lmforge")

HEAD_FILE = "classifier.json"  # the same name lmforge.runs reads


@dataclass
class Prepared:
    """What ``prepare`` hands back to ``lmforge finetune``."""

    model: "torch.nn.Module"  # lmforge.classifier.Classifier around the base model
    data: Any  # lmforge.engine.LabelData: (inputs, targets) batches for engine.fit
    head: Any  # lmforge.classifier.Head: what classifier.json records
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> {"truncated": n, "dropped": n}

    @property
    def vocab_size(self) -> int:
        """What ``engine.fit`` takes as ``vocab_size``: the classes its metrics count over."""
        return len(self.head.labels)


def text_of(example: "Example") -> str:
    return "".join(s.text for s in example.segments)


def split(splits: dict[str, list["Example"]], *names: str) -> list["Example"]:
    """The first of ``names`` present in ``splits`` (``validation`` or ``val``)."""
    for name in names:
        if name in splits:
            return splits[name]
    raise DataError(f"the task's data has no {names[0]} split (it has {', '.join(splits) or 'none'})")


def labelled(tokenizer: "Tokenizer", examples: list["Example"], head, overlong: str) -> tuple[list[list[int]], list[int], Counter]:
    """Rows and label indices of ``examples``; dropped rows are left out, unknown labels are an error."""
    from lmforge.engine import encode_rows

    index = {label: i for i, label in enumerate(head.labels)}
    if unknown := sorted({e.label for e in examples} - set(index)):
        raise DataError(
            f"task={head.task}: label(s) {', '.join(map(repr, unknown))} are not among the {len(index)} the head was "
            f"trained on ({', '.join(head.labels)}): fine-tune on data that holds them"
        )
    rows, counts = encode_rows(tokenizer, [text_of(e) for e in examples], head, overlong)
    kept = [(r, index[e.label]) for r, e in zip(rows, examples) if r is not None]
    return [r for r, _ in kept], [y for _, y in kept], counts


def prepare(
    model: "torch.nn.Module",
    tokenizer: "Tokenizer",
    task: "Task",
    splits: dict[str, list["Example"]],
    *,
    objective: str,
    seq_len: int,
    batch_size: int,
    seed: int,
) -> Prepared:
    """Wrap ``model`` in a classification head over the labels of the training split and
    build the data module of the train and validation splits, rows of ``seq_len`` at most."""
    from lmforge import engine
    from lmforge.classifier import Classifier, head_for

    train, val = split(splits, "train"), split(splits, "validation", "val")
    labels = sorted({e.label for e in train})
    seq_len = min(seq_len, getattr(model, "max_seq_len", seq_len))
    head = head_for(labels, objective=objective, tokenizer=tokenizer, seq_len=seq_len, task=task.name)
    overlong = getattr(task.config, "overlong", "truncate")
    x_train, y_train, c_train = labelled(tokenizer, train, head, overlong)
    x_val, y_val, c_val = labelled(tokenizer, val, head, overlong)
    head.seq_len = max(len(r) for r in x_train + x_val)  # pad no further than the longest row needs
    data = engine.LabelData((x_train, y_train), (x_val, y_val), head, batch_size=batch_size, seed=seed)
    classifier = Classifier(model, head)
    log.info(
        "classifier: %d labels, pooled at %s, features %s, rows of %d tokens",
        len(labels), "[CLS]" if head.pooling == "first" else "the last token",
        "hidden[-1]" if classifier.uses_hidden else "log-probabilities", head.seq_len,
    )
    counts = {name: dict(c) for name, c in (("train", c_train), ("validation", c_val)) if c}
    for name, c in counts.items():
        log.info("%s split: %s", name, ", ".join(f"{n} examples {k} (task.overlong={overlong})" for k, n in c.items()))
    return Prepared(classifier, data, head, counts)


def save_head(run_dir: Path, head) -> Path:
    """Write ``classifier.json`` into ``run_dir``, atomically."""
    path = Path(run_dir) / HEAD_FILE
    atomic_write_json(path, head.to_json())
    return path


def predict(model: "torch.nn.Module", tokenizer: "Tokenizer", examples: list["Example"], *, batch_size: int = 32, device: str = "cpu") -> list[str]:
    """The label the classifier gives each example (overlong texts are truncated here, never dropped)."""
    from lmforge import engine

    return engine.predict_labels(model, tokenizer, [text_of(e) for e in examples], batch_size=batch_size, device=device)


def validation_scores(model, tokenizer, task: "Task", examples: list["Example"], head=None, *, batch_size: int = 32, device: str = "cpu") -> dict[str, float]:
    """The task's metrics on ``examples`` (the validation split), for ``summary.json``. ``head``
    is optional: the classifier carries its own (``model.record``)."""
    return task.score(predict(model, tokenizer, examples, batch_size=batch_size, device=device), examples)
