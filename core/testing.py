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

from lmforge.contracts import Architecture, Collector, Document, Preprocessor, Tokenizer


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
    base = Architecture
    vocab_size: ClassVar[int] = 61
    seq_len: ClassVar[int] = 16

    def built(self):
        import torch

        torch.manual_seed(0)
        return self.make().build(vocab_size=self.vocab_size, max_seq_len=self.seq_len)

    def test_objective_is_known(self):
        assert self.component.objective in ("causal", "masked")

    def test_forward_gives_logits(self):
        import torch

        model = self.built()
        out = model(torch.randint(0, self.vocab_size, (2, self.seq_len)))
        assert out.logits.shape == (2, self.seq_len, self.vocab_size)

    def test_reports_size_and_flops(self):
        model = self.built()
        assert model.num_params() > 0
        assert model.flops_per_token(self.seq_len) >= 6 * model.num_params()

    def test_loss_goes_down_on_a_fixed_batch(self):
        import torch
        import torch.nn.functional as F

        model = self.built()
        batch = torch.randint(0, self.vocab_size, (4, self.seq_len + 1), generator=torch.Generator().manual_seed(1))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(30):
            logits = model(batch[:, :-1]).logits
            loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), batch[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.5 * losses[0], f"loss did not go down: {losses[0]:.3f} -> {losses[-1]:.3f}"
