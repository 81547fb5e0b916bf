"""The built-in English lexicon of the ``safety`` step and the ``lexicon`` guard, and the
one matcher both use: common profanity and insults, by category.

Deliberately short and mild, a baseline rather than a moderation system: it holds no
slurs. Add the words your data needs with ``lexicon`` or ``lexicon_files`` (category
``custom``). Entries are lower case; a multi-word entry matches that exact sequence of
words. Matching is by whole word after case folding, left to right, the longest entry
first at each word, so the ``safety`` preprocessor and the ``lexicon`` guard (which
matches a reply chunk by chunk) count the same words.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Iterable

CATEGORIES = {
    "profanity": frozenset({
        "arse", "ass", "bollocks", "bullshit", "crap", "crappy", "damn", "dammit", "fuck", "fucked", "fucker",
        "fucking", "goddamn", "piss", "pissed", "shit", "shitty", "wtf",
    }),
    "insult": frozenset({
        "arsehole", "asshole", "bastard", "bitch", "dickhead", "dumbass", "idiot", "imbecile", "jackass", "moron",
        "scumbag", "wanker", "piece of shit",
    }),
    "harassment": frozenset({"go to hell", "kill yourself", "shut up", "stfu"}),
}
WORDS = frozenset().union(*CATEGORIES.values())
CUSTOM = "custom"  # the category of the user's own entries

WORD = re.compile(r"\w+(?:['’]\w+)*")


def check_entries(lexicon: Iterable[str], lexicon_files: Iterable[str]) -> None:
    """The ``lexicon`` and ``lexicon_files`` options, checked the same way wherever the lexicon is used."""
    if any(not entry.strip() for entry in lexicon):
        raise ValueError(f"lexicon={list(lexicon)}: holds an empty entry; give words or phrases")
    if missing := [p for p in lexicon_files if not Path(p).expanduser().is_file()]:
        raise ValueError(f"lexicon_files: no file at {', '.join(missing)}; give word lists with one entry a line")


def words(text: str) -> list[str]:
    return [w.casefold() for w in WORD.findall(text)]


class Lexicon:
    """Entries (tuples of words) with their categories, and the greedy matcher over words."""

    def __init__(self, builtin: bool = True, lexicon: Iterable[str] = (), lexicon_files: Iterable[str] = ()) -> None:
        custom = list(lexicon)
        for path in lexicon_files:
            lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
            custom += [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        named = [(e, c) for c, entries in CATEGORIES.items() for e in sorted(entries)] if builtin else []
        self.entries: dict[tuple[str, ...], str] = {}
        for entry, category in [*named, *((e, CUSTOM) for e in custom)]:
            if w := tuple(words(entry)):
                self.entries.setdefault(w, category)
        self.starts = {e[0] for e in self.entries}  # first words of the entries, to skip the rest fast
        self.longest = max(map(len, self.entries), default=1)

    def match_at(self, tokens: list[str], i: int = 0) -> tuple[int, str]:
        """(words matched at ``tokens[i]``, the entry's category), the longest entry first; (0, "") for none."""
        if tokens[i] in self.starts:
            for n in range(min(self.longest, len(tokens) - i), 0, -1):
                if (category := self.entries.get(tuple(tokens[i : i + n]))) is not None:
                    return n, category
        return 0, ""

    def count(self, tokens: list[str]) -> Counter:
        """Words inside entries, by category."""
        hits: Counter = Counter()
        i = 0
        while i < len(tokens):
            n, category = self.match_at(tokens, i)
            if n:
                hits[category] += n
            i += n or 1
        return hits
