"""lmforge.tasks: reading every file format, the field mapping, the split, templates and bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from support import write_jsonl

from lmforge import tasks
from lmforge.contracts import TaskConfig
from lmforge.errors import ConfigError, DataError
from lmforge.plugins.tasks.chat import Chat
from lmforge.plugins.tasks.classify import Classify
from lmforge.plugins.tasks.summarize import Summarize

TEMPLATE = "{{ document }}\nSummary: {{ summary }}"
PAIRS = [{"doc": f"text number {i} about topic {i % 7}", "sum": f"topic {i % 7}", "key": f"k{i}"} for i in range(60)]


def summarize(data: Path | str, **fields) -> Summarize:
    fields = fields or {"document": "doc", "summary": "sum"}
    return Summarize(TaskConfig(data=str(data), fields=fields, template=TEMPLATE))


def write_delimited(path: Path, rows: list[dict], delimiter: str) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def by_id(data: tasks.TaskData) -> dict[str, tuple[str, str, str]]:
    return {e.id: (split, e.prompt, e.reference) for split, examples in data.splits.items() for e in examples}


def test_jsonl_csv_tsv_and_parquet_give_the_same_examples(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [
        write_jsonl(tmp_path / "d.jsonl", PAIRS),
        write_delimited(tmp_path / "d.csv", PAIRS, ","),
        write_delimited(tmp_path / "d.tsv", PAIRS, "\t"),
    ]
    pq.write_table(pa.Table.from_pylist(PAIRS), tmp_path / "d.parquet")
    files.append(tmp_path / "d.parquet")
    loaded = [by_id(tasks.load(summarize(f))) for f in files]
    assert len(loaded[0]) == len(PAIRS)
    assert all(other == loaded[0] for other in loaded[1:])
    split, prompt, reference = next(v for v in loaded[0].values())
    assert prompt.endswith("\nSummary: ") and reference.startswith("topic ")


def test_a_datasets_folder_is_read_through_datasets(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    folder = tmp_path / "builder"
    folder.mkdir()
    write_delimited(folder / "train.csv", PAIRS[:40], ",")
    write_delimited(folder / "test.csv", PAIRS[40:], ",")
    from_folder = by_id(tasks.load(summarize(folder)))
    from_file = by_id(tasks.load(summarize(write_jsonl(tmp_path / "d.jsonl", PAIRS))))
    assert from_folder == from_file  # every split of the builder, re-split by id


def test_a_hub_name_offline_fails_naming_task_data(monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match=r"task.data=hf:no-such/dataset-xyz: datasets could not load it"):
        tasks.load(summarize("hf:no-such/dataset-xyz"))


def test_an_id_column_is_used_when_mapped_else_the_content_is_hashed(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", PAIRS)
    mapped = tasks.load(summarize(path, document="doc", summary="sum", id="key"))
    assert sorted(by_id(mapped)) == sorted(r["key"] for r in PAIRS)
    hashed = by_id(tasks.load(summarize(path)))
    assert len(hashed) == len(PAIRS) and not set(hashed) & {r["key"] for r in PAIRS}
    assert tasks.content_id({"document": PAIRS[0]["doc"], "summary": PAIRS[0]["sum"]}) in hashed


def test_the_split_depends_on_the_id_alone(tmp_path):
    """The same record lands in the same split whatever the rest of the file, in shares near the config."""
    ids = [f"id-{i}" for i in range(5000)]
    splits = [tasks.split_of(i, [0.8, 0.1, 0.1]) for i in ids]
    assert splits == [tasks.split_of(i, [0.8, 0.1, 0.1]) for i in reversed(ids)][::-1]
    shares = {name: splits.count(name) / len(ids) for name in tasks.SPLITS}
    assert shares["train"] == pytest.approx(0.8, abs=0.02) and shares["test"] == pytest.approx(0.1, abs=0.015)
    whole = by_id(tasks.load(summarize(write_jsonl(tmp_path / "a.jsonl", PAIRS))))
    half = by_id(tasks.load(summarize(write_jsonl(tmp_path / "b.jsonl", PAIRS[::-1][:30]))))
    assert all(whole[i][0] == half[i][0] for i in half)
    assert {s for s, _, _ in whole.values()} == set(tasks.SPLITS)


def test_max_examples_reads_only_the_first_records(tmp_path):
    task = summarize(write_jsonl(tmp_path / "d.jsonl", PAIRS))
    task.config.max_examples = 25
    data = tasks.load(task)
    assert sum(len(v) for v in data.splits.values()) == 25


def test_a_malformed_jsonl_line_is_counted_skipped_and_named(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", PAIRS, ('{"doc": "half a line\n', "[1, 2]\n"))
    data = tasks.load(summarize(path))
    assert data.skipped["malformed_json"] == 2
    assert sum(len(v) for v in data.splits.values()) == len(PAIRS)
    assert any(f"{path}:{len(PAIRS) + 1}: not a JSON object" in n for n in data.notices)
    assert any(f"{path}:{len(PAIRS) + 2}:" in n and "list" in n for n in data.notices)
    assert "2 malformed_json" in data.summary()


def test_a_missing_field_names_the_file_line_and_mapping_key(tmp_path):
    rows = PAIRS[:5] + [{"doc": "no summary here", "key": "x"}] + PAIRS[5:]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError) as info:
        tasks.load(summarize(path))
    message = str(info.value)
    assert f"{path}:6:" in message and "task.fields.summary" in message and "column 'sum'" in message and "doc, key" in message


def test_an_empty_cell_is_a_missing_field(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("doc,sum\na,b\nc,  \n")
    with pytest.raises(DataError, match=rf"{path}:3: no value for the task's field 'summary'"):
        tasks.load(summarize(path))


def test_a_field_mapped_to_no_column_names_the_key_on_the_first_line(tmp_path):
    path = write_delimited(tmp_path / "d.csv", PAIRS, ",")
    with pytest.raises(DataError, match=rf"{path}:2: .*column 'body', task.fields.document"):
        tasks.load(summarize(path, document="body", summary="sum"))


def test_a_mapping_key_the_task_lacks_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="task.fields.title: task=summarize has no field 'title'"):
        tasks.load(summarize(write_jsonl(tmp_path / "d.jsonl", PAIRS), document="doc", summary="sum", title="x"))


def test_an_empty_dataset_is_an_error_naming_it(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\nnot json\n")
    with pytest.raises(DataError, match=rf"task.data={path}: no examples \(1 malformed_json skipped\)"):
        tasks.load(summarize(path))


def test_too_few_examples_for_a_split_names_task_split(tmp_path):
    with pytest.raises(DataError, match=r"split is empty: 2 examples are too few for task.split"):
        tasks.load(summarize(write_jsonl(tmp_path / "d.jsonl", PAIRS[:2])))


def test_a_label_only_in_the_test_split_names_its_line_and_key(tmp_path):
    rows = [{"text": f"sample {i}", "label": "common"} for i in range(40)]
    rare = next(f"rare {i}" for i in range(1000) if tasks.split_of(tasks.content_id({"text": f"rare {i}", "label": "rare"}), [0.8, 0.1, 0.1]) == "test")
    rows.insert(7, {"text": rare, "label": "rare"})
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError) as info:
        tasks.load(Classify(TaskConfig(data=str(path), template="{{ text }}")))
    message = str(info.value)
    assert f"{path}:8:" in message and "label 'rare'" in message and "only in the test split" in message and "task.fields.label" in message


def test_duplicate_ids_are_skipped_and_counted(tmp_path):
    data = tasks.load(summarize(write_jsonl(tmp_path / "d.jsonl", PAIRS + PAIRS[:3])))
    assert data.skipped["duplicate_id"] == 3 and sum(len(v) for v in data.splits.values()) == len(PAIRS)


def test_an_unknown_file_type_or_path_is_a_config_error(tmp_path):
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(ConfigError, match=r"task.data=.*d.xlsx: unknown file type '.xlsx'"):
        tasks.load(summarize(tmp_path / "d.xlsx"))
    with pytest.raises(ConfigError, match="no such file or folder"):
        tasks.load(summarize(tmp_path / "missing.jsonl"))


def test_a_csv_row_with_extra_cells_names_its_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("doc,sum\na,b\nc,d,e\n")
    with pytest.raises(DataError, match=rf"{path}:3: 3 cells but the header names 2 columns"):
        tasks.load(summarize(path))


def test_the_template_splits_prompt_target_and_tail():
    segments = tasks.render_fields("Q: {{ q }}\nA: {{ a }}\n-- {{ source }}", {"q": "why?", "a": "because", "source": "x"}, "a")
    assert [(s.text, s.target) for s in segments] == [("Q: why?\nA: ", False), ("because", True), ("\n-- x", False)]


@pytest.mark.parametrize("template,error", [("{{ q }}", "exactly once"), ("{{ a }} {{ a }}", "exactly once"), ("{{ a | upper }}", "unchanged"), ("{% if %}", "not a valid Jinja")])
def test_a_template_that_cannot_mark_the_target_names_task_template(template, error):
    with pytest.raises(ConfigError, match=error):
        tasks.render_fields(template, {"q": "why?", "a": "because"}, "a")


def test_a_template_using_a_column_the_record_lacks_names_the_line(tmp_path):
    task = summarize(write_jsonl(tmp_path / "d.jsonl", PAIRS))
    task.config.template = "{{ title }}: {{ document }} => {{ summary }}"
    with pytest.raises(DataError, match=rf"{tmp_path / 'd.jsonl'}:1: the template uses a field this record lacks \('title' is undefined\)"):
        tasks.load(task)


def test_extra_columns_reach_the_template(tmp_path):
    rows = [dict(r, title=f"T{i}") for i, r in enumerate(PAIRS)]
    task = summarize(write_jsonl(tmp_path / "d.jsonl", rows))
    task.config.template = "[{{ title }}] {{ document }} => {{ summary }}"
    data = tasks.load(task)
    assert all(e.prompt.startswith("[T") for e in data["train"])


def test_an_empty_template_falls_back_to_the_shipped_option():
    task = Summarize(TaskConfig())
    assert tasks.template_of(task) == "{{ document }}\nSummary: {{ summary }}"


def test_the_chat_template_marks_each_assistant_turn_with_its_end_token():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Bye."},
    ]
    example = Chat().format({"id": "c1", "messages": messages})
    assert [(s.text, s.target) for s in example.segments] == [
        ("<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n", False),
        ("Hello.<|end|>\n", True),
        ("<|user|>\nBye<|end|>\n<|assistant|>\n", False),
        ("Bye.<|end|>\n", True),
    ]
    assert example.reference == "Bye.<|end|>\n" and example.prompt.endswith("<|user|>\nBye<|end|>\n<|assistant|>\n")


def test_the_chat_template_renders_as_lmforge_chat_renders_it():
    """Training and `lmforge chat` see the same text: the template goes through the chat loop's renderer."""
    from lmforge.plugins.deploy._chat import Template

    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    source = tasks.template_of(Chat())
    trained = "".join(s.text for s in Chat().format({"id": "c", "messages": messages}).segments)
    assert Template(source).render(messages, add_generation_prompt=False) == trained
    assert Template(source).render(messages[:1]) == Chat().format({"id": "c", "messages": messages}).prompt


def test_a_chat_template_whose_prefix_is_not_stable_is_refused():
    task = Chat(TaskConfig(template="{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}>>{% endif %}"))
    with pytest.raises(ConfigError, match="must render a conversation as the conversation before each assistant turn"):
        task.format({"id": "c", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})


def test_bad_task_config_values_name_the_key():
    with pytest.raises(ValueError, match=r"split=\[0.5, 0.1, 0.1\]"):
        TaskConfig(split=[0.5, 0.1, 0.1])
    with pytest.raises(ValueError, match="overlong=cut"):
        TaskConfig(overlong="cut")
    with pytest.raises(ValueError, match="max_examples=0"):
        TaskConfig(max_examples=0)


@pytest.mark.parametrize("task", [Chat, Summarize, Classify, "translate"])
def test_the_guide_gives_every_builtin_tasks_metrics_and_default_template(task):
    """docs/tasks.md stays in step with the tasks and their shipped options."""
    from lmforge.plugins.tasks.translate import Translate

    task = Translate if task == "translate" else task
    guide = (Path(__file__).resolve().parents[1] / "docs" / "tasks.md").read_text()
    section = guide.split(f"### {task.name}\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    assert all(f"`{m}`" in section for m in task.metrics if not m.startswith(("macro_", "micro_"))), section
    template = tasks.shipped_template(task.name)
    assert template in guide or all(line.strip() in guide for line in template.splitlines())
