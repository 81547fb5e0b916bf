"""``guard=lexicon``: the ``safety`` preprocessor's word lists and matcher, as a guard.

A text falls in a category when it holds words of that category's entries (the built-in
``profanity``, ``insult``, ``harassment``; ``custom`` for ``lexicon`` and
``lexicon_files``). When at least ``min_count`` matched words fall in the categories
listed in ``categories`` (empty: all), the decision is ``action`` (block or flag); each
category's score is its share of the text's words, as the preprocessor scores a document.

A reply is scanned incrementally: each chunk is split into words, a word still growing at
the chunk's end is held back, and the greedy longest-entry-first matcher runs over the
words with the lexicon's longest entry as look-ahead. Text is released only once the
words in it are decided, so a reply blocked at "shut up" never shows "shut". The cost per
chunk is the chunk's own words, whatever the reply's length.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import List

from lmforge import hookimpl
from lmforge.contracts import Guard, GuardConfig, Scanner, Verdict
from lmforge.plugins.preprocessors._lexicon import CATEGORIES, CUSTOM, WORD, Lexicon, check_entries

KNOWN = (*CATEGORIES, CUSTOM)
GROWING = re.compile(r"[\w'’]")  # a chunk ending in one of these may end inside a word


@dataclass
class LexiconGuardConfig(GuardConfig):
    builtin: bool = True  # the built-in English list of the safety preprocessor
    lexicon: List[str] = field(default_factory=list)  # more entries (category custom)
    lexicon_files: List[str] = field(default_factory=list)  # files of entries, one a line, # comments
    categories: List[str] = field(default_factory=list)  # the categories that count; empty = all
    min_count: int = 1  # matched words that trigger the action
    action: str = "block"  # block | flag

    def __post_init__(self) -> None:
        if self.action not in ("block", "flag"):
            raise ValueError(f"action={self.action!r}: use block (refuse) or flag (let through, logged)")
        if self.min_count < 1:
            raise ValueError(f"min_count={self.min_count}: at least 1 matched word; e.g. min_count=2")
        if unknown := [c for c in self.categories if c not in KNOWN]:
            raise ValueError(f"categories={list(self.categories)}: {', '.join(unknown)} unknown; the categories are {', '.join(KNOWN)}")
        check_entries(self.lexicon, self.lexicon_files)


class LexiconScanner(Scanner):
    """The greedy matcher run over a reply chunk by chunk; the same words match as in one piece."""

    def __init__(self, guard: "LexiconGuard") -> None:
        super().__init__(guard)
        self.lexicon = guard.lexicon
        self.buffer = ""  # fed text not yet released
        self.scanned = 0  # chars of buffer split into words (a word growing at the end is not)
        self.tail: list[tuple[str, int]] = []  # words not yet decided, with their start in buffer
        self.hits: Counter = Counter()
        self.total = 0  # words seen

    def feed(self, chunk: str) -> tuple[str, Verdict]:
        self.buffer += chunk
        cut = len(self.buffer)
        while cut > self.scanned and GROWING.match(self.buffer, cut - 1):
            cut -= 1  # hold back a word that may go on in the next chunk
        return self._advance(cut, final=False)

    def finish(self) -> tuple[str, Verdict]:
        return self._advance(len(self.buffer), final=True)

    def _advance(self, cut: int, final: bool) -> tuple[str, Verdict]:
        for m in WORD.finditer(self.buffer, self.scanned, cut):
            self.tail.append((m.group().casefold(), m.start()))
            self.total += 1
        self.scanned = cut
        longest = self.lexicon.longest
        while self.tail and (final or len(self.tail) >= longest):
            n, category = self.lexicon.match_at([w for w, _ in self.tail[:longest]])
            if n:
                self.hits[category] += n
            del self.tail[: n or 1]
        self.verdict = self.guard.decide(self.hits, self.total)
        if self.verdict.blocked:
            return "", self.verdict
        end = self.tail[0][1] if self.tail else cut  # release up to the first undecided word
        released, self.buffer = self.buffer[:end], self.buffer[end:]
        self.scanned -= end
        self.tail = [(w, start - end) for w, start in self.tail]
        return released, self.verdict


class LexiconGuard(Guard):
    name = "lexicon"
    Config = LexiconGuardConfig

    def __init__(self, config: LexiconGuardConfig | None = None) -> None:
        super().__init__(config)
        self._lexicon: Lexicon | None = None

    @property
    def lexicon(self) -> Lexicon:
        if self._lexicon is None:
            self.setup()
        return self._lexicon

    def setup(self) -> None:
        c = self.config
        self._lexicon = Lexicon(c.builtin, c.lexicon, c.lexicon_files)

    def decide(self, hits: Counter, total: int) -> Verdict:
        """The verdict on a text with ``hits`` matched words by category, ``total`` words in all."""
        counted = {c: n for c, n in hits.items() if n and (not self.config.categories or c in self.config.categories)}
        if sum(counted.values()) < self.config.min_count:
            return Verdict()
        worst = tuple(sorted(counted, key=lambda c: (-counted[c], c)))
        return Verdict(self.config.action, worst, {c: round(n / max(total, 1), 4) for c, n in counted.items()})

    def check(self, text: str) -> Verdict:
        scanner = self.scanner()
        scanner.feed(text)
        return scanner.finish()[1]

    def scanner(self) -> Scanner:
        return LexiconScanner(self)


@hookimpl
def register_guards(register):
    register(LexiconGuard)
