"""A fine-tune killed mid-way resumes exactly: ``resume=<run>`` ends where an uninterrupted
run ends, LoRA adapters included (the checkpoint holds merged weights and the adapters)."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from finetune_support import SHORT, finetune
from support import install_hold_plugin, start_held

pytestmark = pytest.mark.slow

RUN = [o for o in SHORT if not o.startswith(("trainer.max_steps", "trainer.val_check_interval"))] + [
    "trainer.max_steps=12", "trainer.val_check_interval=6", "trainer.checkpoint_every_n_steps=4",
    "finetune.method=lora", "finetune.eval_examples=4",
]


def test_a_killed_lora_fine_tune_resumes_exactly(base_run, finetune_env, tmp_path):
    env = {**finetune_env, "PYTHONPATH": f"{finetune_env['PYTHONPATH']}:{install_hold_plugin(tmp_path)}"}
    args = [f"base={base_run}", "task=kind", *RUN]
    finetune(tmp_path, env, *args, f"hydra.run.dir={tmp_path / 'a'}")

    proc = start_held(tmp_path, "b", args, {**env, "PROBE_HOLD_AT": "5"}, command="finetune")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, (tmp_path / "b.out").read_text()

    finetune(tmp_path, env, *args, f"resume={tmp_path / 'b'}", f"hydra.run.dir={tmp_path / 'c'}")
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)
    c = torch.load(tmp_path / "c" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == c["global_step"] == 12
    for part in ("state_dict", "lora_state"):
        assert a[part].keys() == c[part].keys()
        for key, value in a[part].items():
            torch.testing.assert_close(c[part][key], value, rtol=0, atol=1e-6, msg=key)
    first, again = (json.loads((tmp_path / r / "summary.json").read_text()) for r in ("a", "c"))
    assert again["val_loss"] == pytest.approx(first["val_loss"], abs=1e-6)


def test_resuming_with_another_method_is_refused(base_run, finetune_env, tmp_path):
    finetune(tmp_path, finetune_env, f"base={base_run}", "task=kind", *RUN, "trainer.max_steps=2", "trainer.val_check_interval=2",
             f"hydra.run.dir={tmp_path / 'a'}")
    proc = finetune(tmp_path, finetune_env, f"base={base_run}", "task=kind", *RUN, "finetune.method=full",
                    f"resume={tmp_path / 'a'}", f"hydra.run.dir={tmp_path / 'b'}", check=False)
    assert proc.returncode == 2
    assert "finetune.method=full (the checkpoint's run had lora)" in proc.stdout + proc.stderr
