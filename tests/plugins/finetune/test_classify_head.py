"""The classification head on any architecture (``lmforge.Classifier``) and the seam
``lmforge finetune`` uses for a ``classify`` task (``plugins/finetune/_classify.py``)."""

from __future__ import annotations

import dataclasses
import json
import pytest
import torch

from lmforge import engine
from lmforge.classifier import Classifier, head_for
from lmforge.contracts import Example, LMOutput, Segment
from lmforge.errors import ConfigError, DataError
from lmforge.plugins.finetune import _classify
from lmforge.runs import Run

from support import make_run

ARCHS = {
    "transformer": (),
    "rnn": ("model=rnn",),
    "bert": ("model=bert", "tokenizer=wordpiece"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    out = {}
    for name, overrides in ARCHS.items():
        root = tmp_path_factory.mktemp(name)
        out[name] = Run.open(make_run(root, *overrides, noise=0.02))
    return out


def wrapped(run: Run, labels=("a", "b", "c"), seq_len: int = 12) -> Classifier:
    torch.manual_seed(0)
    objective = run.spec.model.entry.cls.objective
    head = head_for(list(labels), objective=objective, tokenizer=run.tokenizer, seq_len=seq_len, task="toy")
    return Classifier(run.model(), head).eval()


def rows(model: Classifier, run: Run, texts: list[str]) -> torch.Tensor:
    encoded, _ = engine.encode_rows(run.tokenizer, texts, model.record)
    return _pad(encoded, model.record.seq_len)


def _pad(encoded, seq_len):
    """Rows right-padded with -1 (``PAD``), as the head's data module pads them."""
    out = torch.full((len(encoded), seq_len), -1, dtype=torch.long)
    for i, ids in enumerate(encoded):
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def by_hand(model: Classifier, ids: list[int], position: int) -> torch.Tensor:
    """The head applied to the features at ``position`` of ``ids`` run alone, unpadded."""
    idx = torch.tensor([ids])
    lm = model.lm
    feats = lm(idx, return_hidden=True).hidden[-1] if model.uses_hidden else lm(idx).logits.float().log_softmax(-1)
    return model.score(model.norm(feats[0, position]))


@pytest.mark.parametrize("arch", ["transformer", "rnn"])
@torch.no_grad()
def test_a_decoder_pools_at_its_last_real_token(runs, arch):
    """The logits equal the head on the last token's features computed without padding; a token
    before that position changes them, padding after it does not."""
    run = runs[arch]
    model = wrapped(run)
    idx = rows(model, run, ["def add(a, b):", "import os"])  # (2, 12), PAD after each row
    lengths = (idx != -1).sum(1)
    assert lengths[0] != lengths[1] and model.record.pooling == "last"
    logits = model(idx).logits  # (2, 1, 3)
    assert logits.shape == (2, 1, 3)
    for row in range(2):
        n = int(lengths[row])
        expected = by_hand(model, idx[row, :n].tolist(), n - 1)
        torch.testing.assert_close(logits[row, 0], expected, atol=1e-5, rtol=1e-4)
    changed = idx.clone()
    changed[0, int(lengths[0]) - 2] = (changed[0, int(lengths[0]) - 2] + 1) % run.tokenizer.vocab_size  # before the pooled token
    assert not torch.allclose(model(changed).logits[0], logits[0])
    torch.testing.assert_close(model(changed).logits[1], logits[1])  # rows do not see each other


@torch.no_grad()
def test_an_encoder_pools_at_cls(runs):
    """BERT: every row starts with [CLS], and the logits are the head on position 0's features."""
    run = runs["bert"]
    model = wrapped(run)
    idx = rows(model, run, ["def add(a, b):", "import os"])
    assert model.record.pooling == "first" and (idx[:, 0] == run.tokenizer.special_ids["cls"]).all()
    logits = model(idx).logits
    ids = idx[0].masked_fill(idx[0] == -1, model.record.pad_id).tolist()  # the encoder sees the padding as [PAD]
    torch.testing.assert_close(logits[0, 0], by_hand(model, ids, 0), atol=1e-5, rtol=1e-4)
    later = idx.clone()
    later[0, 2] = (later[0, 2] + 1) % run.tokenizer.vocab_size  # after [CLS]: bidirectional, so [CLS] sees it
    assert not torch.allclose(model(later).logits[0], logits[0])


class _ThirdParty(torch.nn.Module):
    """An architecture that meets only the required contract: no ``unembed``, no hidden states."""

    supports_cache = False

    def __init__(self, vocab_size: int = 50, max_seq_len: int = 16) -> None:
        super().__init__()
        self.max_seq_len = max_seq_len
        self.wte = torch.nn.Embedding(vocab_size, 8)
        self.rnn = torch.nn.GRU(8, 8, batch_first=True)
        self.out = torch.nn.Linear(8, vocab_size)

    def forward(self, idx, *, cache=None, return_attention=False):
        return LMOutput(logits=self.out(self.rnn(self.wte(idx))[0]), attention=[] if return_attention else None)

    def num_params(self, non_embedding: bool = True) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int) -> float:
        return 6.0 * self.num_params()


class _Tok:
    name, vocab_size, special_ids = "toy", 50, {"eos": 0, "pad": 1}

    def encode_batch(self, texts):
        return [[2 + (ord(c) % 48) for c in t] for t in texts]


@torch.no_grad()
def test_a_third_party_architecture_pools_its_log_probabilities():
    """Without ``unembed`` the head reads the next-token log-probabilities (V wide) at the last token."""
    torch.manual_seed(0)
    lm = _ThirdParty()
    head = head_for(["x", "y"], objective="causal", tokenizer=_Tok(), seq_len=10)
    model = Classifier(lm, head).eval()
    assert not model.uses_hidden and model.score.in_features == 50
    encoded, _ = engine.encode_rows(_Tok(), ["abc", "abcdef"], head)
    logits = model(_pad(encoded, 10)).logits
    expected = model.score(model.norm(lm(torch.tensor([encoded[0]])).logits.log_softmax(-1)[0, 2]))
    torch.testing.assert_close(logits[0, 0], expected)
    assert engine.predict_labels(model, _Tok(), ["abc", "abcdef"]) == [head.labels[int(i)] for i in logits[:, 0].argmax(-1)]


def test_overlong_texts_are_truncated_or_dropped_and_counted(runs):
    run = runs["transformer"]
    head = head_for(["a", "b"], objective="causal", tokenizer=run.tokenizer, seq_len=4)
    texts = ["x", "def a_long_function_name(argument_one, argument_two): return 1"]
    kept, counts = engine.encode_rows(run.tokenizer, texts, head, "truncate")
    assert len(kept[0]) < 4 and len(kept[1]) == 4 and counts == {"truncated": 1}
    dropped, counts = engine.encode_rows(run.tokenizer, texts, head, "drop")
    assert dropped[1] is None and counts["dropped"] == 1


def test_an_encoder_without_cls_is_refused(runs):
    with pytest.raises(ConfigError, match=r"\[CLS\].*tokenizer=wordpiece"):
        head_for(["a", "b"], objective="masked", tokenizer=runs["transformer"].tokenizer, seq_len=8)


def test_one_label_is_refused(runs):
    with pytest.raises(DataError, match="two distinct labels"):
        head_for(["a"], objective="causal", tokenizer=runs["transformer"].tokenizer, seq_len=8)


# The toy task: which of three snippets' keywords a text holds. Learnable by a tiny model in
# a few dozen steps, and the majority class is 40% of it.
KEYWORDS = {"def": ["def f(x):", "def add(a, b):", "def run():"], "import": ["import os", "import sys", "from x import y"],
            "class": ["class A:", "class Node(object):", "class B(A):"]}


def toy_examples(n: int, seed: int) -> list[Example]:
    import random

    rng = random.Random(seed)
    weights = {"def": 0.4, "import": 0.3, "class": 0.3}
    out = []
    for i in range(n):
        label = rng.choices(list(weights), list(weights.values()))[0]
        text = rng.choice(KEYWORDS[label]) + rng.choice(["", " pass", "  # note", " return 1"])
        out.append(Example(id=f"{seed}-{i}", segments=[Segment(text)], label=label))
    return out


class _ToyTask:
    name = "toy"
    type = "classify"

    class config:
        overlong = "truncate"

    def score(self, predictions, examples):
        return {"accuracy": sum(p == e.label for p, e in zip(predictions, examples)) / len(examples)}


@pytest.mark.parametrize("arch", ["transformer", pytest.param("bert", marks=pytest.mark.slow)])
def test_a_classify_finetune_beats_the_majority_class_and_reopens(runs, arch, tmp_path):
    """Through the seam and ``engine.fit``: the fine-tuned head beats the majority class on
    held-out examples, and ``Run.model()`` of a run with ``classifier.json`` rebuilds it."""
    run = runs[arch]
    splits = {"train": toy_examples(160, 0), "validation": toy_examples(40, 1), "test": toy_examples(60, 2)}
    prepared = _classify.prepare(
        run.model(), run.tokenizer, _ToyTask(), splits, objective=run.spec.model.entry.cls.objective,
        seq_len=run.spec.data.seq_len, batch_size=16, seed=0,
    )
    assert prepared.vocab_size == 3 and prepared.head.labels == ["class", "def", "import"]
    spec = run.spec
    trainer = dataclasses.replace(spec.trainer, max_steps=30, val_check_interval=30, enable_progress_bar=False, accelerator="cpu", devices=1)
    optimizer = dataclasses.replace(spec.optimizer.build().config, lr=3e-3)
    fitted = engine.fit(
        prepared.model.train(), prepared.data, vocab_size=prepared.vocab_size, trainer=trainer,
        optimizer=spec.optimizer.entry.cls(optimizer), scheduler=spec.scheduler.build(), loss=spec.loss,
        logger=spec.logger.build(), run_dir=tmp_path,
    )
    assert fitted.steps == 30 and 0.0 <= fitted.metrics["val_top1"] <= 1.0
    test = splits["test"]
    majority = max(sum(e.label == k for e in test) for k in KEYWORDS) / len(test)
    score = _classify.validation_scores(prepared.model, run.tokenizer, _ToyTask(), test)["accuracy"]
    assert score > majority + 0.1, (score, majority)

    # the run directory of a fine-tune: the base's records, the new weights and classifier.json
    finetuned = tmp_path / "finetuned"
    (finetuned / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "tokenizer.json"):
        (finetuned / name).write_bytes((run.dir / name).read_bytes())
    state = {f"model.{k}": v for k, v in prepared.model.state_dict().items()}
    torch.save({"state_dict": state, "global_step": 30}, finetuned / "checkpoints" / "last.ckpt")
    _classify.save_head(finetuned, prepared.head)
    assert json.loads((finetuned / "classifier.json").read_text())["labels"] == prepared.head.labels
    reopened = Run.open(finetuned)
    assert reopened.head.pooling == prepared.head.pooling
    again = reopened.model()
    assert isinstance(again, Classifier)
    texts = [_classify.text_of(e) for e in test]
    assert engine.predict_labels(again, reopened.tokenizer, texts) == engine.predict_labels(prepared.model, run.tokenizer, texts)


@pytest.mark.slow
def test_the_classify_demo_fine_tunes_through_the_cli_and_beats_the_majority_class(base_run, finetune_env, tmp_path):
    """``lmforge finetune task=classify`` on a pretrained base, then ``lmforge eval --task classify``:
    the head beats the majority class on the test split, and the picture lies beside the numbers."""
    from support import lmforge

    run = tmp_path / "ft"
    lmforge(
        "finetune", f"base={base_run}", "task=classify", "trainer.max_steps=150", "trainer.val_check_interval=75",
        "trainer.enable_progress_bar=false", "optimizer.lr=3e-3", "scheduler.warmup_steps=5", "finetune.batch_size=16",
        f"hydra.run.dir={run}", cwd=tmp_path, env=finetune_env,
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metrics"]["accuracy"] > summary["baseline"]["accuracy"] + 0.1
    assert json.loads((run / "classifier.json").read_text())["pooling"] == "last"
    proc = lmforge("eval", str(run), "--task", "classify", cwd=tmp_path, env=finetune_env)
    assert "per class" in proc.stdout and "confusion_matrix.png" in proc.stdout
    result = json.loads((run / "eval-classify" / "eval.json").read_text())
    assert result["scores"]["run"]["accuracy"] > result["scores"]["baseline"]["accuracy"] + 0.1
    assert (run / "eval-classify" / "confusion_matrix.png").is_file()


def test_the_training_stream_reads_every_row_once_a_pass_in_a_seeded_order():
    """Each pass over the rows is a permutation seeded by (seed, pass): the same for the same
    seed (so a resumed run reads on exactly), another one for the next pass."""
    head = head_for(["a", "b"], objective="causal", tokenizer=_Tok(), seq_len=4)
    rows = [[2 + i] for i in range(10)]
    data = engine.LabelData((rows, [i % 2 for i in range(10)]), (rows[:2], [0, 1]), head, batch_size=5, seed=3)
    batches = [inputs[:, 0].tolist() for inputs, _ in data.train_dataloader()]
    assert len(batches) == 2 and sorted(sum(batches, [])) == [2 + i for i in range(10)]
    again = engine.LabelData((rows, [i % 2 for i in range(10)]), (rows[:2], [0, 1]), head, batch_size=5, seed=3)
    assert [inputs[:, 0].tolist() for inputs, _ in again.train_dataloader()] == batches
    stream = data.train_dataloader().dataset
    first, second = [int(stream[g][0][0]) for g in range(10)], [int(stream[g][0][0]) for g in range(10, 20)]
    assert sorted(first) == sorted(second) and first != second
    inputs, targets = next(iter(data.val_dataloader()))
    assert inputs.shape == (2, 4) and targets.tolist() == [[0], [1]] and (inputs[:, 1:] == -1).all()


def test_a_damaged_head_record_names_its_file(runs, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["transformer"].dir, run)
    (run / "classifier.json").write_text(json.dumps({"labels": [], "pooling": "middle", "seq_len": 3}))
    with pytest.raises(DataError, match=r"classifier.json: pooling='middle'"):
        Run.open(run).model()
