"""From token arrays to batches: random training windows and fixed validation windows."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lmforge.errors import DataError
from lmforge.schemas import DataConfig


class RandomWindows(Dataset):
    """Sample i is the window at a start drawn from a generator seeded by (seed, i).

    The same index always gives the same window, so a run is reproducible and a resumed
    run can continue from the exact sample position.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, num_samples: int, seed: int) -> None:
        self.tokens, self.seq_len, self.num_samples, self.seed = tokens, seq_len, num_samples, seed

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> torch.Tensor:
        start = np.random.default_rng((self.seed, i)).integers(0, len(self.tokens) - self.seq_len)
        return torch.from_numpy(self.tokens[start : start + self.seq_len + 1].astype(np.int64))  # (T+1,)


class StridedWindows(Dataset):
    """Consecutive non-overlapping windows: the validation split, read in order."""

    def __init__(self, tokens: np.ndarray, seq_len: int, limit: int | None = None) -> None:
        self.tokens, self.seq_len = tokens, seq_len
        n = (len(tokens) - 1) // seq_len
        self.n = min(n, limit) if limit else n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        start = i * self.seq_len
        return torch.from_numpy(self.tokens[start : start + self.seq_len + 1].astype(np.int64))


class TokenDataModule(L.LightningDataModule):
    def __init__(self, train: np.ndarray, val: np.ndarray, cfg: DataConfig, max_steps: int, accumulate: int, seed: int):
        super().__init__()
        self.cfg, self.seed = cfg, seed
        window = cfg.seq_len + 1
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
        self.num_samples = max_steps * accumulate * cfg.batch_size

    def _loader(self, dataset: Dataset) -> DataLoader:
        workers = self.cfg.num_workers
        return DataLoader(
            dataset,
            batch_size=self.cfg.batch_size,
            shuffle=False,  # randomness lives in the dataset, indexed by sample number
            num_workers=workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
            drop_last=True,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(RandomWindows(self.train_tokens, self.cfg.seq_len, self.num_samples, self.seed))

    def val_dataloader(self) -> DataLoader:
        limit = self.cfg.val_batches * self.cfg.batch_size if self.cfg.val_batches else None
        windows = StridedWindows(self.val_tokens, self.cfg.seq_len, limit)
        return DataLoader(windows, batch_size=min(self.cfg.batch_size, len(windows)), num_workers=0)
