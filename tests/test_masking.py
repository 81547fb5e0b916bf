"""BERT's masked-LM corruption: selection rate, the 80/10/10 split, specials, determinism."""

import pytest
import torch

from lmforge.masking import IGNORE_INDEX, mask_tokens

V, MASK = 1000, 4
SPECIALS = [0, 1, 2, 3, MASK]  # pad, unk, cls, sep, mask


def corpus(B=200, T=500, seed=0):
    """~100k ids, about 5% of them special tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    specials = torch.rand(B, T, generator=g) < 0.05
    return torch.where(specials, torch.randint(0, 5, (B, T), generator=g), ids)


def corrupt(ids, seed=1, **kwargs):
    g = torch.Generator().manual_seed(seed)
    return mask_tokens(ids, vocab_size=V, mask_id=MASK, special_ids=SPECIALS, generator=g, **kwargs)


def test_selection_rate_and_80_10_10_split():
    ids = corpus()
    inputs, labels = corrupt(ids)
    selected = labels != IGNORE_INDEX
    ordinary = ~torch.isin(ids, torch.tensor(SPECIALS))
    assert selected.sum() / ordinary.sum() == pytest.approx(0.15, abs=0.01)
    n = selected.sum()
    masked = (inputs == MASK) & selected
    kept = (inputs == ids) & selected
    replaced = selected & ~masked & ~kept
    assert masked.sum() / n == pytest.approx(0.8, abs=0.02)
    # a random draw equals the original 1 time in ~995; both shares stay within the tolerance
    assert replaced.sum() / n == pytest.approx(0.1, abs=0.02)
    assert kept.sum() / n == pytest.approx(0.1, abs=0.02)
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(inputs[~selected], ids[~selected])


def test_random_replacements_are_ordinary_tokens():
    ids = corpus()
    inputs, labels = corrupt(ids)
    replaced = (labels != IGNORE_INDEX) & (inputs != MASK) & (inputs != ids)
    assert replaced.any()
    assert not torch.isin(inputs[replaced], torch.tensor(SPECIALS)).any()
    assert int(inputs.max()) < V


def test_special_tokens_are_never_selected():
    ids = corpus()
    _, labels = corrupt(ids, prob=0.9)
    special = torch.isin(ids, torch.tensor(SPECIALS))
    assert (labels[special] == IGNORE_INDEX).all()


def test_every_row_with_an_ordinary_token_gets_a_target():
    ids = torch.tensor([[0, 2, 7, 3], [0, 2, 3, 1], [9, 9, 9, 9]])  # row 1 is all special
    for seed in range(20):
        _, labels = corrupt(ids, seed=seed, prob=0.01)
        assert (labels[0] != IGNORE_INDEX).tolist() == [False, False, True, False]
        assert (labels[1] == IGNORE_INDEX).all()
        assert (labels[2] != IGNORE_INDEX).sum() >= 1


def test_same_generator_seed_gives_the_same_result_and_another_differs():
    ids = corpus(B=4, T=64)
    a, b, c = corrupt(ids, seed=7), corrupt(ids, seed=7), corrupt(ids, seed=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_a_single_sequence_keeps_its_shape():
    ids = corpus(B=1, T=64)[0]
    inputs, labels = corrupt(ids)
    assert inputs.shape == labels.shape == (64,)
    assert torch.equal(inputs, corrupt(ids[None])[0][0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(prob=0.0), "probability"),
        (dict(mask_id=V), "mask_id=1000"),
        (dict(special_ids=[-1]), r"special ids \[-1\]"),
        (dict(vocab_size=5, mask_id=4, special_ids=[0, 1, 2, 3]), "every one of the 5 token ids is special"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs, message):
    args = {**dict(vocab_size=V, mask_id=MASK, special_ids=SPECIALS), **kwargs}
    with pytest.raises(ValueError, match=message):
        mask_tokens(torch.tensor([[0, 1, 2]]), **args)
