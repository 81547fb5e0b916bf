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
index on the instance across shards. It lives only for one run of the stage: when an
interrupted preprocess stage resumes, the shards written before the interruption are
not indexed again, so a document in a new shard that duplicates one in an old shard
is kept. Rerun the stage from scratch (clear its cache) when exactness matters.

Memory: about ``num_perm`` × 8 bytes per kept document for the index, plus 16 bytes
for the exact hash; 128 permutations cost roughly 1 GB per million documents.
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

    def __init__(self, config: DedupConfig | None = None) -> None:
        super().__init__(config)
        self._hashes: set[bytes] = set()
        self._lsh = None  # datasketch.MinHashLSH, built in setup
        self._empty = None  # a MinHash whose permutations every document's reuses
        self._kept = 0

    def setup(self) -> None:
        from datasketch import MinHash, MinHashLSH

        c = self.config
        self._hashes, self._kept = set(), 0
        if c.near:
            self._lsh = MinHashLSH(threshold=c.threshold, num_perm=c.num_perm)
            self._empty = MinHash(num_perm=c.num_perm, seed=c.seed)

    def state(self):
        return self._hashes, self._lsh, self._kept

    def restore(self, state) -> None:
        self._hashes, self._lsh, self._kept = state

    def _minhash(self, text: str):
        from datasketch import MinHash

        # drawing the permutations costs more than hashing a short document: reuse them
        e = self._empty
        m = MinHash(seed=e.seed, hashvalues=e.hashvalues, permutations=e.permutations, scheme=e.scheme)
        m.update_batch(list(shingles(text, self.config.shingle, self.config.ngram)))
        return m

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
                self._lsh.insert(self._kept, m, check_duplication=False)
            self._kept += 1
            yield doc


@hookimpl
def register_preprocessors(register):
    register(Dedup)
