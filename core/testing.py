"""Reusable contract test suites, one per component kind.

Every built-in component runs the suite of its kind, and a third-party plugin can run
the same checks in its own CI by subclassing::

    from lmforge.testing import ArchitectureContract

    class TestGRU(ArchitectureContract):
        component = GRU                      # the registered class
        config = GRUConfig(hidden=32)        # a tiny instance of its Config

The suites are plain pytest classes (collected when their name starts with ``Test``) and
use only pytest's ``tmp_path`` fixture.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from lmforge.contracts import Architecture, Collector, Document, Param, Preprocessor, Tokenizer, Tuner


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


class TokenizerContract(ComponentContract):
    base = Tokenizer
    corpus: ClassVar[list[str]] = [
        "The quick brown fox jumps over the lazy dog. " * 3,
        "def add(a, b):\n    return a + b\n",
        "Grüße aus Köln — 東京 🚀",
    ] * 20
    round_trip: ClassVar[bool] = True  # byte-level tokenizers reproduce any text exactly

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
            return
        tok = self.trained(tmp_path)
        for text in self.corpus[:3]:
            assert tok.decode(tok.encode_batch([text])[0]) == text

    def test_save_and_load_give_the_same_ids(self, tmp_path):
        tok = self.trained(tmp_path)
        again = self.make()
        again.load(tmp_path / "tokenizer.json")
        assert again.encode_batch(self.corpus[:3]) == tok.encode_batch(self.corpus[:3])
        assert again.special_ids == tok.special_ids


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

        from lmforge.plugins.training.masking import mask_tokens

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
        import pytest
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

