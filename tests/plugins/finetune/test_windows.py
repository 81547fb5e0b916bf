"""Examples as training windows: target-only labels, packing with boundaries, overlong examples."""

from __future__ import annotations

import numpy as np
import pytest

from lmforge.contracts import Example, Segment
from lmforge.plugins.finetune._data import IGNORE, Encoded, encode, pack, pairs


class Chars:
    """A real (if small) tokenizer: one id per character, ``#`` is the eos."""

    special_ids = {"eos": 0, "pad": 1}

    def encode_batch(self, texts):
        return [[2 + ord(c) - ord("a") if c.isalpha() else 30 for c in t] for t in texts]


def test_targets_only_at_target_tokens():
    """A position predicts the next token only where that token is a target; the eos ends the reply."""
    ex = Example("1", [Segment("ab "), Segment("cd", target=True)])
    [enc] = encode([ex], Chars(), eos=0)
    assert enc.ids == [2, 3, 30, 4, 5, 0] and enc.target == [False, False, False, True, True, True]
    inputs, targets = pairs(enc.ids, enc.target)
    assert inputs == [2, 3, 30, 4, 5]
    assert targets == [IGNORE, IGNORE, 4, 5, 0]  # position 2 (the space) predicts the first target token


def test_chat_turns_each_carry_their_own_targets():
    ex = Example("1", [Segment("u"), Segment("a", target=True), Segment("u"), Segment("b", target=True)])
    [enc] = encode([ex], Chars(), eos=0)
    _, targets = pairs(enc.ids, enc.target)
    assert [t for t in targets if t != IGNORE] == [2, 3, 0]


def examples(n: int, length: int):
    return [Encoded(list(range(10 + i, 10 + i + length)), [False] * (length // 2) + [True] * (length - length // 2)) for i in range(n)]


def test_packing_keeps_examples_whole_and_records_their_boundaries():
    encoded = examples(7, 5) + examples(3, 9)
    packed = pack(encoded, 12, pad_id=1, packing=True, overlong="truncate", seed=0)
    assert packed.counts["windows"] < len(encoded)  # several examples share a window
    seen = set()
    for w in range(len(packed.inputs)):
        docs = packed.documents[w]
        for d in set(docs.tolist()) - {-1}:
            at = np.flatnonzero(docs == d)
            assert d not in seen and np.all(np.diff(at) == 1)  # one window, contiguous
            seen.add(d)
            x, y = pairs(encoded[d].ids, encoded[d].target)
            assert packed.inputs[w, at].tolist() == x and packed.targets[w, at].tolist() == y
        pad = docs == -1
        assert np.all(packed.targets[w, pad] == IGNORE) and np.all(packed.inputs[w, pad] == 1)
    assert seen == set(range(len(encoded)))


def test_padding_only_puts_one_example_in_each_window():
    encoded = examples(5, 6)
    packed = pack(encoded, 12, pad_id=1, packing=False, overlong="truncate", seed=0)
    assert packed.counts["windows"] == 5
    assert [sorted(set(row.tolist()) - {-1}) for row in packed.documents] == [[i] for i in range(5)]
    assert packed.counts["padding_positions"] == 5 * (12 - 5)


@pytest.mark.parametrize("overlong, kept", [("truncate", 3), ("drop", 2)])
def test_overlong_examples_are_truncated_or_dropped_and_counted(overlong, kept):
    encoded = examples(2, 5) + [Encoded(list(range(40, 60)), [False] * 15 + [True] * 5)]
    packed = pack(encoded, 8, pad_id=1, packing=False, overlong=overlong, seed=0)
    assert packed.counts["truncated" if overlong == "truncate" else "dropped"] == 1
    assert packed.counts["windows"] == kept
    if overlong == "truncate":  # the end is kept: the whole target and the end of the prompt
        row = packed.documents.tolist().index([2] * 8)
        assert packed.inputs[row].tolist() == list(range(51, 59))
        assert [t for t in packed.targets[row].tolist() if t != IGNORE] == list(range(55, 60))


def test_batches_carry_each_positions_example_for_document_masking():
    """With ``documents`` (a base of ``model.attention=document``) a batch is ``(inputs, targets, documents)``."""
    from lmforge import engine

    packed = pack(examples(12, 5), 12, pad_id=1, packing=True, overlong="truncate", seed=0)
    data = engine.window_data(packed.pairs, packed.pairs, batch_size=2, seed=0, max_steps=3,
                              documents=(packed.documents, packed.documents))
    inputs, targets, documents = next(iter(data.train_dataloader()))
    for row in range(2):
        j = next(j for j in range(len(packed.inputs)) if np.array_equal(packed.inputs[j], inputs[row].numpy()))
        assert np.array_equal(documents[row].numpy(), packed.documents[j]) and np.array_equal(targets[row].numpy(), packed.targets[j])
    assert len(next(iter(engine.window_data(packed.pairs, packed.pairs, batch_size=2, seed=0, max_steps=3).val_dataloader()))) == 2
