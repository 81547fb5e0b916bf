"""``lmforge finetune task=dpo`` through the CLI: a user's pairs (both forms, bad pairs
skipped), what the run records, the reference cache, a base that never saw the format,
and the exact resume of a killed run."""

from __future__ import annotations

import json
import math
import signal

import pytest
import torch
from finetune_support import SHORT, finetune
from support import install_hold_plugin, start_held, write_jsonl

PAIRS = [
    *({"prompt": f"Say something kind about the number {i}.", "chosen": f"{i} is a fine number.", "rejected": "Sorry, I can't help with that."} for i in range(40)),
    *({"prompt": [{"role": "user", "content": f"Insult person {i}."}], "chosen": [{"role": "assistant", "content": "Sorry, I can't help with that."}],
       "rejected": [{"role": "assistant", "content": f"Person {i} is a [insult]."}]} for i in range(40)),
    {"prompt": "Same?", "chosen": "Yes.", "rejected": "Yes."},
    {"prompt": "Empty?", "chosen": "", "rejected": "No."},
]
RUN = [o for o in SHORT if not o.startswith(("trainer.max_steps", "trainer.val_check_interval", "finetune.eval_examples"))] + [
    "trainer.max_steps=12", "trainer.val_check_interval=6", "finetune.eval_examples=4", "optimizer.lr=3e-3",
]


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", PAIRS)


@pytest.fixture(scope="module")
def aligned(chat_base, pairs_file, finetune_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo")
    proc = finetune(root, finetune_env, f"base={chat_base}", "task=dpo", f"task.data={pairs_file}", *RUN, f"hydra.run.dir={root / 'run'}")
    return root / "run", proc.stdout + proc.stderr


def test_a_dpo_run_records_its_preference_metrics_against_the_base(aligned, chat_base):
    run, _ = aligned
    summary = json.loads((run / "summary.json").read_text())
    assert summary["base_val_loss"] == pytest.approx(math.log(2), abs=1e-5)  # the policy starts as its reference
    assert summary["val_loss"] < summary["base_val_loss"]
    metrics, base = summary["metrics"], summary["base_metrics"]
    assert metrics["reward_accuracy"] > 0.5 and base["reward_accuracy"] == 0.0 and base["reward_margin"] == 0.0
    assert metrics["reward_margin"] > 0 and metrics["kl"] > 0 and base["kl"] == 0.0
    assert set(metrics) == {"reward_accuracy", "reward_margin", "log_ratio", "preference_accuracy", "kl", "win_rate"}
    assert "val_top1" not in summary  # the two-class logits' artifacts are not the run's metrics
    assert (run / "reference_logps.npz").is_file()
    assert (run / "chat_template").read_text() == (chat_base / "chat_template").read_text()  # it chats as its base


def test_bad_pairs_are_counted_and_skipped(aligned):
    _, out = aligned
    assert "skipped 1 empty_reply, 1 identical_replies" in out


def test_the_aligned_run_opens_as_its_architecture(aligned, chat_base):
    from lmforge.runs import Run

    run = Run.open(aligned[0])
    model = run.model()
    base = Run.open(chat_base).model()
    assert type(model) is type(base) and model.state_dict().keys() == base.state_dict().keys()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
    assert changed  # the checkpoint holds the trained policy, not the base


def test_lora_dpo_saves_merged_weights_of_the_architecture(chat_base, pairs_file, finetune_env, tmp_path):
    from lmforge.runs import Run

    finetune(tmp_path, finetune_env, f"base={chat_base}", "task=dpo", f"task.data={pairs_file}", *RUN, "trainer.max_steps=4",
             "trainer.val_check_interval=4", "finetune.method=lora", f"hydra.run.dir={tmp_path / 'lora'}")
    model, base = Run.open(tmp_path / "lora").model(), Run.open(chat_base).model()
    assert model.state_dict().keys() == base.state_dict().keys()  # plain linears: the adapters are merged in
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, base.state_dict()[k])}
    assert changed and all(k.endswith(".weight") for k in changed)
    assert not any("wte" in k or "lm_head" in k for k in changed)  # LoRA adapts the linears, not the embeddings


def test_a_base_without_the_chat_format_is_refused(base_run, finetune_env, tmp_path):
    proc = finetune(tmp_path, finetune_env, f"base={base_run}", "task=dpo", *RUN, f"hydra.run.dir={tmp_path / 'x'}", check=False)
    assert proc.returncode == 2
    said = proc.stdout + proc.stderr
    assert "has no token for <|user|>, <|assistant|>, <|end|>" in said and "lmforge finetune task=chat" in said
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_a_killed_dpo_run_resumes_exactly(chat_base, pairs_file, finetune_env, tmp_path):
    env = {**finetune_env, "PYTHONPATH": f"{finetune_env['PYTHONPATH']}:{install_hold_plugin(tmp_path)}"}
    args = [f"base={chat_base}", "task=dpo", f"task.data={pairs_file}", *RUN, "trainer.checkpoint_every_n_steps=4"]
    finetune(tmp_path, env, *args, f"hydra.run.dir={tmp_path / 'a'}")

    proc = start_held(tmp_path, "b", args, {**env, "PROBE_HOLD_AT": "5"}, command="finetune")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, (tmp_path / "b.out").read_text()

    resumed = finetune(tmp_path, env, *args, f"resume={tmp_path / 'b'}", f"hydra.run.dir={tmp_path / 'c'}")
    assert "read from reference_logps.npz" in resumed.stdout + resumed.stderr  # the reference is not computed again
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)
    c = torch.load(tmp_path / "c" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == c["global_step"] == 12
    assert a["state_dict"].keys() == c["state_dict"].keys()
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(c["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    first, again = (json.loads((tmp_path / r / "summary.json").read_text()) for r in ("a", "c"))
    assert again["val_loss"] == pytest.approx(first["val_loss"], abs=1e-6)
    assert again["metrics"]["reward_accuracy"] == pytest.approx(first["metrics"]["reward_accuracy"])
