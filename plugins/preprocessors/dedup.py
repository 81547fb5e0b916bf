"""``dedup``: corpus-wide exact and near-duplicate removal.

Exact duplicates are found by a hash of the text after case folding and collapsing
whitespace, so copies that differ only in case or layout count as the same. Near
duplicates are found with MinHash LSH (Broder 1997; Leskovec et al., *Mining of Massive
Datasets*, ch. 3) over word (or character) n-gram shingles: a document whose estimated
Jaccard similarity to one already kept is above ``threshold`` is dropped. LSH finds
candidates approximately: a pair a little above the threshold may be missed, one a
little below it may be caught. The first document of a group is kept, so the result
follows the corpus order, which is deterministic.

Counts: ``dropped:exact_duplicate`` and ``dropped:near_duplicate``.

The index must see every document, so the step sets ``parallel = False`` and keeps the
index on the instance across shards. Its state (the exact hashes and the MinHash
signature of every document in the LSH index, as arrays) is saved after each shard, so
an interrupted preprocess stage resumes with the index rebuilt as it was, and writes
what an uninterrupted run writes.

Memory: about ``num_perm`` × 8 bytes per kept document for the index, plus ``num_perm``
× 4 bytes for its signature kept for resuming and 16 bytes for the exact hash; 128
permutations cost roughly 1.5 GB per million documents.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator

from lmforge import hookimpl
from lmforge.contracts import Document, Preprocessor

WHITESPACE = re.compile(r"\s+")


@dataclass
class DedupConfig:
    exact: bool = True
    near: bool = True
    threshold: float = 0.8
    num_perm: int = 128
    shingle: str = "word"
    ngram: int = 5
    seed: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold={self.threshold}: a Jaccard similarity strictly between 0 and 1, such as 0.8")
        if self.num_perm < 16:
            raise ValueError(f"num_perm={self.num_perm}: use at least 16 permutations (128 is usual)")
        if self.shingle not in ("word", "char"):
            raise ValueError(f"shingle={self.shingle!r}: use word (word n-grams) or char (character n-grams)")
        if self.ngram < 1:
            raise ValueError(f"ngram={self.ngram}: shingles need at least 1 {self.shingle}")


def canonical(text: str) -> str:
    """The text exact deduplication compares: case-folded, whitespace runs as one space."""
    return WHITESPACE.sub(" ", text.casefold()).strip()


def shingles(text: str, unit: str, n: int) -> set[bytes]:
    """The n-grams of a canonical text; a text shorter than one n-gram is its own shingle."""
    items: list[str] | str = text.split(" ") if unit == "word" else text
    sep = " " if unit == "word" else ""
    if len(items) <= n:
        return {text.encode("utf-8")} if text else set()
    return {sep.join(items[i : i + n]).encode("utf-8") for i in range(len(items) - n + 1)}


class Dedup(Preprocessor):
    name = "dedup"
    Config = DedupConfig
    parallel = False
    drop_reasons = {"near_duplicate": "threshold", "exact_duplicate": "exact"}

    def __init__(self, config: DedupConfig | None = None) -> None:
        super().__init__(config)
        self._hashes: set[bytes] = set()
        self._lsh = None  # datasketch.MinHashLSH, built in setup
        self._empty = None  # a MinHash whose permutations every document's reuses
        self._signatures = None  # (rows, num_perm): row i is the signature the index holds under key i
        self._rows = 0

    def setup(self) -> None:
        import numpy as np
        from datasketch import MinHash, MinHashLSH

        c = self.config
        self._hashes = set()
        if c.near:
            self._lsh = MinHashLSH(threshold=c.threshold, num_perm=c.num_perm)
            self._empty = MinHash(num_perm=c.num_perm, seed=c.seed)
            self._signatures, self._rows = np.empty((0, c.num_perm), self._empty.hashvalues.dtype), 0

    def state(self) -> dict:
        import numpy as np

        exact = np.frombuffer(b"".join(self._hashes), dtype=np.uint8).reshape(-1, 16)
        near = self._signatures[: self._rows] if self._signatures is not None else None
        return {"exact": exact, "near": near}

    def restore(self, state: dict) -> None:
        """Rebuild the exact hashes and the LSH index from the saved arrays, in key order, so
        the index is the one the interrupted run held."""
        import numpy as np

        exact, near = state["exact"], state["near"]
        if not isinstance(exact, np.ndarray) or exact.ndim != 2 or exact.shape[1] != 16:
            raise ValueError(f"exact hashes of shape {getattr(exact, 'shape', None)}, expected (n, 16)")
        if self.config.near and self._lsh is None:
            self.setup()
        data = exact.tobytes()
        self._hashes = {data[i : i + 16] for i in range(0, len(data), 16)}
        if not self.config.near:
            return
        if not isinstance(near, np.ndarray) or near.shape[1:] != self._signatures.shape[1:] or near.dtype != self._signatures.dtype:
            raise ValueError(
                f"signatures of shape {getattr(near, 'shape', None)} and type {getattr(near, 'dtype', None)}, "
                f"expected (n, {self.config.num_perm}) of {self._signatures.dtype} (saved by another datasketch version?)"
            )
        for row in near:
            self._index(self._sketch(row))

    def _sketch(self, hashvalues=None):
        from datasketch import MinHash

        # drawing the permutations costs more than hashing a short document: reuse them
        e = self._empty
        hashvalues = e.hashvalues if hashvalues is None else hashvalues
        return MinHash(seed=e.seed, hashvalues=hashvalues, permutations=e.permutations, scheme=e.scheme)

    def _minhash(self, text: str):
        m = self._sketch()
        m.update_batch(list(shingles(text, self.config.shingle, self.config.ngram)))
        return m

    def _index(self, m) -> None:
        """Add a kept document's MinHash to the LSH index, and its signature to the saved rows."""
        import numpy as np

        if self._rows == len(self._signatures):  # grow by doubling: appends cost O(1) on average
            grown = np.empty((max(1024, 2 * self._rows), self.config.num_perm), self._signatures.dtype)
            grown[: self._rows] = self._signatures[: self._rows]
            self._signatures = grown
        self._signatures[self._rows] = m.hashvalues
        self._lsh.insert(self._rows, m, check_duplication=False)
        self._rows += 1

    def process(self, docs: Iterable[Document], stats: Counter) -> Iterator[Document]:
        if self.config.near and self._lsh is None:
            self.setup()
        for doc in docs:
            text = canonical(doc.text)
            if self.config.exact:
                digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
                if digest in self._hashes:
                    stats["dropped:exact_duplicate"] += 1
                    continue
                self._hashes.add(digest)
            if self.config.near and text:
                m = self._minhash(text)
                if self._lsh.query(m):
                    stats["dropped:near_duplicate"] += 1
                    continue
                self._index(m)
            yield doc


@hookimpl
def register_preprocessors(register):
    register(Dedup)
