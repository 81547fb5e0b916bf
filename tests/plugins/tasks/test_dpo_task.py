"""task=dpo: the contract suite, the pair forms it reads, the pairs it skips, and win_rate."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from support import write_jsonl

from lmforge import tasks
from lmforge.contracts import Example, TaskConfig
from lmforge.errors import DataError
from lmforge.plugins.tasks._safety import is_refusal
from lmforge.plugins.tasks.dpo import Preference
from lmforge.testing import TaskContract


class TestPreference(TaskContract):
    component = Preference


def test_the_demo_pairs_refusals_and_answers_by_label():
    data = tasks.load(Preference())
    examples = [e for split in data.splits.values() for e in split]
    labels = Counter(e.meta["label"] for e in examples)
    assert labels["harmful"] >= 150 and labels["benign"] >= 150
    for e in examples:
        chosen, rejected = e.meta["fields"]["chosen"], e.meta["fields"]["rejected"]
        if e.meta["label"] == "harmful":  # refuse, rather than comply
            assert is_refusal(chosen) and not is_refusal(rejected), e.id
            assert "[" in rejected  # compliance is placeholders only: "[insult]", never the words
        else:  # answer, rather than refuse
            assert is_refusal(rejected) and not is_refusal(chosen), e.id


def test_text_and_message_forms_lay_out_the_same_sequences(tmp_path):
    text = {"id": "a", "prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away."}
    messages = {"id": "a", "prompt": [{"role": "user", "content": "Hi?"}], "chosen": [{"role": "assistant", "content": "Hello."}],
                "rejected": json.dumps([{"role": "assistant", "content": "Go away."}])}
    task = Preference()
    one, two = task.format(text), task.format(messages)
    assert one.segments == two.segments and one.rejected == two.rejected
    assert one.prompt == "<|user|>\nHi?<|end|>\n<|assistant|>\n" == Example("a", one.rejected).prompt
    assert one.reference == "Hello.<|end|>\n" and Example("a", one.rejected).reference == "Go away.<|end|>\n"


def test_only_the_final_reply_of_a_conversation_is_a_target():
    record = {"id": "b", "prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}, {"role": "user", "content": "Bye?"}],
              "chosen": "Bye.", "rejected": "No."}
    example = Preference().format(record)
    assert [s.text for s in example.segments if s.target] == ["Bye.<|end|>\n"]
    assert "Hey<|end|>" in example.prompt


def test_empty_and_identical_pairs_are_counted_and_skipped(tmp_path):
    records = [{"id": str(i), "prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(40)]
    records += [{"id": "same", "prompt": "q", "chosen": "x", "rejected": " x "}, {"id": "empty", "prompt": "q", "chosen": "", "rejected": "y"}]
    task = Preference(TaskConfig(data=str(write_jsonl(tmp_path / "p.jsonl", records)), split=[0.8, 0.2, 0.0]))
    data = tasks.load(task)
    assert data.skipped == Counter(identical_replies=1, empty_reply=1)
    assert sum(len(v) for v in data.splits.values()) == 40
    assert any("record skipped" in n for n in data.notices)


@pytest.mark.parametrize("record, says", [
    ({"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "chosen": "x", "rejected": "y"}, "ends with a assistant turn"),
    ({"prompt": "q", "chosen": [{"role": "user", "content": "x"}], "rejected": "y"}, "task.fields.chosen"),
    ({"prompt": "q", "rejected": "y"}, "task.fields.chosen"),
])
def test_a_malformed_pair_names_the_field(tmp_path, record, says):
    task = Preference(TaskConfig(data=str(write_jsonl(tmp_path / "p.jsonl", [{"id": "1", **record}]))))
    with pytest.raises(DataError, match=says):
        tasks.load(task)


def test_win_rate_counts_replies_closer_to_the_chosen_one():
    task = Preference()
    pairs = [task.format({"id": str(i), "prompt": "q", "chosen": "the cat sat on the mat", "rejected": "sorry I can not help"}) for i in range(4)]
    replies = ["the cat sat", "sorry I can not", "", "the cat sat on the mat<|end|>junk"]  # win, loss, tie, win (cut at <|end|>)
    assert task.score(replies, pairs) == {"win_rate": (1 + 0 + 0.5 + 1) / 4}
