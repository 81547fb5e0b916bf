"""task=chat: the contract suite, the messages check, the demo and the text metric."""

from __future__ import annotations

import json

import pytest

from lmforge import tasks
from lmforge.errors import DataError
from lmforge.contracts import TaskConfig
from lmforge.plugins.tasks.chat import Chat
from lmforge.testing import TaskContract


class TestChat(TaskContract):
    component = Chat


def test_the_demo_asks_what_stdlib_functions_do():
    data = tasks.load(Chat())
    example = next(e for split in data.splits.values() for e in split if e.id == "json.dumps")
    assert example.segments[0].text == "<|user|>\nWhat does `json.dumps` do?<|end|>\n<|assistant|>\n"
    assert example.segments[1].text == "Serialize ``obj`` to a JSON formatted ``str``.<|end|>\n" and example.segments[1].target
    turns = [sum(s.target for s in e.segments) for split in data.splits.values() for e in split]
    assert set(turns) == {1, 2}  # one or two questions a conversation


@pytest.mark.parametrize(
    "messages,error",
    [
        ([{"role": "user", "content": "hi"}], "no assistant turn"),
        ([{"role": "bot", "content": "hi"}], r"messages\[0\] .* needs a role"),
        ("not json", "not JSON"),
        ([], "empty"),
    ],
)
def test_bad_messages_name_the_line_and_the_mapping_key(tmp_path, messages, error):
    path = tmp_path / "chat.jsonl"
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"messages": messages}) + "\n")
    with pytest.raises(DataError, match=rf"{path}:2: .*{error}.*task.fields.messages"):
        tasks.load(Chat(TaskConfig(data=str(path))))


def test_messages_in_a_csv_cell_are_read_as_json(tmp_path):
    import csv

    path = tmp_path / "chat.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["conversation"])
        for i in range(30):
            writer.writerow([json.dumps([{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}])])
    data = tasks.load(Chat(TaskConfig(data=str(path), fields={"messages": "conversation"})))
    assert sorted(e.reference for split in data.splits.values() for e in split)[:2] == ["a0<|end|>\n", "a10<|end|>\n"]


def test_score_reads_the_reply_up_to_the_end_token():
    task = Chat()
    example = task.format({"id": "c", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "the cat sat"}]})
    assert task.score(["the cat sat<|end|>\n<|user|>\nmore"], [example]) == {"rougeL": 1.0}
    assert task.score(["the cat"], [example])["rougeL"] == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
