"""From token arrays to batches: the training stream, validation windows, and their loaders.

Every training sample has a global number ``g``. The stream of numbers is what a run
consumes: with ``data.sampling=random`` sample ``g`` is a window at a start drawn from a
generator seeded by ``(seed, g)``; with ``sequential`` the split is cut into
non-overlapping windows and epoch ``e`` reads them in a permutation seeded by
``(seed, e)`` (``g = e * windows + k``). Rank ``r`` of ``W`` takes the numbers with
``g % W == r``, so ranks never overlap and together they read the single-process stream.
A batch is ``(inputs, targets)``, both (B, T); targets are -100 where nothing is predicted.
Given the documents' starts, a batch also carries ``documents`` (B, T), each input
position's document id, for document-masked attention.
"""

from __future__ import annotations

from typing import Callable, Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lmforge.errors import ConfigError, DataError
from lmforge.engine.config import DataConfig

IGNORE = -100  # cross_entropy's ignore_index: positions without a target
MASK_PROB = 0.15  # BERT's share of masked positions


class RandomWindows(Dataset):
    """Sample i is the window at a start drawn from a generator seeded by (seed, i).

    The same index always gives the same window, so a run is reproducible and a resumed
    run can continue from the exact sample position. Windows hold ``seq_len + 1`` tokens
    for a causal model (targets are the inputs shifted by one), ``seq_len`` when
    ``causal=False``.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, num_samples: int, seed: int, causal: bool = True) -> None:
        self.tokens, self.num_samples, self.seed = tokens, num_samples, seed
        self.window = seq_len + int(causal)

    def __len__(self) -> int:
        return self.num_samples

    def start_of(self, i: int) -> int:
        return int(np.random.default_rng((self.seed, i)).integers(0, len(self.tokens) - self.window + 1))

    def __getitem__(self, i: int) -> torch.Tensor:
        start = self.start_of(i)
        return torch.from_numpy(self.tokens[start : start + self.window].astype(np.int64))  # (T+1,) or (T,)


class StridedWindows(Dataset):
    """Consecutive windows, ``seq_len`` apart: window i starts at token ``i * seq_len``.

    A causal window holds one token more, the last target, which the next window starts
    with as its first input; no position is predicted twice.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, limit: int | None = None, causal: bool = True) -> None:
        self.tokens, self.seq_len, self.window = tokens, seq_len, seq_len + int(causal)
        n = (len(tokens) - int(causal)) // seq_len
        self.n = min(n, limit) if limit else n

    def __len__(self) -> int:
        return self.n

    def start_of(self, i: int) -> int:
        return i * self.seq_len

    def __getitem__(self, i: int) -> torch.Tensor:
        start = self.start_of(i)
        return torch.from_numpy(self.tokens[start : start + self.window].astype(np.int64))


def document_ids(starts: np.ndarray, start: int, length: int) -> torch.Tensor:
    """(length,) int32: the document of each position from ``start`` on, counted from 0 at
    ``start``'s document. ``starts`` are the documents' first positions, ascending."""
    ids = np.searchsorted(starts, np.arange(start, start + length), side="right")
    return torch.from_numpy((ids - ids[0]).astype(np.int32))


class Objective:
    """Turns a window into ``(inputs, targets)`` for the model's training objective."""

    def __init__(self, name: str, vocab_size: int | None = None, special_ids: dict[str, int] | None = None, tokenizer: str = "") -> None:
        self.name, self.vocab_size, self.special_ids = name, vocab_size, dict(special_ids or {})
        if name not in ("causal", "masked"):
            raise ConfigError(f"model: objective {name!r} is not supported; the trainer knows causal and masked")
        if name == "masked" and "mask" not in self.special_ids:
            roles = ", ".join(sorted(self.special_ids)) or "none"
            raise ConfigError(
                f"tokenizer={tokenizer} has no mask token (its special roles: {roles}), which the masked "
                f"objective of this model needs: choose tokenizer=wordpiece"
            )
        if name == "masked" and vocab_size is None:
            raise ValueError("the masked objective needs vocab_size, to draw random replacement tokens")

    @property
    def causal(self) -> bool:
        return self.name == "causal"

    def __call__(self, window: torch.Tensor, key: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """``key`` names the sample (seed, stream, number) and seeds its mask."""
        if self.causal:
            return window[:-1], window[1:]  # (T,), (T,)
        from lmforge.masking import mask_tokens

        # seeded by the sample's number, so the mask does not depend on workers or batching
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))
        return mask_tokens(
            window,
            vocab_size=self.vocab_size,
            mask_id=self.special_ids["mask"],
            special_ids=sorted(set(self.special_ids.values())),
            prob=MASK_PROB,
            generator=generator,
        )


class TrainStream(Dataset):
    """Sample ``g`` of the global training stream, as ``(inputs, targets)``, and each input
    position's document id when ``starts`` (the documents' first positions) are given."""

    def __init__(
        self, tokens: np.ndarray, seq_len: int, sampling: str, epoch_len: int, seed: int, objective: Objective,
        starts: np.ndarray | None = None,
    ) -> None:
        self.sampling, self.epoch_len, self.seed, self.objective = sampling, epoch_len, seed, objective
        self.starts = starts
        if sampling == "random":
            self.windows: Dataset = RandomWindows(tokens, seq_len, epoch_len, seed, objective.causal)
        else:
            self.windows = StridedWindows(tokens, seq_len, causal=objective.causal)
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.epoch_len

    def window_of(self, g: int) -> int:
        """Which window sample ``g`` reads: its random-start index, or its place in the epoch's permutation."""
        if self.sampling == "random":
            return g
        epoch, k = divmod(g, self.epoch_len)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng((self.seed, epoch)).permutation(self.epoch_len))
        return int(self._perm[1][k])

    def __getitem__(self, g: int) -> tuple[torch.Tensor, ...]:
        i = self.window_of(g)
        pair = self.objective(self.windows[i], (self.seed, 0, g))
        if self.starts is None:
            return pair
        return (*pair, document_ids(self.starts, self.windows.start_of(i), len(pair[0])))


class RankSampler(Sampler[int]):
    """This rank's share of epoch ``e`` of the stream, from a position that can be restored.

    Yields ``g = e * epoch_len + k`` for ``k = rank, rank + W, ...``; every rank gets the same
    number of samples, the few left over at the end of an epoch are skipped. ``skip``
    samples are left out of the next pass only: the restored position of a resumed run.
    """

    def __init__(self, epoch_len: int, rank: int = 0, world_size: int = 1) -> None:
        self.epoch_len, self.rank, self.world_size = epoch_len, rank, world_size
        self.epoch, self.skip = 0, 0

    def __len__(self) -> int:
        return self.epoch_len // self.world_size

    def set_epoch(self, epoch: int) -> None:  # called by Lightning before each epoch
        if epoch != self.epoch:
            self.epoch, self.skip = epoch, 0

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        first = self.epoch * self.epoch_len + self.rank
        yield from range(first + skip * self.world_size, first + len(self) * self.world_size, self.world_size)


class ResumableLoader(DataLoader):
    """A DataLoader that Lightning saves and restores in checkpoints (its ``_Stateful`` protocol).

    The fit loop stores ``state_dict()`` under ``loops.fit_loop.state_dict.combined_loader``
    and calls ``load_state_dict`` before it iterates again. The position is the number
    of batches the loop has finished this epoch (``consumed``), not the number the
    loader has produced: Lightning fetches one batch ahead and workers prefetch more.
    """

    def __init__(self, dataset: Dataset, *, sampler: RankSampler, consumed: Callable[[], int], **kwargs) -> None:
        super().__init__(dataset, sampler=sampler, **kwargs)
        self.consumed = consumed

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "samples": self.consumed() * self.batch_size, "world_size": self.sampler.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        # the ranks had read the first samples x world_size numbers of the epoch between them
        read = int(state["samples"]) * int(state.get("world_size", 1))
        self.sampler.epoch, self.sampler.skip = int(state["epoch"]), read // self.sampler.world_size


class TokenDataModule(L.LightningDataModule):
    """Training stream and validation windows, split over the ranks of the run."""

    def __init__(
        self,
        train: np.ndarray,
        val: np.ndarray,
        cfg: DataConfig,
        max_steps: int,
        accumulate: int,
        seed: int,
        objective: Objective | None = None,
        starts: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """``starts``: the first position of each document in ``train`` and in ``val``; with
        them every batch carries a third (B, T) tensor, each position's document id."""
        super().__init__()
        self.cfg, self.seed, self.objective = cfg, seed, objective or Objective("causal")
        self.starts = starts
        window = cfg.seq_len + int(self.objective.causal)
        if len(train) < cfg.batch_size * window:
            raise DataError(
                f"the training split has {len(train):,} tokens but one batch needs "
                f"{cfg.batch_size}x{window}={cfg.batch_size * window:,}: lower data.seq_len or "
                f"data.batch_size, or collect more text (collector options)"
            )
        if len(val) < window:
            raise DataError(
                f"the validation split has {len(val):,} tokens, fewer than one window of {window}: "
                f"raise data.val_fraction or lower data.seq_len"
            )
        self.train_tokens, self.val_tokens = train, val
        self.samples_per_rank = max_steps * accumulate * cfg.batch_size

    @property
    def seq_len(self) -> int:
        return self.cfg.seq_len

    @property
    def tokens_per_batch(self) -> int:
        return self.cfg.batch_size * self.cfg.seq_len

    def _ranks(self) -> tuple[int, int]:
        trainer = self.trainer  # None outside a Trainer, as in tests of the loaders alone
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _consumed(self) -> int:
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed if self.trainer is not None else 0

    def train_stream(self, world_size: int) -> TrainStream:
        cfg = self.cfg
        if cfg.sampling == "random":
            epoch_len = self.samples_per_rank * world_size  # one epoch is the whole run
        else:
            epoch_len = len(StridedWindows(self.train_tokens, cfg.seq_len, causal=self.objective.causal))
            if epoch_len // world_size < cfg.batch_size:
                raise DataError(
                    f"data.sampling=sequential: the training split holds {epoch_len:,} windows of {cfg.seq_len} tokens, "
                    f"fewer than one batch of {cfg.batch_size} on each of {world_size} device(s): lower data.batch_size "
                    f"or data.seq_len, use data.sampling=random, or collect more text"
                )
        starts = self.starts[0] if self.starts is not None else None
        return TrainStream(self.train_tokens, cfg.seq_len, cfg.sampling, epoch_len, self.seed, self.objective, starts)

    def train_dataloader(self) -> ResumableLoader:
        rank, world_size = self._ranks()
        stream = self.train_stream(world_size)
        workers = self.cfg.num_workers
        return ResumableLoader(
            stream,
            sampler=RankSampler(len(stream), rank, world_size),
            consumed=self._consumed,
            batch_size=self.cfg.batch_size,
            num_workers=workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
            drop_last=True,
            generator=torch.Generator().manual_seed(self.seed),  # worker seeds, without drawing from the global RNG
        )

    def val_dataloader(self) -> DataLoader:
        rank, world_size = self._ranks()
        limit = self.cfg.val_batches * self.cfg.batch_size if self.cfg.val_batches else None
        windows = StridedWindows(self.val_tokens, self.cfg.seq_len, limit, causal=self.objective.causal)
        # each rank validates its own share; the module sums loss and window counts over ranks
        mine = list(range(rank, len(windows), world_size)) or [rank % len(windows)]
        examples = ValExamples(windows, mine, self.objective, self.seed, self.starts[1] if self.starts is not None else None)
        return DataLoader(examples, batch_size=min(self.cfg.batch_size, len(examples)), num_workers=0)


class ValExamples(Dataset):
    """Validation windows as ``(inputs, targets)``; masks are fixed, and seeded apart from training's."""

    def __init__(self, windows: StridedWindows, indices: list[int], objective: Objective, seed: int, starts: np.ndarray | None = None) -> None:
        self.windows, self.indices, self.objective, self.seed, self.starts = windows, indices, objective, seed, starts

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        j = self.indices[i]
        pair = self.objective(self.windows[j], (self.seed, 1, j))
        if self.starts is None:
            return pair
        return (*pair, document_ids(self.starts, self.windows.start_of(j), len(pair[0])))


class Windows(Dataset):
    """Ready-made ``(inputs, targets)`` windows as a stream of ``length`` samples: sample ``g``
    reads window ``perm_e[k]`` for ``g = e * n + k``, each pass's permutation seeded by
    ``(seed, e)``, so the stream (one Lightning epoch: the whole run) resumes at the exact window."""

    def __init__(self, inputs: np.ndarray, targets: np.ndarray, seed: int, length: int, documents: np.ndarray | None = None) -> None:
        self.inputs, self.targets, self.seed, self.length, self.documents = inputs, targets, seed, length, documents
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, g: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, k = divmod(g, len(self.inputs))
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng((self.seed, epoch)).permutation(len(self.inputs)))
        return window_of(self.inputs, self.targets, self.documents, int(self._perm[1][k]))


def window_of(inputs: np.ndarray, targets: np.ndarray, documents: np.ndarray | None, j: int) -> tuple[torch.Tensor, ...]:
    """Window ``j`` as ``(inputs, targets)``, and its positions' document ids when ``documents`` is given."""
    pair = (torch.from_numpy(inputs[j].astype(np.int64)), torch.from_numpy(targets[j].astype(np.int64)))
    return pair if documents is None else (*pair, torch.from_numpy(documents[j].astype(np.int32)))


class WindowDataModule(L.LightningDataModule):
    """Training and validation over ready-made windows (a fine-tuning task's), split over ranks."""

    def __init__(self, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *, batch_size: int,
                 seed: int, max_steps: int, accumulate: int = 1, val_batches: int = 0, num_workers: int = 0,
                 what: str = "data.batch_size", documents: tuple[np.ndarray, np.ndarray] | None = None,
                 tokens_per_window: int | None = None) -> None:
        super().__init__()
        self.documents = documents  # (train, val): each position's document id, carried as a third tensor
        self.tokens_per_window = tokens_per_window  # None: seq_len
        self.train_pairs, self.val_pairs, self.batch_size, self.seed = train, val, batch_size, seed
        self.samples_per_rank = max_steps * accumulate * batch_size
        self.val_batches, self.num_workers, self.what = val_batches, num_workers, what
        if not len(val[0]):
            raise DataError("the validation split holds no window: give the task more examples or a larger validation share")

    @property
    def seq_len(self) -> int:
        return int(self.train_pairs[0].shape[-1])

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * (self.tokens_per_window or self.seq_len)

    def _ranks(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> ResumableLoader:
        rank, world_size = self._ranks()
        n = len(self.train_pairs[0])
        if n < self.batch_size:
            raise DataError(
                f"the training split packs into {n:,} windows, fewer than one batch of {self.batch_size}: lower "
                f"{self.what}, or give the task more examples"
            )
        docs = self.documents[0] if self.documents is not None else None
        stream = Windows(*self.train_pairs, self.seed, self.samples_per_rank * world_size, docs)  # one epoch is the whole run
        consumed = lambda: self.trainer.fit_loop.epoch_loop.batch_progress.current.processed if self.trainer is not None else 0  # noqa: E731
        return ResumableLoader(
            stream, sampler=RankSampler(len(stream), rank, world_size), consumed=consumed, batch_size=self.batch_size,
            num_workers=self.num_workers, pin_memory=torch.cuda.is_available(), persistent_workers=self.num_workers > 0,
            drop_last=True, generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader:
        rank, world_size = self._ranks()
        n = len(self.val_pairs[0])
        if self.val_batches:
            n = min(n, self.val_batches * self.batch_size)
        mine = list(range(rank, n, world_size)) or [rank % n]
        docs = self.documents[1] if self.documents is not None else None
        pairs = [window_of(*self.val_pairs, docs, j) for j in mine]
        return DataLoader(pairs, batch_size=min(self.batch_size, len(pairs)), num_workers=0)
