"""``lmforge eval <run dir> --task <name>`` (``lmforge.task_eval``): a run, its base and the
task's baseline scored on the same test split, side by side."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lmforge import engine, task_eval, tasks
from lmforge.contracts import Example, Segment
from lmforge.errors import ConfigError
from lmforge.evaluate import main as eval_main
from lmforge.runs import Run

from support import lmforge, make_run

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("base"), noise=0.02, quiet_eos=True)


def fake_finetune(base: Path, root: Path, task: dict) -> Path:
    """A run directory laid out as ``lmforge finetune`` leaves it, with the base's weights:
    ``finetune.yaml`` names the base and the task config it was tuned with."""
    from omegaconf import OmegaConf

    run = root / "tuned"
    shutil.copytree(base, run)
    (run / "finetune.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create({"base": str(base), "task": task})))
    return run


@pytest.fixture(scope="module")
def tuned(base, tmp_path_factory) -> Path:
    return fake_finetune(base, tmp_path_factory.mktemp("tuned"), {"name": "translate", "max_examples": 40, "split": [0.5, 0.2, 0.3]})


def test_a_generative_task_scores_the_run_its_base_and_the_baseline(tuned, base):
    """Same weights, same split: the run's and the base's scores agree (gain 0); the replies
    are the greedy decodes of each prompt; the baseline is the task's own on those examples."""
    result = task_eval.evaluate_task(tuned, "translate", ["task.max_examples=30"], max_tokens=4, batch_size=8)
    scores = result["scores"]
    assert set(scores) == {"run", "base", "baseline"} and result["base_run"] == str(base.resolve())
    assert set(scores["run"]) == {"bleu", "chrf"} and scores["run"] == scores["base"]
    assert result["gain"] == {"bleu": 0.0, "chrf": 0.0}
    run = Run.open(tuned)
    task = task_eval.build_task(run, "translate", ["task.max_examples=30"])
    test = tasks.load(task)["test"]
    assert result["examples"] == len(test) and result["task_config"]["max_examples"] == 30
    assert scores["baseline"] == pytest.approx(task.score(task.baseline(test), test))
    lines = [json.loads(line) for line in (tuned / "eval-translate" / "predictions.jsonl").read_text().splitlines()]
    assert [line["reference"] for line in lines] == [e.reference for e in test]
    prompt = run.tokenizer.encode_batch([s.text for s in test[0].segments if not s.target][:1])[0]
    alone = engine.complete(run.model(), run.tokenizer, [prompt], engine.Sampling(max_tokens=4, temperature=0.0, top_k=None))[0]
    assert lines[0]["prediction"] == alone.text.strip()
    assert json.loads((tuned / "eval-translate" / "eval.json").read_text())["scores"] == scores


def test_the_target_loss_is_the_cross_entropy_of_the_target_tokens_alone(base):
    """Batched and right-padded, it equals a per-example hand computation over target tokens only."""
    run = Run.open(base)
    model, tok = run.model(), run.tokenizer
    examples = [
        Example("a", [Segment("def add(a, b):"), Segment("\n    return a + b", target=True)]),
        Example("b", [Segment("import os"), Segment("\nprint(os)", target=True), Segment(" # done")]),
    ]
    nll, count = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            ids, target = [], []
            for s in ex.segments:
                piece = tok.encode_batch([s.text])[0]
                ids, target = ids + piece, target + [s.target] * len(piece)
            ids, target = ids + [tok.special_ids["eos"]], target + [ex.segments[-1].target]
            logp = model(torch.tensor([ids[:-1]])).logits[0].log_softmax(-1)
            for t in range(1, len(ids)):
                if target[t]:
                    nll -= float(logp[t - 1, ids[t]])
                    count += 1
    got = task_eval.target_loss(model, tok, examples, batch_size=2, device="cpu")
    assert got == pytest.approx(nll / count, rel=1e-5)


def test_a_loss_metric_is_the_target_loss_and_the_others_are_decoded(base, tmp_path):
    """chat: ``assistant_loss`` is the model's target loss on the split (no baseline can have
    one), ``rougeL`` is scored on the greedy replies."""
    tuned = fake_finetune(base, tmp_path, {"name": "chat", "max_examples": 40, "split": [0.5, 0.2, 0.3]})
    result = task_eval.evaluate_task(tuned, "chat", max_tokens=2, batch_size=8)
    run = Run.open(tuned)
    test = tasks.load(task_eval.build_task(run, "chat", []))["test"]
    expected = task_eval.target_loss(run.model(), run.tokenizer, test, batch_size=1, device="cpu")
    assert result["scores"]["run"]["assistant_loss"] == pytest.approx(expected, rel=1e-5)
    assert result["scores"]["run"]["assistant_loss"] == result["scores"]["base"]["assistant_loss"]
    assert "rougeL" in result["scores"]["run"] and "assistant_loss" not in result["scores"]["baseline"]


@pytest.fixture(scope="module")
def classifier_run(base, tmp_path_factory) -> Path:
    """A run with a classification head (untrained) on a small JSONL task."""
    from lmforge.hydra_bridge import Selected, component_config
    from lmforge.plugins.finetune import _classify

    root = tmp_path_factory.mktemp("cls")
    data = root / "labels.jsonl"
    words = {"def": "code", "import": "code", "hello": "text", "world": "text", "42": "number", "7": "number"}
    data.write_text("".join(json.dumps({"id": str(i), "text": f"{w} {i}", "label": label}) + "\n" for i in range(60) for w, label in [list(words.items())[i % 6]]))
    config = {"name": "classify", "data": str(data), "split": [0.6, 0.2, 0.2]}
    run = fake_finetune(base, root, config)
    task = Selected(*component_config("task", dict(config), "task")).build()
    splits = tasks.load(task).splits
    opened = Run.open(base)
    prepared = _classify.prepare(opened.model(), opened.tokenizer, task, splits, objective="causal", seq_len=16, batch_size=4, seed=0)
    state = {f"model.{k}": v for k, v in prepared.model.state_dict().items()}
    torch.save({"state_dict": state, "global_step": 0}, run / "checkpoints" / "last.ckpt")
    _classify.save_head(run, prepared.head)
    return run


def test_a_classify_task_writes_scores_per_class_table_and_confusion_matrix(classifier_run):
    result = task_eval.evaluate_task(classifier_run, "classify")
    out = classifier_run / "eval-classify"
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    accuracy = sum(line["prediction"] == line["reference"] for line in lines) / len(lines)
    assert result["scores"]["run"]["accuracy"] == pytest.approx(accuracy)
    assert "base" not in result["scores"] and "no classification head" in result["base_note"]
    assert set(result["per_class"]) <= {"code", "number", "text"}
    assert sum(row["support"] for row in result["per_class"].values()) == len(lines)
    matrix = json.loads((out / "confusion_matrix.json").read_text())
    assert sum(map(sum, matrix["matrix"])) == len(lines)
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["confusion_matrix"] == str(out / "confusion_matrix.png")


def test_a_task_the_run_was_not_tuned_on_is_refused(tuned):
    with pytest.raises(ConfigError, match=r"fine-tuned on task=translate, not summarize.*--task translate"):
        eval_main([str(tuned), "--task", "summarize"])


def test_a_classify_task_on_a_run_without_a_head_is_refused(base):
    with pytest.raises(ConfigError, match=r"no classification head \(no classifier.json\).*lmforge finetune"):
        eval_main([str(base), "--task", "classify"])


def test_a_generative_task_on_a_classifier_is_refused(classifier_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(classifier_run, other)
    (other / "finetune.yaml").unlink()
    with pytest.raises(ConfigError, match="is a classifier"):
        eval_main([str(other), "--task", "translate"])


@pytest.mark.parametrize(
    "argv,message",
    [
        (["task.data=x.jsonl"], "overrides go with --task"),
        (["--split", "test"], "only with --task"),
        (["--task", "translate", "task.name=chat"], "chosen with --task"),
        (["--task", "translate", "--max-tokens", "0"], "--max-tokens 0"),
        (["--task", "translate", "task.nonsense=1"], "task.nonsense"),
    ],
)
def test_bad_flags_name_themselves(base, argv, message):
    with pytest.raises(ConfigError, match=message):
        eval_main([str(base), *argv])


def test_the_command_prints_the_side_by_side_table(tuned, tmp_path):
    """Through the real CLI: the table with the run, base, gain and baseline columns, and the file."""
    out = tmp_path / "scored"
    proc = lmforge("eval", str(tuned), "--task", "translate", "task.max_examples=20", "--max-tokens", "2", "--out", str(out), cwd=tmp_path, env=OFFLINE)
    header = next(line for line in proc.stdout.splitlines() if "metric" in line)
    assert all(column in header for column in ("run", "base", "gain", "baseline"))
    assert any(line.strip("│ ").startswith("chrf") for line in proc.stdout.splitlines())
    assert f"wrote {out / 'eval.json'}" in proc.stdout
    assert json.loads((out / "eval.json").read_text())["task_config"]["max_examples"] == 20
