"""Reusable contract test suites, one per component kind, and one per distribution.

Every built-in component runs the suite of its kind, and a third-party plugin can run
the same checks in its own CI by subclassing::

    from lmforge.testing import ArchitectureContract, PluginContract

    class TestGRU(ArchitectureContract):
        component = GRU                      # the registered class
        config = GRUConfig(hidden=32)        # a tiny instance of its Config

    class TestDistribution(PluginContract):
        distribution = "lmforge-gru"         # the installed distribution
        components = {"model": ["gru"]}      # what it registers, by config group

The suite of a kind is named after its base class in ``lmforge.contracts``
(``Architecture`` -> ``ArchitectureContract``), so each row of ``KINDS`` has one.
``PluginContract`` checks the installed distribution as lmforge discovers it: its
entry points load, it registers what it should, and the YAML options it ships match
the components' ``Config``.

The suites are plain pytest classes (collected when their name starts with ``Test``) and
use only pytest's ``tmp_path`` fixture. Heavy imports (torch, Lightning, transformers)
happen inside the tests that need them.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pytest

from lmforge.contracts import (
    KINDS,
    Architecture,
    Collector,
    Document,
    Guard,
    Logger,
    Optimizer,
    Param,
    Preprocessor,
    Scheduler,
    Task,
    Tokenizer,
    Tuner,
    kind_of,
)


class ComponentContract:
    component: ClassVar[type]
    config: ClassVar[Any] = None
    base: ClassVar[type]

    def make(self):
        return self.component(self.config if self.config is not None else self.component.Config())

    def test_declares_name_and_config_schema(self):
        assert issubclass(self.component, self.base)
        assert isinstance(self.component.name, str) and self.component.name
        assert dataclasses.is_dataclass(self.component.Config)

    def test_config_defaults_build(self):
        self.component(self.component.Config())

    def test_cache_token_is_a_string(self):
        assert isinstance(self.make().cache_token(), str)


class CollectorContract(ComponentContract):
    base = Collector
    max_documents: ClassVar[int] = 50
    # the ``source`` values documents may carry; None means the collector's own name (a
    # mixture of collectors keeps each sub-collector's name instead)
    expected_sources: ClassVar[set[str] | None] = None

    def _take(self, tmp_path: Path) -> list[Document]:
        docs, stats = [], Counter()
        for doc in self.make().documents(tmp_path, stats):
            docs.append(doc)
            if len(docs) == self.max_documents:
                break
        return docs

    def test_yields_documents_with_the_schema(self, tmp_path):
        docs = self._take(tmp_path)
        assert docs, "the collector yielded no documents"
        for doc in docs:
            assert isinstance(doc, Document) and isinstance(doc.text, str) and doc.id
            assert doc.source in (self.expected_sources or {self.component.name})

    def test_ids_are_unique_and_order_is_deterministic(self, tmp_path):
        first = [d.id for d in self._take(tmp_path / "a")]
        second = [d.id for d in self._take(tmp_path / "b")]
        assert first == second
        assert len(set(first)) == len(first)

    def test_documents_is_a_generator(self, tmp_path):
        it = self.make().documents(tmp_path, Counter())
        assert iter(it) is it, "documents() must stream (return an iterator), not build a list"


class PreprocessorContract(ComponentContract):
    base = Preprocessor
    sample_texts: ClassVar[list[str]] = ["Hello,   world!\n", "def f(x):\n    return x\n"]

    def _docs(self) -> list[Document]:
        return [Document(id=f"d{i}", text=t, source="test") for i, t in enumerate(self.sample_texts)]

    def test_pickles_before_setup(self):
        step = pickle.loads(pickle.dumps(self.make()))
        step.setup()

    def test_process_streams_documents(self):
        step = self.make()
        step.setup()
        stats: Counter = Counter()
        out = list(step.process(iter(self._docs()), stats))
        assert all(isinstance(d, Document) for d in out)
        assert len(out) + sum(v for k, v in stats.items() if k.startswith("dropped:")) == len(self.sample_texts)

    def test_state_is_saved_as_json_and_restores(self, tmp_path):
        """``state()`` is JSON data (or arrays of numbers), and a step restored from it goes on as the original."""
        from lmforge.stages.preprocess import load_states, save_states

        step, again = self.make(), self.make()
        step.setup(), again.setup()
        list(step.process(iter(self._docs()), Counter()))
        save_states(tmp_path, [step], [step.state()], tag="docs-00000")  # raises for data JSON cannot hold
        (saved,) = load_states(tmp_path, [again])
        if saved is not None:
            again.restore(saved)
        texts = [*self.sample_texts, "One more text."]
        original, restored = Counter(), Counter()  # fresh documents for each: a step may change them in place
        kept = list(step.process((Document(f"e{i}", t, "test") for i, t in enumerate(texts)), original))
        assert list(again.process((Document(f"e{i}", t, "test") for i, t in enumerate(texts)), restored)) == kept
        assert original == restored


class TokenizerContract(ComponentContract):
    base = Tokenizer
    corpus: ClassVar[list[str]] = [
        "The quick brown fox jumps over the lazy dog. " * 3,
        "def add(a, b):\n    return a + b\n",
        "Grüße aus Köln — 東京 🚀",
    ] * 20
    round_trip: ClassVar[bool] = True  # byte-level tokenizers reproduce any text exactly
    # False only for a tokenizer that cannot be written as a Hugging Face pipeline: its
    # transformers check is then skipped, and export to Hugging Face cannot carry it
    transformers_compatible: ClassVar[bool] = True

    def trained(self, tmp_path: Path):
        tok = self.make()
        if tok.trainable:
            tok.train(iter(self.corpus))
        tok.save(tmp_path / "tokenizer.json")
        return tok

    def test_encodes_within_vocabulary(self, tmp_path):
        tok = self.trained(tmp_path)
        for ids in tok.encode_batch(self.corpus[:3]):
            assert ids and all(0 <= i < tok.vocab_size for i in ids)

    def test_round_trips(self, tmp_path):
        if not self.round_trip:
            pytest.skip(f"{self.component.name} normalizes text (round_trip is False): decode(encode(text)) may differ")
        tok = self.trained(tmp_path)
        for text in self.corpus[:3]:
            assert tok.decode(tok.encode_batch([text])[0]) == text

    def test_save_and_load_give_the_same_ids(self, tmp_path):
        tok = self.trained(tmp_path)
        again = self.make()
        again.load(tmp_path / "tokenizer.json")
        assert again.encode_batch(self.corpus[:3]) == tok.encode_batch(self.corpus[:3])
        assert again.special_ids == tok.special_ids

    def test_tokenizer_json_loads_in_transformers_with_the_same_ids(self, tmp_path):
        """What the export to Hugging Face relies on: the saved file is a working HF tokenizer."""
        if not self.transformers_compatible:
            pytest.skip(
                f"{self.component.name} declares that its tokenizer.json is not a Hugging Face pipeline "
                "(transformers_compatible is False): a run's tokenizer cannot be exported to transformers"
            )
        transformers = pytest.importorskip("transformers", reason="transformers is not installed")
        tok = self.trained(tmp_path)
        fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
        for text in self.corpus[:3]:
            assert fast(text, add_special_tokens=False)["input_ids"] == tok.encode_batch([text])[0]


class ArchitectureContract(ComponentContract):
    """Checks every architecture: shapes, size report, training signal, and its cache if it has one.

    The training checks follow ``objective``: a causal model predicts the next token; a
    masked model is fed ``mask_tokens`` inputs and scored on the selected positions.
    Set ``config`` to a tiny instance (one or two layers, width 32) to keep the suite
    to a few seconds.
    """

    base = Architecture
    vocab_size: ClassVar[int] = 61
    seq_len: ClassVar[int] = 16
    overfit_steps: ClassVar[int] = 150  # AdamW steps to memorise a 2 x 16 batch (tiny models need under 100)
    overfit_lr: ClassVar[float] = 1e-2
    overfit_loss: ClassVar[float] = 0.1  # the loss the memorised batch must reach

    def built(self):
        import torch

        torch.manual_seed(0)
        return self.make().build(vocab_size=self.vocab_size, max_seq_len=self.seq_len)

    def batch(self, B: int, seed: int = 1):
        """(inputs, targets) of B rows for the objective; targets are -100 where not scored."""
        import torch

        from lmforge.masking import mask_tokens

        g = torch.Generator().manual_seed(seed)
        if self.component.objective == "masked":
            mask_id = self.vocab_size - 1  # the last id plays [MASK]; the others are ordinary tokens
            ids = torch.randint(0, mask_id, (B, self.seq_len), generator=g)
            return mask_tokens(ids, vocab_size=self.vocab_size, mask_id=mask_id, special_ids=[mask_id], generator=g)
        ids = torch.randint(0, self.vocab_size, (B, self.seq_len + 1), generator=g)
        return ids[:, :-1], ids[:, 1:]

    def train_steps(self, model, inputs, targets, steps: int, lr: float) -> list[float]:
        import torch
        import torch.nn.functional as F

        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        losses = []
        for _ in range(steps):
            logits = model(inputs).logits
            loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    def test_objective_is_known(self):
        assert self.component.objective in ("causal", "masked")

    def test_forward_gives_logits(self):
        import torch

        model = self.built()
        out = model(torch.randint(0, self.vocab_size, (2, self.seq_len)))
        assert out.logits.shape == (2, self.seq_len, self.vocab_size)
        assert isinstance(model.max_seq_len, int)

    def test_attention_maps_when_asked(self):
        """``return_attention=True`` gives a list with one (B, H, T, T) map per attention layer."""
        import torch

        model = self.built().eval()
        out = model(torch.randint(0, self.vocab_size, (2, self.seq_len)), return_attention=True)
        assert isinstance(out.attention, list)
        for att in out.attention:
            assert att.dim() == 4 and att.shape[0] == 2 and att.shape[-2:] == (self.seq_len, self.seq_len)

    def test_the_parts_lmforge_explain_uses(self):
        """Optional: ``get_input_embeddings()`` gives the embedding table whose output the model
        uses as is; ``unembed(hidden[-1])`` with ``return_hidden=True`` equals the logits."""
        import torch

        model = self.built().eval()
        idx = torch.randint(0, self.vocab_size, (2, self.seq_len))
        if callable(getattr(model, "get_input_embeddings", None)):
            table = model.get_input_embeddings()
            assert isinstance(table, torch.nn.Embedding)
            other = torch.randint(0, self.vocab_size, (2, self.seq_len), generator=torch.Generator().manual_seed(1))
            with torch.no_grad():
                want, swapped = model(other).logits, table(other)
                handle = table.register_forward_hook(lambda module, args, out: swapped)
                try:  # the table's output replaced by other's: the model must read other
                    got = model(idx).logits
                finally:
                    handle.remove()
            assert torch.allclose(got, want, atol=1e-5)
        if callable(getattr(model, "unembed", None)):
            with torch.no_grad():
                out = model(idx, return_hidden=True)
                assert out.hidden is not None and len(out.hidden) >= 2
                assert torch.allclose(model.unembed(out.hidden[-1]), out.logits, atol=1e-5)

    def test_reports_size_and_flops(self):
        model = self.built()
        assert model.num_params() > 0
        assert model.flops_per_token(self.seq_len) >= 6 * model.num_params()

    def test_loss_goes_down_on_a_fixed_batch(self):
        model = self.built()
        losses = self.train_steps(model, *self.batch(4), steps=30, lr=1e-2)
        assert losses[-1] < 0.5 * losses[0], f"loss did not go down: {losses[0]:.3f} -> {losses[-1]:.3f}"

    def test_overfits_a_tiny_fixed_batch(self):
        """A 2 x 16 batch is memorised to near-zero loss: every parameter path can learn."""
        model = self.built().eval()  # no dropout: memorising is the point
        losses = self.train_steps(model, *self.batch(2, seed=2), steps=self.overfit_steps, lr=self.overfit_lr)
        assert losses[-1] < self.overfit_loss, f"did not overfit: {losses[0]:.3f} -> {losses[-1]:.3f}"

    def test_cache_decoding_equals_full_recompute(self):
        """Prefill, a chunk, then single tokens through the cache give the logits of one full pass."""
        import torch

        model = self.built().eval()
        if not model.supports_cache:
            pytest.skip(f"{self.component.name} has no cache (supports_cache is False)")
        idx = torch.randint(0, self.vocab_size, (2, self.seq_len), generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            full = model(idx).logits
            cache = model.init_cache(2, self.seq_len)
            split = self.seq_len // 2
            pieces = [model(idx[:, :split], cache=cache).logits, model(idx[:, split : split + 3], cache=cache).logits]
            for t in range(split + 3, self.seq_len):
                pieces.append(model(idx[:, t : t + 1], cache=cache).logits)
        assert cache.pos == self.seq_len and cache.max_len == self.seq_len
        torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


class TunerContract(ComponentContract):
    """Ask and tell over a space with every kind of parameter, as a sweep drives it."""

    base = Tuner
    budget: ClassVar[int] = 8
    num_workers: ClassVar[int] = 2
    space: ClassVar[list[Param]] = [
        Param("optimizer.lr", "float", low=1e-4, high=1e-1, log=True),
        Param("x", "float", low=-2.0, high=2.0),
        Param("model.n_layer", "int", low=1, high=6),
        Param("model", "choice", choices=["rnn", "transformer"]),
    ]

    @staticmethod
    def value(params: dict) -> float:
        """A made-up objective with its minimum inside the space."""
        return (params["x"] - 0.5) ** 2 + abs(params["model.n_layer"] - 3) + (params["model"] == "rnn")

    def run(self, seed: int = 0, fail: tuple[int, ...] = ()) -> list:
        """A whole sweep in batches of ``num_workers``; trials numbered in ``fail`` are told inf."""
        import math

        tuner = self.make()
        tuner.start(list(self.space), self.budget, self.num_workers, seed)
        asked = []
        while True:
            batch = [t for t in (tuner.ask() for _ in range(self.num_workers)) if t is not None]
            if not batch:
                return asked
            for trial in batch:
                tuner.tell(trial, math.inf if trial.number in fail else self.value(trial.params))
            asked += batch

    def test_asks_stay_inside_the_space(self):
        for trial in self.run():
            assert set(trial.params) == {p.name for p in self.space}
            for p in self.space:
                v = trial.params[p.name]
                if p.kind == "choice":
                    assert v in p.choices
                else:
                    assert isinstance(v, int) if p.kind == "int" else isinstance(v, float), f"{p.name}={v!r}"
                    assert p.low <= v <= p.high, f"{p.name}={v} outside [{p.low}, {p.high}]"

    def test_numbers_are_consecutive_and_the_budget_holds(self):
        trials = self.run()
        assert 0 < len(trials) <= self.budget
        assert [t.number for t in trials] == list(range(len(trials)))

    def test_same_seed_and_tells_give_the_same_asks(self):
        """What lets a resumed sweep replay its finished trials."""
        assert [(t.number, t.params) for t in self.run(seed=1)] == [(t.number, t.params) for t in self.run(seed=1)]

    def test_failed_trials_told_inf_do_not_stop_it(self):
        trials = self.run(fail=(0, 3))
        assert len(trials) == len(self.run())



class OptimizerContract(ComponentContract):
    """Builds on the two parameter groups the trainer passes, keeps them, and learns.

    The model is a tiny embedding and linear head: its matrix is decayed, its embedding
    and bias are not, as the trainer groups them.
    """

    base = Optimizer
    steps: ClassVar[int] = 20  # optimizer steps over which a fixed batch's loss must fall

    def model_and_groups(self):
        import torch
        from torch import nn

        torch.manual_seed(0)
        model = nn.Sequential(nn.Embedding(11, 8), nn.Linear(8, 11))
        embedding, head = model
        groups = [
            {"params": [head.weight], "weight_decay": self.make().config.weight_decay},
            {"params": [embedding.weight, head.bias], "weight_decay": 0.0},
        ]
        return model, groups

    def loss(self, model):
        import torch
        import torch.nn.functional as F

        ids = torch.arange(11)
        return F.cross_entropy(model(ids), ids.roll(1))  # learn a fixed permutation

    def fit(self, model, opt, steps: int) -> list[float]:
        losses = []
        for _ in range(steps):
            loss = self.loss(model)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    def test_builds_a_torch_optimizer_keeping_the_groups(self):
        import torch

        optimizer = self.make()
        _, groups = self.model_and_groups()
        opt = optimizer.build(groups, on_cuda=False)
        assert isinstance(opt, torch.optim.Optimizer)
        assert [g["weight_decay"] for g in opt.param_groups] == [optimizer.config.weight_decay, 0.0]
        assert [len(g["params"]) for g in opt.param_groups] == [1, 2]
        # lr is the peak rate, which the scheduler scales: it must not be changed here
        assert all(g["lr"] == optimizer.config.lr for g in opt.param_groups)

    def test_steps_lower_the_loss_on_a_fixed_batch(self):
        model, groups = self.model_and_groups()
        losses = self.fit(model, self.make().build(groups, on_cuda=False), self.steps)
        assert losses[-1] < losses[0], f"loss did not go down in {self.steps} steps: {losses[0]:.4f} -> {losses[-1]:.4f}"

    def test_state_dict_resumes_the_same_trajectory(self):
        """A checkpoint's optimizer state, loaded into a fresh optimizer, continues identically."""
        import copy

        import torch

        model, groups = self.model_and_groups()
        opt = self.make().build(groups, on_cuda=False)
        self.fit(model, opt, 3)
        twin = copy.deepcopy(model)
        embedding, head = twin
        twin_groups = [
            {"params": [head.weight], "weight_decay": groups[0]["weight_decay"]},
            {"params": [embedding.weight, head.bias], "weight_decay": 0.0},
        ]
        twin_opt = self.make().build(twin_groups, on_cuda=False)
        twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
        self.fit(model, opt, 2)
        self.fit(twin, twin_opt, 2)
        for a, b in zip(model.parameters(), twin.parameters()):
            torch.testing.assert_close(a, b)


class SchedulerContract(ComponentContract):
    """The multiplier of the peak rate: the warm-up, a range of [0, 1], no hidden state.

    The base class's ``lr_lambda`` gives ``(step + 1) / warmup_steps`` during the
    warm-up; the suite checks that a schedule keeps it, that every multiplier lies in
    [0, 1] (the peak rate is the most a step gets), and that the decay starts at the peak,
    so that the rate does not jump when the warm-up ends.
    """

    base = Scheduler
    max_steps: ClassVar[int] = 1000

    def factors(self, config=None) -> list[float]:
        schedule = self.component(config) if config is not None else self.make()
        factor = schedule.lr_lambda(self.max_steps)
        return [factor(step) for step in range(self.max_steps + 1)]

    def test_starts_with_the_linear_warm_up(self):
        schedule = self.make()
        warmup = schedule.config.warmup_steps
        assert warmup < self.max_steps, f"set config.warmup_steps below max_steps={self.max_steps}"
        factors = self.factors()
        assert factors[:warmup] == pytest.approx([(step + 1) / warmup for step in range(warmup)])

    def test_multipliers_stay_within_0_and_1(self):
        factors = self.factors()
        assert all(0.0 <= f <= 1.0 for f in factors), f"outside [0, 1]: {[f for f in factors if not 0 <= f <= 1][:5]}"
        schedule = self.make()
        assert all(0.0 <= schedule.multiplier(p / 100) <= 1.0 for p in range(101))

    def test_decay_starts_at_the_peak_after_the_warm_up(self):
        schedule = self.make()
        start = schedule.decay_start(self.max_steps)
        assert schedule.config.warmup_steps <= start <= self.max_steps
        assert schedule.multiplier(0.0) == pytest.approx(1.0)

    def test_is_a_function_of_the_step_only(self):
        """Resume replays steps out of order: no hidden state may change a multiplier."""
        factor = self.make().lr_lambda(self.max_steps)
        forward = [factor(step) for step in range(self.max_steps + 1)]
        backward = [factor(step) for step in reversed(range(self.max_steps + 1))][::-1]
        assert forward == backward

    def test_no_warm_up_is_allowed(self):
        config = dataclasses.replace(self.make().config, warmup_steps=0)
        factors = self.factors(config)
        assert factors[0] == pytest.approx(1.0) and all(0.0 <= f <= 1.0 for f in factors)

    def test_drives_torch_lambda_lr(self):
        import torch

        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        factor = self.make().lr_lambda(self.max_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        for step in range(self.max_steps):
            assert opt.param_groups[0]["lr"] == pytest.approx(factor(step))
            opt.step()
            sched.step()


class LoggerContract(ComponentContract):
    """``build(run_dir)`` gives Lightning loggers, which take metrics and hyperparameters.

    A logger whose backend is not installed (``build`` raises ``ImportError``) is skipped
    with the error as the reason. Set ``config`` to an offline setting where the logger
    has one (``mode: offline``), so that the suite never reaches the network.
    """

    base = Logger

    def built(self, run_dir: Path) -> list:
        try:
            return self.make().build(run_dir)
        except ImportError as exc:
            pytest.skip(f"logger={self.component.name}: its backend is not installed ({exc})")

    def test_builds_lightning_loggers(self, tmp_path):
        from lightning.pytorch.loggers import Logger as LightningLogger

        loggers = self.built(tmp_path)
        assert isinstance(loggers, list)
        assert all(isinstance(lg, LightningLogger) for lg in loggers), f"not Lightning loggers: {loggers!r}"
        assert isinstance(self.component.metrics_csv, bool)

    def test_takes_metrics_and_hyperparameters(self, tmp_path):
        for lg in self.built(tmp_path):
            lg.log_hyperparams({"optimizer": {"lr": 1e-3}, "seed": 0})
            lg.log_metrics({"train/loss": 2.5, "lr": 1e-3}, step=0)
            lg.log_metrics({"train/loss": 2.0, "lr": 1e-3}, step=1)
            lg.save()
            lg.finalize("success")


class TaskContract(ComponentContract):
    """A task's demo, its formatting, its split and its metrics, through ``lmforge.tasks.load``.

    With the default ``config`` the task's offline demo is loaded (once per suite), so
    the demo must build with no download. The suite checks the declared ``type``,
    ``fields``, ``metrics`` and ``special_tokens``; that the demo is the same twice, holds
    at least ``min_demo`` records with every field, and formats into examples (a target
    segment after a prompt for a generative task, a label for a classify task, a rejected
    sequence after the same prompt for a preference task); that the
    split is disjoint and the same on a second load; that every special token appears in
    the formatted text; and that ``score`` returns the metrics not ending in ``loss``
    (those the engine measures), rates the references as predictions at least as high as
    the ``baseline`` on every metric, and higher on one.
    """

    base = Task
    min_demo: ClassVar[int] = 100
    _loaded: ClassVar[dict] = {}

    def loaded(self):
        from lmforge.tasks import load

        key = (self.component, repr(self.config))
        if key not in TaskContract._loaded:
            task = self.make()
            TaskContract._loaded[key] = (task, load(task))
        return TaskContract._loaded[key]

    def test_declares_type_fields_and_metrics(self):
        cls = self.component
        assert cls.type in ("generate", "classify", "preference"), f"type is {cls.type!r}: generate, classify or preference"
        assert cls.fields and all(isinstance(f, str) and f for f in cls.fields), "fields must name the record fields the task reads"
        assert cls.metrics and len(set(cls.metrics)) == len(cls.metrics), "metrics must name the task's metrics, once each"
        assert isinstance(cls.special_tokens, tuple) and all(isinstance(t, str) and t for t in cls.special_tokens)

    def test_demo_is_deterministic_and_has_every_field(self):
        first, second = self.make().demo(), self.make().demo()
        assert first == second, "the demo must be the same on every call"
        assert len(first) >= self.min_demo, f"the demo has {len(first)} records; a model needs at least {self.min_demo} to learn from"
        for record in first:
            missing = [f for f in self.component.fields if record.get(f) is None]
            assert not missing, f"a demo record lacks {missing}: {str(record)[:200]}"
        ids = [r["id"] for r in first if "id" in r]
        assert len(set(ids)) == len(ids), "demo ids repeat"

    def test_examples_are_formatted_for_the_type(self):
        from lmforge.contracts import Example, Segment

        _, data = self.loaded()
        examples = [e for split in data.splits.values() for e in split]
        assert examples
        for e in examples:
            assert isinstance(e, Example) and e.id and e.segments and all(isinstance(s, Segment) for s in e.segments)
            if self.component.type in ("generate", "preference"):
                assert any(s.target for s in e.segments), f"{e.id}: no target segment"
                assert e.prompt and e.reference.strip(), f"{e.id}: a generative example needs a prompt and a reference"
            if self.component.type == "classify":
                assert e.label and not any(s.target for s in e.segments), f"{e.id}: a classify example has a label and no target"
            if self.component.type == "preference":
                assert e.rejected and sum(s.target for s in e.rejected) == 1, f"{e.id}: a preference pair's rejected sequence needs one target segment"
                rejected = Example(e.id, e.rejected)
                assert rejected.prompt == e.prompt, f"{e.id}: the chosen and rejected replies must follow the same prompt"
                assert rejected.reference.strip() and rejected.reference != e.reference, f"{e.id}: the rejected reply must differ from the chosen one"
        if self.component.type == "classify":
            assert data.labels == sorted({e.label for e in data["train"]})

    def test_format_leaves_the_record_alone_and_repeats(self):
        import copy

        task = self.make()
        record = dict(task.demo()[0])
        record.setdefault("id", "contract")
        before = copy.deepcopy(record)
        assert task.format(record) == task.format(record)
        assert record == before, "format must not change the record it is given"

    def test_split_is_disjoint_and_repeats(self):
        from lmforge.tasks import load

        _, data = self.loaded()
        again = load(self.make())
        ids = {name: [e.id for e in split] for name, split in data.splits.items()}
        assert ids == {name: [e.id for e in split] for name, split in again.splits.items()}
        assert all(ids.values()), f"empty splits: {[n for n, v in ids.items() if not v]}"
        everything = [i for v in ids.values() for i in v]
        assert len(set(everything)) == len(everything), "an id is in two splits"

    def test_special_tokens_appear_in_the_formatted_text(self):
        _, data = self.loaded()
        text = "".join(s.text for e in data["train"] for s in e.segments)
        unused = [t for t in self.component.special_tokens if t not in text]
        assert not unused, f"special_tokens lists {unused}, which the formatted examples never use"

    def test_references_score_best_and_beat_the_baseline(self):
        task, data = self.loaded()
        examples = data["test"]
        perfect = [e.label if task.type == "classify" else e.reference for e in examples]
        baseline = task.baseline(examples)
        assert isinstance(baseline, list) and len(baseline) == len(examples) and all(isinstance(p, str) for p in baseline)
        best, base = task.score(perfect, examples), task.score(baseline, examples)
        scored = {m for m in task.metrics if not m.endswith("loss")}
        assert set(best) == scored == set(base), f"score returned {sorted(best)}; metrics not ending in loss are {sorted(scored)}"
        assert all(isinstance(v, float) for v in [*best.values(), *base.values()])
        assert all(best[m] >= base[m] for m in scored), f"the baseline beats the references: {base} vs {best}"
        assert any(best[m] > base[m] for m in scored), f"the references score no better than the baseline: {best}"

    def test_the_default_template_is_shipped(self):
        from lmforge.tasks import template_of

        assert template_of(self.component(self.component.Config())).strip()


class GuardContract(ComponentContract):
    """A guard's verdicts, whole and streamed.

    Set ``config`` to a setting that loads offline (a ``classifier`` guard needs its run),
    ``safe_texts`` to texts it must allow and ``unsafe_texts`` to texts it must block. The
    suite checks that ``check`` gives a ``Verdict`` and the same one twice; that the safe
    texts are allowed and the unsafe ones blocked, with a category; and that a reply fed to
    ``scanner()`` in chunks of any size gets the decision ``check`` gives the whole, with
    its categories (some of them when blocked, as the stream stops at the first block),
    releasing the whole text when it is not blocked and never more than a prefix of it
    when it is.
    """

    base = Guard
    safe_texts: ClassVar[tuple[str, ...]] = ("The committee met on Tuesday to discuss the new library.",)
    unsafe_texts: ClassVar[tuple[str, ...]] = ()
    chunk_sizes: ClassVar[tuple[int, ...]] = (1, 3, 7, 1000)

    def built(self) -> Guard:
        guard = self.make()
        guard.setup()
        return guard

    def test_check_gives_a_verdict_and_repeats(self):
        from lmforge.contracts import Verdict

        guard = self.built()
        for text in (*self.safe_texts, *self.unsafe_texts):
            verdict = guard.check(text)
            assert isinstance(verdict, Verdict), f"check({text[:40]!r}) returned {verdict!r}, not a Verdict"
            assert verdict == guard.check(text), f"check({text[:40]!r}) changed on a second call"
            assert all(isinstance(v, float) for v in verdict.scores.values())

    def test_safe_texts_are_allowed_and_unsafe_ones_blocked(self):
        guard = self.built()
        for text in self.safe_texts:
            assert guard.check(text).decision == "allow", f"{text[:60]!r} should be allowed: {guard.check(text)}"
        for text in self.unsafe_texts:
            verdict = guard.check(text)
            assert verdict.blocked and verdict.categories, f"{text[:60]!r} should be blocked with a category: {verdict}"

    def test_the_scanner_agrees_with_check_however_the_reply_is_chunked(self):
        guard = self.built()
        for text in (*self.safe_texts, *self.unsafe_texts):
            whole = guard.check(text)
            for size in self.chunk_sizes:
                scanner, released, verdict = guard.scanner(), "", None
                for start in range(0, len(text), size):
                    out, verdict = scanner.feed(text[start : start + size])
                    released += out
                    if verdict.blocked:
                        break
                else:
                    out, verdict = scanner.finish()
                    released += out
                what = f"{text[:40]!r} in chunks of {size}"
                assert verdict.decision == whole.decision, f"{what}: {verdict} but check gives {whole}"
                if verdict.blocked:  # it stopped at the first block, so it may have seen fewer categories
                    assert verdict.categories and set(verdict.categories) <= set(whole.categories), f"{what}: {verdict} but check gives {whole}"
                    assert text.startswith(released), f"{what}: released {released!r}, not a prefix of the reply"
                else:
                    assert verdict.categories == whole.categories, f"{what}: {verdict} but check gives {whole}"
                    assert released == text, f"{what}: released {released!r}, not the whole reply"

    def test_the_refusal_is_text(self):
        refusal = self.make().config.refusal
        assert isinstance(refusal, str) and refusal.strip()


class PluginContract:
    """An installed distribution as lmforge discovers it, like Hydra's ``test_discovery``.

    Subclass it with the distribution's name and the components it registers, by config
    group (the old kind names, ``architecture`` and ``preprocessor``, work too)::

        class TestDistribution(PluginContract):
            distribution = "lmforge-gru"
            components = {"model": ["gru"], "collector": ["textdir"]}

    It loads plugins through ``lmforge.loader.load_plugins()``, so the distribution must
    be installed (``pip install -e .``) and third-party autoload on (no
    ``LMFORGE_DISABLE_PLUGIN_AUTOLOAD``). It checks that every entry point of the
    distribution loaded, that none is broken, that each expected component is registered
    by this distribution, and that every YAML option its config packages ship for a
    component group checks against that component's ``Config``.
    """

    distribution: ClassVar[str]
    components: ClassVar[dict[str, list[str]]] = {}
    # the packages whose YAML options to check; None means those the distribution's
    # ``config_package`` hooks return
    config_packages: ClassVar[list[str] | None] = None
    # options whose ``name`` is not their file name: a second preset of one component,
    # as {"model/gru_large": "gru"}; every other option must be named after its file
    presets: ClassVar[dict[str, str]] = {}

    def registry(self):
        from lmforge.loader import DISABLE_AUTOLOAD_ENV, load_plugins

        _, registry = load_plugins()
        if any(p.distribution == self.distribution for p in registry.disabled):
            pytest.fail(f"{self.distribution} is installed but not loaded: unset {DISABLE_AUTOLOAD_ENV} to test it")
        return registry

    def entry_points(self) -> list:
        from importlib.metadata import PackageNotFoundError, distribution

        from lmforge import PROJECT

        try:
            dist = distribution(self.distribution)
        except PackageNotFoundError:
            pytest.fail(f"{self.distribution} is not installed: run `pip install -e .` in its folder first")
        return [ep for ep in dist.entry_points if ep.group == PROJECT]

    def test_declares_lmforge_entry_points(self):
        assert self.entry_points(), f"{self.distribution} declares no entry point in the 'lmforge' group of its pyproject.toml"

    def test_every_entry_point_loads(self):
        registry = self.registry()
        broken = [f"{b.provenance.plugin}: {b.error}" for b in registry.broken if b.provenance.distribution == self.distribution]
        assert not broken, f"{self.distribution} has broken entry points:\n" + "\n".join(broken)
        loaded = {p.plugin for p in registry.plugins if p.distribution == self.distribution}
        missing = sorted(ep.name for ep in self.entry_points() if ep.name not in loaded)
        assert not missing, f"entry points of {self.distribution} not loaded: {missing}"

    def test_registers_the_expected_components(self):
        registry = self.registry()
        for group, names in self.components.items():
            kind = kind_of(group)  # a KeyError lists the kinds
            for name in names:
                entry = registry.components[kind.group].get(name)
                assert entry is not None, f"{kind.group}={name} is not registered; registered: {sorted(registry.components[kind.group])}"
                assert entry.provenance.distribution == self.distribution, (
                    f"{kind.group}={name} is registered by {entry.provenance}, not by {self.distribution}"
                )
                assert issubclass(entry.cls, kind.base)

    def packages(self) -> list[str]:
        if self.config_packages is not None:
            return list(self.config_packages)
        return [p for p, prov in self.registry().config_packages if prov.distribution == self.distribution]

    def test_shipped_options_match_their_config(self):
        """Each ``conf/<group>/<option>.yaml`` of a component group checks against its ``Config``.

        An option names its component in ``name``, which is the file name unless the
        option is listed in ``presets``, and lists every field of the ``Config`` (a field
        left out cannot be set on the command line without ``+``). A ``preprocess``
        option is a pipeline: each of its ``steps`` is checked against its step's
        ``Config``, and may leave fields to their defaults. Groups that are not component
        kinds (``experiment``, ``trainer``) are not checked here: smoke-run experiment
        presets end to end.
        """
        errors = [error for package in self.packages() for error in check_shipped_options(package, self.presets)]
        assert not errors, "shipped config options that do not match their Config:\n" + "\n".join(errors)


def check_shipped_options(package: str, presets: dict[str, str] | None = None) -> list[str]:
    """What is wrong with the component options of a config package, one line each."""
    import importlib.resources as resources

    from omegaconf import OmegaConf

    from lmforge.errors import ConfigError
    from lmforge.hydra_bridge import component_config, config_options

    presets = presets or {}
    errors = []
    for group, options in config_options(package).items():
        if group not in KINDS:
            continue
        for option in options:
            where = f"{package}: {group}/{option}.yaml"
            node = OmegaConf.to_container(OmegaConf.create(resources.files(package).joinpath(group, f"{option}.yaml").read_text()))
            node.pop("defaults", None)  # Hydra's defaults list, consumed when the config is composed
            if not KINDS[group].chosen:
                nodes = [(step, f"{group}.steps[{i}]") for i, step in enumerate(node.get("steps") or [])]
            else:
                nodes = [(node, group)]
                expected = presets.get(f"{group}/{option}", option)
                if node.get("name") != expected:
                    errors.append(f"{where}: name is {node.get('name')!r}; an option is named after its file ({expected!r})")
                    continue
            for values, key in nodes:
                try:
                    entry, _ = component_config(group, values, key)
                except ConfigError as exc:
                    errors.append(f"{where}: {exc}")
                    continue
                left_out = [f.name for f in dataclasses.fields(entry.cls.Config) if f.name not in values]
                if left_out and KINDS[group].chosen:
                    errors.append(f"{where}: {key} leaves out {', '.join(left_out)}; list every field of {entry.cls.Config.__name__}")
    return errors
