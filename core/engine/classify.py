"""Training and predicting with a classification head (``lmforge.classifier.Classifier``).

- ``encode_rows`` turns texts into rows of token ids the way the head reads them (``[CLS]``
  first when it pools there), ``pad_rows`` pads them with ``PAD``;
- ``LabelData`` makes the ``(inputs (B, T), targets (B, 1))`` data module ``fit`` takes:
  the head's logits are (B, 1, K), so the engine's loss and metrics apply unchanged
  (``val_top1`` is the accuracy, ``val_precision``/``val_recall``/``val_f1`` the macro scores);
- ``predict_proba`` and ``predict_labels`` score rows and texts.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterator, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lmforge.classifier import PAD, Classifier, Head
from lmforge.engine.data import RankSampler, ResumableLoader
from lmforge.errors import DataError


def encode_rows(tokenizer, texts: Sequence[str], head: Head, overlong: str = "truncate") -> tuple[list[list[int] | None], Counter]:
    """Token rows for the head: ``[CLS]`` first when it pools there, at most ``head.seq_len``.

    An overlong text keeps its first tokens (``overlong="truncate"``) or becomes None
    (``"drop"``); both are counted, as ``counts["truncated"]``/``counts["dropped"]``.
    """
    counts: Counter = Counter()
    rows: list[list[int] | None] = []
    prefix = [head.cls_id] if head.pooling == "first" else []
    for ids in tokenizer.encode_batch(list(texts)):
        ids = prefix + list(ids)
        if not ids:  # an empty text: the pad token stands in, so the row has a position to pool
            ids = [head.pad_id]
        if len(ids) > head.seq_len:
            if overlong == "drop":
                counts["dropped"] += 1
                rows.append(None)
                continue
            counts["truncated"] += 1
            ids = ids[: head.seq_len]
        rows.append(ids)
    return rows, counts


def pad_rows(rows: Sequence[Sequence[int]], seq_len: int) -> torch.Tensor:
    """(B, seq_len) long, ``PAD`` after each row's tokens."""
    out = torch.full((len(rows), seq_len), PAD, dtype=torch.long)
    for i, ids in enumerate(rows):
        out[i, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
    return out


class _Rows(Dataset):
    """Example ``i`` as ``(inputs (T,), target (1,))``."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[i], self.targets[i : i + 1]


class _Epochs(Dataset):
    """Sample ``g`` of the training stream: pass ``g // n`` over the n rows reads them in a
    permutation seeded by ``(seed, pass)``, so that a resumed run reads exactly what it would
    have. The stream is as long as the run (``length``): one Lightning epoch, as with
    ``data.sampling=random``, so validation and checkpoints follow steps, not passes."""

    def __init__(self, rows: _Rows, seed: int, length: int) -> None:
        self.rows, self.seed, self.length = rows, seed, length
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, g: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.rows)
        rows_pass, k = divmod(g, n)
        if self._perm is None or self._perm[0] != rows_pass:
            self._perm = (rows_pass, np.random.default_rng((self.seed, rows_pass)).permutation(n))
        return self.rows[int(self._perm[1][k])]


class LabelData(L.LightningDataModule):
    """Labelled rows as ``(inputs (B, T), targets (B, 1))`` batches for ``fit`` and ``validate``.

    ``train`` and ``val`` are ``(rows, label indices)``, rows from ``encode_rows``. Training
    reads as many batches as the trainer's ``max_steps`` take, reshuffling the rows after
    each pass over them; validation reads every row once.
    """

    def __init__(
        self, train: tuple[list[list[int]], list[int]], val: tuple[list[list[int]], list[int]], head: Head, *,
        batch_size: int, seed: int,
    ) -> None:
        super().__init__()
        self.head, self.batch_size, self.seed = head, batch_size, seed
        for name, (rows, labels) in (("train", train), ("validation", val)):
            if not rows:
                raise DataError(f"the {name} split of task={head.task} has no examples: add data or change task.split")
            if len(rows) != len(labels):
                raise ValueError(f"{name}: {len(rows)} rows but {len(labels)} labels")
        if len(train[0]) < batch_size:
            raise DataError(
                f"the training split of task={head.task} has {len(train[0])} examples, fewer than one batch of "
                f"{batch_size}: lower the batch size or add data"
            )
        self.train_rows = _Rows(pad_rows(train[0], head.seq_len), torch.as_tensor(train[1], dtype=torch.long))
        self.val_rows = _Rows(pad_rows(val[0], head.seq_len), torch.as_tensor(val[1], dtype=torch.long))

    @property
    def seq_len(self) -> int:
        return self.head.seq_len

    @property
    def tokens_per_batch(self) -> int:
        """Real (unpadded) tokens in an average training batch, for throughput."""
        real = (self.train_rows.inputs != PAD).sum().item() / len(self.train_rows)
        return int(round(real * self.batch_size))

    def _ranks(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _consumed(self) -> int:
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed if self.trainer is not None else 0

    def train_dataloader(self) -> ResumableLoader:
        rank, world_size = self._ranks()
        trainer = self.trainer
        steps = trainer.max_steps * trainer.accumulate_grad_batches if trainer is not None and trainer.max_steps > 0 else 0
        # the whole run is one epoch: outside a trainer (or without max_steps), one pass over the rows
        stream = _Epochs(self.train_rows, self.seed, steps * self.batch_size * world_size or len(self.train_rows))
        return ResumableLoader(
            stream, sampler=RankSampler(len(stream), rank, world_size), consumed=self._consumed,
            batch_size=self.batch_size, drop_last=True, num_workers=0,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_rows, batch_size=self.batch_size, num_workers=0)


@torch.no_grad()
def predict_proba(model: Classifier, rows: Sequence[Sequence[int]], *, batch_size: int = 32, device: str | torch.device = "cpu") -> Iterator[torch.Tensor]:
    """The label probabilities of each batch of ``rows``, (B, K) float, in order."""
    model.eval().to(device)
    for start in range(0, len(rows), batch_size):
        idx = pad_rows(rows[start : start + batch_size], model.record.seq_len).to(device)
        yield model(idx).logits[:, 0].float().softmax(dim=-1).cpu()


def predict_labels(model: Classifier, tokenizer, texts: Sequence[str], *, batch_size: int = 32, device: str | torch.device = "cpu") -> list[str]:
    """The label ``model`` gives each text; an overlong text is truncated, never dropped."""
    rows, _ = encode_rows(tokenizer, texts, model.record, "truncate")
    return [model.labels[int(i)] for batch in predict_proba(model, rows, batch_size=batch_size, device=device) for i in batch.argmax(dim=-1)]
