"""``lmforge eval`` on an exported folder, and ``lmforge eval --lm-eval`` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import support
from support import lmforge

from lmforge.errors import ConfigError
from lmforge.evaluate import evaluate, main
from lmforge.plugins.deploy._export import export

FIXTURES = support.REPO / "tests" / "fixtures" / "lm_eval"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
GPT2 = ["model.pos=learned", "model.norm=layernorm", "model.mlp=gelu", "model.bias=true", "model.tie_embeddings=false"]


@pytest.mark.parametrize("fmt,variant", [("hf", []), ("hf", GPT2), ("safetensors", [])], ids=["hf-llama", "hf-gpt2", "safetensors"])
def test_eval_on_an_export_gives_the_numbers_of_its_run(tmp_path, fmt, variant):
    """`lmforge eval <export> --text` equals `lmforge eval <run> --text`: the export reopens as the run."""
    run = support.make_run(tmp_path, "data.seq_len=32", *variant, noise=0.05)
    out = export(run, tmp_path / "export", fmt=fmt)
    text = tmp_path / "text.txt"
    text.write_text("".join(support.TEXTS[:20]))
    mine = evaluate(run, text=[text], out=tmp_path / "run-eval.json")
    theirs = evaluate(out, text=[text])
    assert (out / "eval.json").is_file()
    for key in ("loss", "ppl", "bpb", "top1", "tokens", "bytes_per_token", "step"):
        assert theirs[key] == pytest.approx(mine[key], rel=1e-6), key


def test_the_lmforge_model_is_registered_with_the_harness():
    from lm_eval.api.registry import get_model

    from lmforge import harness
    from lmforge.plugins.evaluation._lm_eval import LmforgeLM

    assert "lmforge" in harness.register_models()
    assert get_model("lmforge") is LmforgeLM
    assert harness.register_models() == ["lmforge"]  # a second registration is a no-op, not a clash


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--lm-eval", ","], r"--lm-eval: name at least one task"),
        (["--lm-eval", "x", "--limit", "0"], r"--limit 0: give a whole number"),
        (["--lm-eval", "x", "--limit", "2.5"], r"--limit 2.5: give a whole number"),
        (["--lm-eval", "x", "--batch-size", "0"], r"--batch-size 0: must be 1 or more"),
        (["--lm-eval", "x", "--split", "train"], r"--lm-eval with --split: one kind of evaluation at a time"),
    ],
)
def test_bad_lm_eval_flags_name_the_flag(tmp_path, flags, message):
    with pytest.raises(ConfigError, match=message):
        main([str(tmp_path), *flags])


def test_a_missing_include_path_names_it(tmp_path):
    run = support.make_run(tmp_path)
    with pytest.raises(ConfigError, match=r"--include-path .*nowhere: no such folder"):
        main([str(run), "--lm-eval", "lmforge_tiny_mc", "--include-path", str(tmp_path / "nowhere")])


@pytest.mark.slow
def test_an_unknown_task_names_it_and_the_fix(tmp_path, monkeypatch):
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    run = support.make_run(tmp_path)
    with pytest.raises(ConfigError, match=r"--lm-eval no_such_task: no such lm-eval task in .*lm_eval or among lm-eval's own.*--include-path"):
        main([str(run), "--lm-eval", "no_such_task", "--include-path", str(FIXTURES)])


@pytest.mark.slow
def test_lmforge_eval_lm_eval_prints_the_table_and_merges_eval_json(tmp_path):
    """The real CLI, offline: the harness's table, and eval.json keeps what was there and gains lm_eval."""
    run = support.make_run(tmp_path, "data.seq_len=64", noise=0.05)
    (run / "eval.json").write_text(json.dumps({"loss": 1.25, "split": "val"}))
    env = {**OFFLINE, "HF_DATASETS_CACHE": str(tmp_path / "datasets")}
    proc = lmforge("eval", str(run), "--lm-eval", "lmforge_tiny_mc", "--include-path", ".", "--limit", "6", "--batch-size", "4", cwd=FIXTURES, env=env)
    assert "|lmforge_tiny_mc|" in proc.stdout and "acc_norm" in proc.stdout
    assert f"wrote {run / 'eval.json'}" in proc.stdout
    written = json.loads((run / "eval.json").read_text())
    assert written["loss"] == 1.25
    scores = written["lm_eval"]["results"]["lmforge_tiny_mc"]
    assert scores["sample_len"] == 6 and 0 <= scores["acc,none"] <= 1
    assert written["lm_eval"]["limit"] == 6

    # a later plain `lmforge eval --text` rewrites its own figures and keeps the harness's
    text = tmp_path / "text.txt"
    text.write_text("".join(support.TEXTS[:20]))
    evaluate(run, text=[text])
    again = json.loads((run / "eval.json").read_text())
    assert again["split"] == "text" and again["lm_eval"]["results"]["lmforge_tiny_mc"] == scores
