"""``guard=classifier``: a classify run as the moderation model, and the error for a run that is not one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import support

from lmforge.cli import main
from lmforge.errors import ConfigError
from lmforge.plugins.guards.classifier import ClassifierGuard, ClassifierGuardConfig
from lmforge.testing import GuardContract

SAFE = ["def add(a, b): return a + b", "import os", "print(os.getcwd())", "class A: pass", "x = 1", "for i in range(3): pass"]
UNSAFE = ["you idiot", "idiot idiot", "what an idiot", "a total idiot", "idiot", "you are an idiot"]


@pytest.fixture(scope="module")
def classify_run(tmp_path_factory) -> Path:
    """A tiny LM with a head trained on SAFE and UNSAFE, saved as ``lmforge finetune task=classify`` saves one."""
    import torch
    import torch.nn.functional as F

    from lmforge import engine
    from lmforge.classifier import Classifier, head_for
    from lmforge.runs import HEAD, Run

    path = support.make_run(tmp_path_factory.mktemp("moderation"), noise=0.02)
    run = Run.open(path)
    head = head_for(["safe", "unsafe"], objective="causal", tokenizer=run.tokenizer, seq_len=24, task="classify")
    torch.manual_seed(0)
    model = Classifier(run.model(), head).train()
    rows, _ = engine.encode_rows(run.tokenizer, SAFE + UNSAFE, head)
    idx, target = engine.pad_rows(rows, head.seq_len), torch.tensor([0] * len(SAFE) + [1] * len(UNSAFE))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(idx).logits[:, 0], target).backward()
        opt.step()
    (path / HEAD).write_text(json.dumps(head.to_json()))
    state = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "global_step": 60}
    torch.save(state, path / "checkpoints" / "last.ckpt")
    return path


class TestClassifierContract(GuardContract):
    component = ClassifierGuard
    safe_texts = tuple(SAFE)
    unsafe_texts = tuple(UNSAFE)

    @pytest.fixture(autouse=True)
    def _the_run(self, classify_run):
        self.config = ClassifierGuardConfig(run=str(classify_run))


def test_scores_are_the_unsafe_labels_probability(classify_run):
    guard = ClassifierGuard(ClassifierGuardConfig(run=str(classify_run)))
    verdict = guard.check("you idiot")
    (probs,) = guard.probabilities(["you idiot"])
    assert verdict.categories == ("unsafe",) and verdict.scores == {"unsafe": round(probs["unsafe"], 4)}
    assert probs["unsafe"] + probs["safe"] == pytest.approx(1.0) and probs["unsafe"] >= 0.5
    flag = ClassifierGuard(ClassifierGuardConfig(run=str(classify_run), action="flag", threshold=0.99999))
    assert flag.check("import os").decision == "allow"


def test_a_run_that_is_not_a_classify_run_is_an_error_naming_the_key(tmp_path, capsys):
    lm = support.make_run(tmp_path)
    with pytest.raises(ConfigError, match=rf"guard.run={lm}: not a classify run .*task=classify"):
        ClassifierGuard(ClassifierGuardConfig(run=str(lm))).setup()
    code = main(["generate", str(lm), "--prompt", "hi", "--guard", "classifier", "--guard-option", f"run={lm}", "--device", "cpu"])
    assert code != 0 and f"guard.run={lm}: not a classify run" in capsys.readouterr().err


def test_safe_labels_must_be_among_the_runs_labels(classify_run):
    with pytest.raises(ConfigError, match=r"guard.safe=\['ok'\]: the run .* has the labels \['safe', 'unsafe'\]"):
        ClassifierGuard(ClassifierGuardConfig(run=str(classify_run), safe=["ok"])).setup()


def test_the_classifier_guards_a_generate_prompt(classify_run, capsys):
    """The moderation model's own run, as a guard on generation with another run."""
    lm = classify_run.parent.parent / "lm"
    if not lm.exists():
        lm = support.make_run(lm, "data.seq_len=64", noise=0.5, quiet_eos=True)
    flags = ["--guard", "classifier", "--guard-option", f"run={classify_run}", "--no-echo", "--max-tokens", "5", "--temperature", "0", "--device", "cpu"]
    assert main(["generate", str(lm), "--prompt", "you idiot", *flags]) == 0
    out, err = capsys.readouterr()
    assert out == "Sorry, I can't help with that.\n" and '"categories": ["unsafe"]' in err and '"guard": "classifier"' in err
