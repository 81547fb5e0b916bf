"""The sweep report's files: best.yaml as YAML, and the parallel-coordinates plot's axes."""

import csv

import pytest
import yaml
from omegaconf import OmegaConf

from lmforge.contracts import Param
from lmforge.plugins.sweep.plots import _axis
from lmforge.plugins.sweep.report import write_report
from lmforge.plugins.sweep.state import Record

OVERRIDES = ["optimizer.lr=0.001", "model=rnn", "sample.prompts=['a b', 'c: d']"]


def records() -> list[Record]:
    return [
        Record(0, {"optimizer.lr": 1e-3, "model": "rnn"}, OVERRIDES, 2.5, "ok", 1.0, "/runs/0"),
        Record(1, {"optimizer.lr": 1e-2, "model": "transformer"}, ["optimizer.lr=0.01", "model=transformer"], 3.0, "ok", 1.0, "/runs/1"),
        Record(2, {"optimizer.lr": 1e-4, "model": "rnn"}, ["optimizer.lr=0.0001", "model=rnn"], None, "failed", 0.0, "", "boom"),
    ]


def test_best_yaml_is_yaml_with_a_rerun_comment(tmp_path):
    write_report(tmp_path, records(), ["optimizer.lr", "model"], "val_loss", "min")
    text = (tmp_path / "best.yaml").read_text()
    assert text.startswith("# The best of 3 trials") and "lmforge train optimizer.lr=0.001 model=rnn" in text
    assert not text.lstrip("#").strip().startswith("{") and "{\n" not in text  # not JSON
    for loaded in (yaml.safe_load(text), OmegaConf.to_container(OmegaConf.load(tmp_path / "best.yaml"))):
        assert loaded == {"number": 0, "objective": "val_loss", "value": 2.5, "run_dir": "/runs/0", "overrides": OVERRIDES}


def test_the_plot_sits_beside_the_numbers_it_draws(tmp_path):
    space = [Param("optimizer.lr", "float", low=1e-4, high=1e-2, log=True), Param("model", "choice", choices=["rnn", "transformer"])]
    write_report(tmp_path, records(), ["optimizer.lr", "model"], "val_loss", "min", space)
    assert (tmp_path / "parallel_coordinates.png").stat().st_size > 5000
    rows = list(csv.DictReader((tmp_path / "sweep_results.csv").open()))
    assert [(r["optimizer.lr"], r["model"], r["val_loss"]) for r in rows[:2]] == [("0.001", "rnn", "2.5"), ("0.01", "transformer", "3.0")]


def test_a_log_axis_is_labelled_with_its_range_geometrically():
    positions, ticks, log = _axis([1e-4, 1e-3, 1e-2], log=True)
    assert log and positions == pytest.approx([0.0, 0.5, 1.0])
    assert [label for _, label in ticks] == ["0.0001", "0.001", "0.01"]


def test_a_linear_axis_shows_min_middle_and_max():
    _, ticks, log = _axis([2, 4, 6], log=False)
    assert not log and ticks == [(0.0, "2"), (0.5, "4"), (1.0, "6")]


def test_a_choice_axis_is_labelled_with_its_options_in_order():
    positions, ticks, _ = _axis(["transformer", "rnn"], choices=["rnn", "transformer", "bert"])
    assert ticks == [(0.0, "rnn"), (0.5, "transformer"), (1.0, "bert")] and positions == [0.5, 0.0]
