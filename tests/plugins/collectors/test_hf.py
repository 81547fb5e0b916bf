"""``collector=hf``: local Parquet and JSON lines read through ``datasets``, offline."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from lmforge.errors import ConfigError
from lmforge.plugins.collectors.hf import Hf, HfConfig
from lmforge.testing import CollectorContract

ROWS = [{"uid": f"doc-{i}", "content": f"document number {i}\n" * 3} for i in range(20)]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """Never touch the Hub; keep datasets' caches out of the home folder."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf-datasets"), raising=False)


def write_parquet(path, rows=ROWS):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=7)
    return path


def write_jsonl(path, rows=ROWS):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def collect(tmp_path, **options):
    stats: Counter = Counter()
    return list(Hf(HfConfig(**options)).documents(tmp_path / "work", stats)), stats


@pytest.mark.parametrize("writer,suffix", [(write_parquet, "parquet"), (write_jsonl, "jsonl")])
def test_local_files_are_read_in_order_with_their_ids(tmp_path, writer, suffix):
    path = writer(tmp_path / f"part.{suffix}")
    docs, _ = collect(tmp_path, data_files=[str(path)], text_field="content", id_field="uid")
    assert [d.text for d in docs] == [r["content"] for r in ROWS]
    builder = "parquet" if suffix == "parquet" else "json"
    assert docs[3].id == f"hf/{builder}/train/doc-3" and docs[3].source == "hf"
    assert docs[3].uri == path.resolve().as_uri() and docs[3].meta["row"] == 3


def test_the_builder_can_be_named_and_the_split_is_kept(tmp_path):
    path = write_jsonl(tmp_path / "rows.json")
    docs, _ = collect(tmp_path, path="json", split="validation", data_files=[str(path)], text_field="content")
    assert len(docs) == 20 and docs[0].id == "hf/json/validation/0" and docs[0].meta["split"] == "validation"


def test_several_files_are_read_one_after_the_other(tmp_path):
    first = write_parquet(tmp_path / "a.parquet", ROWS[:5])
    second = write_parquet(tmp_path / "b.parquet", ROWS[5:])
    docs, _ = collect(tmp_path, data_files=[str(first), str(second)], text_field="content", id_field="uid")
    assert [d.id.rsplit("/", 1)[1] for d in docs] == [r["uid"] for r in ROWS]


def test_max_documents_stops_early(tmp_path):
    docs, _ = collect(tmp_path, data_files=[str(write_parquet(tmp_path / "p.parquet"))], text_field="content", max_documents=4)
    assert len(docs) == 4


def test_without_streaming_the_same_rows_come_back(tmp_path):
    path = write_parquet(tmp_path / "p.parquet")
    streamed, _ = collect(tmp_path, data_files=[str(path)], text_field="content")
    prepared, _ = collect(tmp_path, data_files=[str(path)], text_field="content", streaming=False)
    assert [d.text for d in prepared] == [d.text for d in streamed]


def test_empty_and_non_text_rows_are_skipped_and_counted(tmp_path):
    rows = [{"text": "kept"}, {"text": "   "}, {"text": None}, {"text": "also kept"}]
    docs, stats = collect(tmp_path, data_files=[str(write_jsonl(tmp_path / "r.jsonl", rows))])
    assert [d.text for d in docs] == ["kept", "also kept"]
    assert stats == Counter({"skipped:empty": 1, "skipped:not_text": 1})


def test_a_wrong_text_field_names_the_key_and_the_columns(tmp_path):
    with pytest.raises(ConfigError, match=r"collector.text_field='body'.*uid, content"):
        collect(tmp_path, data_files=[str(write_jsonl(tmp_path / "r.jsonl"))], text_field="body")


def test_no_path_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="collector.path"):
        collect(tmp_path)


def test_a_missing_data_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="collector.data_files.*nope.parquet"):
        collect(tmp_path, data_files=[str(tmp_path / "nope.parquet")])


@pytest.mark.parametrize(
    "options,match",
    [({"path": "parquet"}, "data_files"), ({"data_files": ["a.parquet", "b.csv"]}, "builder"), ({"max_documents": 0}, "max_documents")],
)
def test_inconsistent_options_fail_when_the_config_is_built(options, match):
    with pytest.raises(ValueError, match=match):
        HfConfig(**options)


class TestHfContract(CollectorContract):
    component = Hf

    @pytest.fixture(autouse=True)
    def _files(self, tmp_path_factory):
        path = write_parquet(tmp_path_factory.mktemp("contract") / "rows.parquet")
        self.config = HfConfig(data_files=[str(path)], text_field="content", id_field="uid")
