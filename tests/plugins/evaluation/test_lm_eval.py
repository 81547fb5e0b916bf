"""lm-eval-harness on lmforge runs: lmforge's own model (``LmforgeLM``), the harness's ``hf``
model on an export, and ``lmforge eval --lm-eval``.

The runs are made without training (``support.make_run``: random weights nudged off their
init), so every score below is checked against log-probabilities computed here, straight
from the run's model, not against a remembered figure. Everything runs offline on the
tiny task in ``tests/fixtures/lm_eval`` (local JSONL, read relative to that folder).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import support

lm_eval = pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from lmforge.errors import ConfigError  # noqa: E402
from lmforge.plugins.deploy._export import export  # noqa: E402
from lmforge.plugins.evaluation._lm_eval import LmforgeLM  # noqa: E402
from lmforge.runs import Run  # noqa: E402

FIXTURES = support.REPO / "tests" / "fixtures" / "lm_eval"
TASK = "lmforge_tiny_mc"
DOCS = [json.loads(line) for line in (FIXTURES / "tiny_mc.jsonl").read_text().splitlines()]
VARIANTS = {"llama": [], "gpt2": ["model.pos=learned", "model.norm=layernorm", "model.mlp=gelu"]}
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Each variant's run directory and its `--format hf` export."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LMFORGE_DISABLE_PLUGIN_AUTOLOAD", "1")
    runs = {}
    for name, overrides in VARIANTS.items():
        root = tmp_path_factory.mktemp(name)
        run = support.make_run(root, "data.seq_len=64", *overrides, noise=0.05, quiet_eos=True)
        runs[name] = (run, export(run, root / "hf"))
    mp.undo()
    return runs


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Offline, in the fixture folder (the task's data_files are relative), with a throwaway datasets cache."""
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.chdir(FIXTURES)


def evaluate(model, **kwargs) -> dict:
    tasks = TaskManager(include_path=str(FIXTURES), include_defaults=False)
    return lm_eval.simple_evaluate(model=model, tasks=[TASK], task_manager=tasks, log_samples=True, **kwargs)


def sample_logprobs(results: dict) -> list[list[float]]:
    """Each document's choices' log-likelihoods, in document order."""
    samples = sorted(results["samples"][TASK], key=lambda s: s["doc_id"])
    return [[float(ll) for ll, _ in s["filtered_resps"]] for s in samples]


def hand_logprob(model, tokenizer, context: str, continuation: str) -> float:
    """log p(continuation | context), summed over its tokens, from the model's logits.

    As lm-eval does, the context's trailing whitespace is scored with the continuation.
    """
    stripped = context.rstrip()
    context, continuation = stripped, context[len(stripped):] + continuation
    ids = tokenizer.encode_batch([context + continuation])[0]
    n_context = len(tokenizer.encode_batch([context])[0])
    with torch.no_grad():
        logprobs = F.log_softmax(model(torch.tensor([ids[:-1]])).logits[0].float(), dim=-1)
    return sum(float(logprobs[t - 1, ids[t]]) for t in range(n_context, len(ids)))


@pytest.fixture(scope="module")
def ours(made, tmp_path_factory):
    """lmforge's model on the llama run: the harness's results with samples."""
    mp = pytest.MonkeyPatch()
    for key, value in OFFLINE.items():
        mp.setenv(key, value)
    mp.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("datasets")))
    mp.chdir(FIXTURES)
    try:
        return evaluate(LmforgeLM(str(made["llama"][0]), batch_size=3))
    finally:
        mp.undo()


def test_accuracy_equals_a_hand_computation_of_the_same_loglikelihoods(made, ours):
    run = Run.open(made["llama"][0])
    model, tokenizer = run.model(), run.tokenizer
    hand = [[hand_logprob(model, tokenizer, d["question"], " " + c) for c in d["choices"]] for d in DOCS]
    got = sample_logprobs(ours)
    assert [pytest.approx(row, abs=1e-4) for row in hand] == got
    acc = sum(max(range(4), key=row.__getitem__) == d["answer"] for row, d in zip(hand, DOCS)) / len(DOCS)
    assert 0 < acc < 1  # a random model: the check can tell a right ranking from a wrong one
    assert ours["results"][TASK]["acc,none"] == pytest.approx(acc)
    # acc_norm: each choice's log-likelihood per character of the choice, as lm-eval defines it
    norm = sum(
        max(range(4), key=lambda i: row[i] / len(d["choices"][i])) == d["answer"] for row, d in zip(hand, DOCS)
    ) / len(DOCS)
    assert ours["results"][TASK]["acc_norm,none"] == pytest.approx(norm)


def test_batching_does_not_change_the_scores(made, ours, offline):
    one = evaluate(LmforgeLM(str(made["llama"][0]), batch_size=1))
    assert sample_logprobs(one) == [pytest.approx(row, abs=1e-5) for row in sample_logprobs(ours)]


def test_the_export_scores_as_its_run_through_lmforge(made, ours, offline):
    """`pretrained=` an `--format hf` export: Run.open maps the weights back, so the numbers are the run's."""
    exported = evaluate(LmforgeLM(str(made["llama"][1]), batch_size=3))
    assert sample_logprobs(exported) == sample_logprobs(ours)


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_harness_hf_model_on_the_export_gives_lmforges_numbers(made, offline, variant):
    """lm-eval's own `hf` model loads the exported folder (Llama and GPT-2) and scores it as lmforge does."""
    run_dir, out = made[variant]
    theirs = evaluate("hf", model_args=f"pretrained={out},dtype=float32", device="cpu", batch_size=4)
    mine = evaluate(LmforgeLM(str(run_dir), batch_size=4))
    for metric in ("acc,none", "acc_norm,none"):
        assert theirs["results"][TASK][metric] == mine["results"][TASK][metric]
    assert sample_logprobs(theirs) == [pytest.approx(row, abs=1e-4) for row in sample_logprobs(mine)]


def rolling(lm: LmforgeLM, texts: list[str]) -> list[float]:
    requests = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)]
    return lm.loglikelihood_rolling(requests, disable_tqdm=True)


def test_loglikelihood_rolling_is_the_summed_token_logprobs(made):
    """A short text after eos, and one over three context windows (lm-eval's disjoint rolling windows)."""
    run = Run.open(made["llama"][0])
    lm = LmforgeLM(str(run.dir), batch_size=2)
    model, tokenizer, eos = lm.model, run.tokenizer, run.tokenizer.special_ids["eos"]
    short, long = support.TEXTS[0], "".join(support.TEXTS[:24])
    ids = tokenizer.encode_batch([long])[0]
    assert len(ids) > 2 * model.max_seq_len

    def summed(context: list[int], targets: list[int]) -> float:
        seq = context + targets
        with torch.no_grad():
            logprobs = F.log_softmax(model(torch.tensor([seq[:-1]])).logits[0], dim=-1)
        return sum(float(logprobs[len(context) - 1 + k, t]) for k, t in enumerate(targets))

    window = model.max_seq_len
    starts = range(0, len(ids), window)
    # the first window after eos; each later one after as many tokens before it as the context leaves room for
    hand_long = summed([eos], ids[:window]) + sum(
        summed(ids[start - (window + 1 - len(ids[start : start + window])) : start], ids[start : start + window]) for start in starts[1:]
    )
    hand_short = summed([eos], tokenizer.encode_batch([short])[0])
    got = rolling(lm, [short, long])
    assert got == [pytest.approx(hand_short, abs=1e-4), pytest.approx(hand_long, abs=1e-3)]
    assert all(math.isfinite(g) and g < 0 for g in got)


def generate(lm: LmforgeLM, contexts: list[str], **gen_kwargs) -> list[str]:
    requests = [Instance("generate_until", {}, (c, gen_kwargs), i) for i, c in enumerate(contexts)]
    return lm.generate_until(requests, disable_tqdm=True)


def test_generate_until_stops_before_the_until_text_and_after_max_gen_toks(made):
    lm = LmforgeLM(str(made["llama"][0]), batch_size=4)
    contexts = ["def add(a, b):", "import os", "class A:"]
    free = generate(lm, contexts, until=[], max_gen_toks=12, do_sample=False)
    short = generate(lm, contexts, until=[], max_gen_toks=4, do_sample=False)
    assert all(f.startswith(s) and len(s) < len(f) for f, s in zip(free, short))  # max_gen_toks ends a row early
    text = max(free, key=len)
    row = free.index(text)
    until = text[len(text) // 2 : len(text) // 2 + 2]
    cut = text.index(until)
    stopped = generate(lm, contexts, until=[until], max_gen_toks=12, do_sample=False)
    assert stopped[row] == text[:cut]  # the same greedy text, ended before the first `until`, which is left out
    assert until not in stopped[row]


def test_a_masked_lm_is_refused_with_the_reason(tmp_path):
    run = support.make_run(tmp_path, "model=bert")
    with pytest.raises(ConfigError, match=r"model=bert is a masked LM.*causal model"):
        LmforgeLM(str(run))


def test_an_unknown_model_arg_is_named(made):
    with pytest.raises(ConfigError, match=r"model_args chekpoint: not an argument of the lmforge model"):
        LmforgeLM(str(made["llama"][0]), chekpoint="x")
