"""sweep_state.jsonl: a header, then one fsynced line per finished trial."""

import json

from lmforge.plugins.sweep.state import Record, SweepState


def test_records_round_trip(tmp_path):
    state = SweepState(tmp_path)
    state.write_header({"objective": "val_loss"})
    state.append(Record(0, {"x": 1}, ["x=1"], 0.5, "ok", 1.0, "/r/0"))
    header, records = state.load()
    assert header == {"objective": "val_loss"} and records[0].value == 0.5 and records[0].overrides == ["x=1"]


def test_a_line_torn_by_a_kill_is_dropped_and_the_file_repaired(tmp_path):
    state = SweepState(tmp_path)
    state.write_header({})
    state.append(Record(0, {}, [], 1.0, "ok", 1.0, ""))
    with open(state.path, "a") as f:
        f.write(json.dumps({"number": 1})[:7])
    _, records = state.load()
    assert list(records) == [0] and state.path.read_text().endswith("\n")
