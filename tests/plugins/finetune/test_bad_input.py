"""Bad input to ``lmforge finetune`` is one clear error naming the key, before any work."""

from __future__ import annotations

import json

import pytest
from finetune_support import SHORT, finetune
from support import make_run

from lmforge.errors import ConfigError


@pytest.fixture
def toy_task(make_dist):
    """task=kind (``_toy_task.py``) installed as a plugin distribution, in this process."""
    make_dist("toy-task", {"kind": "_toy_task"}, {})


def made(tmp_path, *overrides):
    """A finished-looking base run, made without training."""
    run = make_run(tmp_path, *overrides)
    (run / "summary.json").write_text(json.dumps({"val_loss": 5.0}))
    return run


def refuse(tmp_path, *overrides) -> str:
    """Compose the finetune config as the command does and run the wiring; returns the error."""
    from hydra import compose, initialize_config_module

    from lmforge import hydra_bridge, rundir
    from lmforge.plugins.finetune._run import finetune as run_finetune

    hydra_bridge.install()
    rundir.register(["--cfg"])  # resolve hydra.run.dir without claiming a folder
    with initialize_config_module(config_module="lmforge.conf", version_base="1.3"):
        cfg = compose("finetune", overrides=list(overrides))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConfigError) as info:
        run_finetune(cfg, out, tmp_path)
    assert not (out / "checkpoints").exists()
    return str(info.value)


def test_a_missing_base_is_named_on_the_command_line(tmp_path, finetune_env):
    """Through the CLI: one line naming base=, and no run directory left behind."""
    proc = finetune(tmp_path, finetune_env, f"base={tmp_path / 'nope'}", "task=kind", *SHORT, f"hydra.run.dir={tmp_path / 'out'}", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out
    assert f"base={tmp_path / 'nope'}: " in out and "no such file or directory" in out
    assert not (tmp_path / "out").exists()


def test_no_base_is_named(tmp_path, toy_task):
    assert "base: not set; pass the run to fine-tune, base=<run dir>" in refuse(tmp_path, "task=kind")


def test_no_task_is_named(tmp_path, toy_task):
    message = refuse(tmp_path, f"base={made(tmp_path)}")
    assert message.startswith("task: not set; choose the task to fine-tune on, task=<name> (one of:") and "kind" in message


def test_an_unfinished_base_is_named(tmp_path, toy_task):
    run = make_run(tmp_path)  # a checkpoint but no summary.json: its training never finished
    message = refuse(tmp_path, f"base={run}", "task=kind")
    assert message.startswith(f"base={run}: the run did not finish (no summary.json)") and f"resume={run}" in message


def test_a_base_without_weights_is_named(tmp_path, toy_task):
    run = made(tmp_path)
    (run / "checkpoints" / "last.ckpt").unlink()
    assert refuse(tmp_path, f"base={run}", "task=kind").startswith(f"base={run}: no checkpoint at")


def test_a_masked_lm_base_cannot_take_a_generative_task(tmp_path, toy_task):
    run = made(tmp_path, "model=bert", "tokenizer=wordpiece")
    message = refuse(tmp_path, f"base={run}", "task=kind")
    assert "task=kind is generative" in message and f"base={run} is a masked language model (model=bert)" in message


@pytest.mark.parametrize("override, expected", [
    ("finetune.method=qlora", "finetune.method=qlora: must be one of full, lora"),
    ("finetune.seq_len=4096", "finetune.seq_len=4096: longer than the base run's context (data.seq_len=32)"),
    ("finetune.batch_size=0", "finetune.batch_size=0: must be at least 1"),
    ("+finetune.nope=1", "finetune.nope"),
    ("finetune.lora_targets=[]", "finetune.lora_targets=[]: must name at least one module"),
])
def test_bad_settings_are_named(tmp_path, toy_task, override, expected):
    assert expected in refuse(tmp_path, f"base={made(tmp_path)}", "task=kind", override)


def test_a_tokenizer_that_cannot_take_the_tasks_token_is_named(tmp_path):
    """A base whose tokenizer has no Hugging Face model behind it cannot be extended."""
    from _toy_task import Kind

    from lmforge.plugins.finetune._run import extend_tokenizer
    from lmforge.runs import Run

    base = Run.open(made(tmp_path))
    tokenizer, added = extend_tokenizer(base, Kind())
    assert added == ["<|is|>"] and tokenizer.vocab_size == base.tokenizer.vocab_size + 1
    assert extend_tokenizer(base, Kind())[1] == ["<|is|>"]  # the base's own tokenizer was left as it was

    class Foreign(type(base.tokenizer)):
        """A tokenizer of another library: no Hugging Face model behind it."""

        def encode_batch(self, texts):
            return [list(t.encode()) for t in texts]

    base.tokenizer.__class__, base.tokenizer.tok = Foreign, None
    with pytest.raises(ConfigError, match=r"lacks the token\(s\) <\|is\|> that task=kind needs, and it cannot be extended"):
        extend_tokenizer(base, Kind())
