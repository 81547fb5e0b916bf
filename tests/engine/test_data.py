import numpy as np
import pytest
import torch

from lmforge.errors import ConfigError, DataError
from lmforge.engine.data import (
    Objective,
    RandomWindows,
    RankSampler,
    ResumableLoader,
    StridedWindows,
    TokenDataModule,
    TrainStream,
)
from lmforge.engine.config import DataConfig

WORDPIECE_SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}


def stream(sampling: str, tokens=np.arange(1000, dtype=np.uint16), seq_len=10, epoch_len=None, objective=None):
    objective = objective or Objective("causal")
    n = epoch_len or len(StridedWindows(tokens, seq_len, causal=objective.causal))
    return TrainStream(tokens, seq_len, sampling, n, seed=7, objective=objective)


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
    assert len(windows) == 9 and windows[0][0] == 0 and windows[1][0] == 10 and len(windows[0]) == 11
    assert len(StridedWindows(tokens, 10, limit=3)) == 3
    masked = StridedWindows(tokens, 10, causal=False)
    assert len(masked) == 10 and len(masked[9]) == 10 and masked[9][-1] == 99


def test_a_causal_sample_is_inputs_and_the_targets_shifted_by_one():
    inputs, targets = stream("random")[3]
    assert inputs.shape == targets.shape == (10,) and inputs.dtype == torch.long
    assert (targets[:-1] == inputs[1:]).all() and targets[-1] == inputs[-1] + 1


def test_sequential_sampling_reads_every_window_once_per_epoch_in_a_new_order():
    s = stream("sequential")
    n = s.epoch_len
    first = [s.window_of(g) for g in range(n)]
    second = [s.window_of(g) for g in range(n, 2 * n)]
    assert sorted(first) == sorted(second) == list(range(n))
    assert first != second and first != sorted(first)
    starts = {int(s[g][0][0]) for g in range(n)}
    assert starts == {10 * j for j in range(n)}  # non-overlapping windows, each once


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_read_disjoint_shares_whose_union_is_the_single_process_stream(world_size):
    single = list(RankSampler(12, 0, 1))
    shares = [list(RankSampler(12, r, world_size)) for r in range(world_size)]
    assert all(len(s) == 12 // world_size for s in shares)
    flat = [g for s in shares for g in s]
    assert len(flat) == len(set(flat)) and sorted(flat) == single[: len(flat)]
    for sampler in (RankSampler(12, 1, world_size),):
        sampler.set_epoch(2)
        assert list(sampler)[0] == 2 * 12 + 1  # later epochs continue the global numbering


def test_the_loader_resumes_from_the_position_it_reports():
    """A loader restored from state_dict() yields exactly what the first one had left."""
    s = stream("sequential")
    consumed = {"n": 0}

    def loader():
        return ResumableLoader(s, sampler=RankSampler(len(s), 0, 1), consumed=lambda: consumed["n"], batch_size=4, drop_last=True)

    first = loader()
    first.sampler.set_epoch(1)
    batches = [inputs for inputs, _ in first]
    consumed["n"] = 3  # the fit loop finished three batches when the checkpoint was taken
    state = first.state_dict()
    assert state == {"epoch": 1, "samples": 12, "world_size": 1}
    again = loader()
    again.load_state_dict(state)
    again.sampler.set_epoch(1)  # Lightning sets the epoch again after restoring: the position stays
    rest = [inputs for inputs, _ in again]
    assert len(rest) == len(batches) - 3 and all((a == b).all() for a, b in zip(rest, batches[3:]))
    assert len(list(again)) == len(batches)  # the skip applies once; the next pass is a whole epoch


def test_masked_samples_predict_only_masked_positions_and_are_fixed_by_sample_number():
    objective = Objective("masked", vocab_size=1000, special_ids=WORDPIECE_SPECIAL)
    s = stream("random", tokens=np.arange(5, 1000, dtype=np.uint16), objective=objective)
    (inputs, targets), (again, targets2) = s[11], s[11]
    assert inputs.shape == targets.shape == (10,)
    assert (inputs == again).all() and (targets == targets2).all()
    predicted = targets != -100
    assert predicted.any() and (targets[predicted] >= 5).all()
    window = s.windows[11]
    assert (inputs[~predicted] == window[~predicted]).all() and (targets[predicted] == window[predicted]).all()


def test_the_masked_objective_without_a_mask_token_names_the_tokenizer_to_choose():
    with pytest.raises(ConfigError, match=r"tokenizer=bpe has no mask token \(its special roles: eos, pad\).*choose tokenizer=wordpiece"):
        Objective("masked", vocab_size=512, special_ids={"eos": 0, "pad": 1}, tokenizer="bpe")


def test_a_corpus_smaller_than_one_batch_gives_the_numbers_and_the_keys():
    cfg = DataConfig(seq_len=32, batch_size=16)
    with pytest.raises(DataError, match=r"has 100 tokens but one batch needs 16x33=528: lower data.seq_len or data.batch_size"):
        TokenDataModule(np.zeros(100, np.uint16), np.zeros(100, np.uint16), cfg, 10, 1, 0)


def test_a_validation_split_shorter_than_a_window_names_val_fraction():
    cfg = DataConfig(seq_len=32, batch_size=2)
    with pytest.raises(DataError, match="data.val_fraction"):
        TokenDataModule(np.zeros(1000, np.uint16), np.zeros(10, np.uint16), cfg, 10, 1, 0)


def test_an_unknown_sampling_names_the_choices():
    with pytest.raises(ValueError, match="sampling must be random or sequential"):
        DataConfig(sampling="shuffled")


def test_the_data_module_gives_batches_of_inputs_and_targets():
    cfg = DataConfig(seq_len=8, batch_size=4, val_batches=2, sampling="sequential")
    dm = TokenDataModule(np.arange(400, dtype=np.uint16), np.arange(100, dtype=np.uint16), cfg, 5, 1, 0)
    inputs, targets = next(iter(dm.train_dataloader()))
    assert inputs.shape == targets.shape == (4, 8)
    val_inputs, val_targets = next(iter(dm.val_dataloader()))
    assert (val_inputs[0] == torch.arange(8)).all() and (val_targets[0] == torch.arange(1, 9)).all()


def test_a_position_saved_on_two_ranks_resumes_on_one_after_what_both_had_read():
    one = ResumableLoader(stream("random", epoch_len=40), sampler=RankSampler(40), consumed=lambda: 0, batch_size=4)
    one.load_state_dict({"epoch": 0, "samples": 8, "world_size": 2})  # each of 2 ranks had read 8: numbers 0..15
    assert list(one.sampler)[0] == 16
