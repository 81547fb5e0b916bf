import numpy as np
import pytest

from lmforge.errors import DataError
from lmforge.plugins.training.data import RandomWindows, StridedWindows, TokenDataModule
from lmforge.schemas import DataConfig


def test_random_windows_are_reproducible_by_index_and_shifted_by_one():
    tokens = np.arange(1000, dtype=np.uint16)
    a, b = RandomWindows(tokens, 16, 100, seed=3), RandomWindows(tokens, 16, 100, seed=3)
    assert all((a[i] == b[i]).all() for i in range(20))
    w = a[5]
    assert w.shape == (17,) and (w[1:] - w[:-1] == 1).all()
    assert not (RandomWindows(tokens, 16, 100, seed=4)[5] == w).all()


def test_strided_windows_cover_the_split_in_order():
    tokens = np.arange(100, dtype=np.uint16)
    windows = StridedWindows(tokens, 10)
    assert len(windows) == 9 and windows[0][0] == 0 and windows[1][0] == 10
    assert len(StridedWindows(tokens, 10, limit=3)) == 3


def test_a_corpus_smaller_than_one_batch_gives_the_numbers_and_the_keys():
    cfg = DataConfig(seq_len=32, batch_size=16)
    with pytest.raises(DataError, match=r"has 100 tokens but one batch needs 16x33=528: lower data.seq_len or data.batch_size"):
        TokenDataModule(np.zeros(100, np.uint16), np.zeros(100, np.uint16), cfg, 10, 1, 0)


def test_a_validation_split_shorter_than_a_window_names_val_fraction():
    cfg = DataConfig(seq_len=32, batch_size=2)
    with pytest.raises(DataError, match="data.val_fraction"):
        TokenDataModule(np.zeros(1000, np.uint16), np.zeros(10, np.uint16), cfg, 10, 1, 0)
