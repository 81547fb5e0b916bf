"""Examples as training windows: target-only labels, packing with boundaries, overlong examples."""

from __future__ import annotations

import numpy as np
import pytest

from lmforge.contracts import Example, Segment
from lmforge.plugins.finetune._data import IGNORE, Encoded, encode, fit_length, keep_ends, pack, pairs


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
    if overlong == "truncate":  # the whole target, the prompt's head and last token (of 4 left: a quarter)
        row = packed.documents.tolist().index([2] * 8)
        assert packed.inputs[row].tolist() == [40, 41, 42, 54, 55, 56, 57, 58]
        assert [t for t in packed.targets[row].tolist() if t != IGNORE] == list(range(55, 60))


def test_truncation_drops_the_middle_of_the_prompt_keeping_its_head_cue_and_target():
    """A long function keeps its def line, the template's cue and the whole summary, eos included."""
    body = "".join(f"    x{i} = {i}\n" for i in range(40))
    ex = Example("1", [Segment(f"def name(a):\n{body}\nSummary: "), Segment("does it", target=True)])
    tokenizer = Chars()
    [enc] = encode([ex], tokenizer, eos=0)
    fitted = fit_length(enc, 63, "truncate")
    assert len(fitted.ids) == 64
    prompt = tokenizer.encode_batch(["def name(a):", "\nSummary: ", "does it"])
    assert fitted.ids[: len(prompt[0])] == prompt[0]
    assert fitted.ids[-8 - len(prompt[1]) : -8] == prompt[1]
    assert fitted.ids[-8:] == prompt[2] + [0] and fitted.target[-8:] == [True] * 8 and not any(fitted.target[:-8])
    packed = pack([enc], 63, pad_id=1, packing=False, overlong="truncate", seed=0)
    assert packed.counts["truncated"] == 1 and packed.counts["target_positions"] == 8


def test_a_target_too_long_for_half_the_window_keeps_its_start():
    """The prompt keeps half the window; the reply keeps its first tokens, so no eos ends it."""
    enc = Encoded(list(range(100, 130)), [False] * 10 + [True] * 20)
    fitted = fit_length(enc, 15, "truncate")
    assert fitted.ids == [100, 101, 102, 103, 104, 105, 108, 109] + list(range(110, 118))
    assert fitted.target == [False] * 8 + [True] * 8


def test_generation_cuts_a_prompt_as_training_does():
    """``keep_ends``, which decoding uses, keeps the head and the last quarter of the budget."""
    assert keep_ends(list(range(10)), 10) == list(range(10))
    assert keep_ends(list(range(20)), 8) == [0, 1, 2, 3, 4, 5, 18, 19]


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
