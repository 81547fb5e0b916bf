"""``safety``: a lexicon filter for profanity and toxic language.

A document's score is the share of its words that belong to lexicon entries (a
multi-word entry such as "shut up" counts all its words). The document is flagged when
the score is above ``threshold``, or, with ``max_count`` set, when more than that many
words match whatever its length. ``action: drop`` removes flagged documents, counted as
``dropped:unsafe``; ``action: tag`` keeps them with ``meta["safety"] = {"score": ...,
"flagged": true}``, counted as ``tagged:unsafe``, for a later stage or a person to
decide.

The lexicon is the short built-in English list (``_lexicon.py``, shared with the
``lexicon`` guard, on by default with
``builtin``), plus ``lexicon`` words and ``lexicon_files`` (one entry a line, ``#``
comments). Matching is by whole word after case folding, so "Scunthorpe" and "classic"
are safe; it cannot see meaning, so quotes, reclaimed words and discussions of
language are flagged too: prefer ``tag`` when that matters.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, List, Optional

from lmforge import hookimpl
from lmforge.contracts import Document, Preprocessor
from lmforge.plugins.preprocessors._lexicon import Lexicon, check_entries, words  # the one matcher, shared with guard=lexicon


@dataclass
class SafetyConfig:
    builtin: bool = True
    lexicon: List[str] = field(default_factory=list)
    lexicon_files: List[str] = field(default_factory=list)
    threshold: float = 0.01
    max_count: Optional[int] = None
    action: str = "drop"

    def __post_init__(self) -> None:
        if self.action not in ("drop", "tag"):
            raise ValueError(f"action={self.action!r}: use drop (remove flagged documents) or tag (keep them, marked in meta)")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold={self.threshold}: a share of words, at least 0 and below 1, such as 0.01")
        if self.max_count is not None and self.max_count < 0:
            raise ValueError(f"max_count={self.max_count}: a number of matching words, 0 or more, or null for off; e.g. max_count=3")
        check_entries(self.lexicon, self.lexicon_files)


class Safety(Preprocessor):
    name = "safety"
    Config = SafetyConfig
    drop_reasons = {"unsafe": "threshold"}  # or max_count, when set; or action=tag to keep them

    def __init__(self, config: SafetyConfig | None = None) -> None:
        super().__init__(config)
        self._lexicon = None  # built in setup

    def cache_token(self) -> str:
        """The word lists' contents, which change the output without changing the config."""
        digest = hashlib.sha256()
        for path in self.config.lexicon_files:
            digest.update(Path(path).expanduser().read_bytes())
        return digest.hexdigest()[:16] if self.config.lexicon_files else ""

    def setup(self) -> None:
        self._lexicon = Lexicon(self.config.builtin, self.config.lexicon, self.config.lexicon_files)

    def score(self, text: str) -> tuple[float, int]:
        """(share of the words inside lexicon entries, how many words those are)."""
        if self._lexicon is None:
            self.setup()
        tokens = words(text)
        matched = sum(self._lexicon.count(tokens).values())
        return matched / max(len(tokens), 1), matched

    def process(self, docs: Iterable[Document], stats: Counter) -> Iterator[Document]:
        c = self.config
        for doc in docs:
            score, count = self.score(doc.text)
            if count and (score > c.threshold or (c.max_count is not None and count > c.max_count)):
                if c.action == "drop":
                    stats["dropped:unsafe"] += 1
                    continue
                stats["tagged:unsafe"] += 1
                doc.meta["safety"] = {"score": round(score, 4), "flagged": True}
            yield doc


@hookimpl
def register_preprocessors(register):
    register(Safety)
