"""``quality``: heuristic document-quality filters, after Gopher (Rae et al. 2021, app. A).

Each rule compares one statistic of a document with a threshold from the config; the
defaults are the values published for MassiveText. The first rule a document fails drops
it, counted under the threshold's key, as ``stats["dropped:quality_max_dup_line_fraction"]``,
so the report names the option to loosen. A threshold set to ``null`` is off.

Words are whitespace-separated tokens. Character shares in the repetition rules are
measured over the characters of the words, so layout whitespace neither dilutes nor
inflates them. Gopher's rules were tuned on English prose; on code most of them misfire,
so loosen or switch them off for code corpora.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

from lmforge import hookimpl
from lmforge.contracts import Document, Preprocessor

# Gopher's stop-word rule: prose uses at least two of these
STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "●", "○", "▪", "◦", "‣", "⁃", "-", "*", "·")
ELLIPSES = ("...", "…")
PUNCTUATION = string.punctuation + "“”‘’«»…–—"
PARAGRAPHS = re.compile(r"\n[ \t]*\n\s*")


@dataclass
class QualityConfig:
    min_chars: Optional[int] = None
    max_chars: Optional[int] = None
    min_words: Optional[int] = 50
    max_words: Optional[int] = 100_000
    min_mean_word_length: Optional[float] = 3.0
    max_mean_word_length: Optional[float] = 10.0
    max_symbol_word_ratio: Optional[float] = 0.1  # "#" and "..."/"…", each on its own
    min_alpha_word_ratio: Optional[float] = 0.8  # words holding at least one letter
    min_stop_words: Optional[int] = 2
    max_bullet_line_ratio: Optional[float] = 0.9
    max_ellipsis_line_ratio: Optional[float] = 0.3
    max_dup_line_fraction: Optional[float] = 0.3
    max_dup_para_fraction: Optional[float] = 0.3
    max_dup_line_char_fraction: Optional[float] = 0.2
    max_dup_para_char_fraction: Optional[float] = 0.2
    # the most frequent word n-gram's share of the characters, n = 2, 3, 4
    max_top_2gram_char_fraction: Optional[float] = 0.20
    max_top_3gram_char_fraction: Optional[float] = 0.18
    max_top_4gram_char_fraction: Optional[float] = 0.16
    # share of the characters inside word n-grams that occur more than once, n = 5 to 10
    max_dup_5gram_char_fraction: Optional[float] = 0.15
    max_dup_6gram_char_fraction: Optional[float] = 0.14
    max_dup_7gram_char_fraction: Optional[float] = 0.13
    max_dup_8gram_char_fraction: Optional[float] = 0.12
    max_dup_9gram_char_fraction: Optional[float] = 0.11
    max_dup_10gram_char_fraction: Optional[float] = 0.10

    def __post_init__(self) -> None:
        for key, value in vars(self).items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):  # None: the rule is off
                continue
            if key.endswith(("_ratio", "_fraction")) and not 0.0 <= value <= 1.0:
                raise ValueError(f"{key}={value}: a share, from 0 to 1, or null for off; e.g. {key}={getattr(QualityConfig, key)}")
            if value < 0:
                raise ValueError(f"{key}={value}: must be 0 or more, or null for off; e.g. {key}={getattr(QualityConfig, key)}")
        for lo, hi in (("min_chars", "max_chars"), ("min_words", "max_words"), ("min_mean_word_length", "max_mean_word_length")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise ValueError(f"{lo}={a} is above {hi}={b}: no document could pass")


class DocumentStats:
    """The statistics of one document, each computed once and only if a rule asks."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.words = text.split()
        self._cache: dict[str, object] = {}

    def _once(self, key: str, compute: Callable[[], object]):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def stripped(self) -> list[str]:
        """Lower-cased words without surrounding punctuation; pure punctuation is gone."""
        return self._once("stripped", lambda: [s for w in self.words if (s := w.strip(PUNCTUATION).lower())])

    @property
    def lines(self) -> list[str]:
        return self._once("lines", lambda: [ln.strip() for ln in self.text.splitlines() if ln.strip()])

    def chars(self) -> int:
        return len(self.text)

    def n_words(self) -> int:
        return len(self.words)

    def mean_word_length(self) -> float:
        return sum(map(len, self.stripped)) / len(self.stripped) if self.stripped else 0.0

    def symbol_ratio(self) -> float:
        ellipses = sum(self.text.count(e) for e in ELLIPSES)
        return max(self.text.count("#"), ellipses) / max(len(self.words), 1)

    def alpha_ratio(self) -> float:
        return sum(any(c.isalpha() for c in w) for w in self.words) / max(len(self.words), 1)

    def stop_words(self) -> int:
        return len(STOP_WORDS.intersection(self.stripped))

    def bullet_ratio(self) -> float:
        return sum(ln.startswith(BULLETS) for ln in self.lines) / max(len(self.lines), 1)

    def ellipsis_ratio(self) -> float:
        return sum(ln.endswith(ELLIPSES) for ln in self.lines) / max(len(self.lines), 1)

    def duplicates(self, unit: str, which: int) -> float:
        """Lines or paragraphs that repeat an earlier one: 0, their fraction; 1, their share of the characters."""
        def compute():
            parts = self.lines if unit == "line" else [p.strip() for p in PARAGRAPHS.split(self.text) if p.strip()]
            seen: set[str] = set()
            dup = dup_chars = 0
            for part in parts:
                if part in seen:
                    dup, dup_chars = dup + 1, dup_chars + len(part)
                seen.add(part)
            total = sum(map(len, parts))
            return dup / max(len(parts), 1), dup_chars / max(total, 1)

        return self._once(f"dup_{unit}", compute)[which]

    def top_ngram_share(self, n: int) -> float:
        """The most frequent n-gram's characters times its count, over all word characters.

        An n-gram that occurs once is no repetition, so such a document scores 0.
        """
        words = self.stripped
        grams = Counter(zip(*(words[i:] for i in range(n))))
        if not grams:
            return 0.0
        gram, count = grams.most_common(1)[0]
        if count < 2:
            return 0.0
        return sum(map(len, gram)) * count / max(sum(map(len, words)), 1)

    def dup_ngram_share(self, n: int) -> float:
        """Share of the word characters covered by an n-gram seen earlier; each word counts once."""
        words = self.stripped
        covered = [False] * len(words)
        seen: set[tuple[str, ...]] = set()
        for i, gram in enumerate(zip(*(words[j:] for j in range(n)))):
            if gram in seen:
                covered[i : i + n] = [True] * n
            else:
                seen.add(gram)
        return sum(len(w) for w, c in zip(words, covered) if c) / max(sum(map(len, words)), 1)


class Quality(Preprocessor):
    name = "quality"
    Config = QualityConfig
    # every rule is named after its threshold, and counted as dropped:quality_<threshold>
    drop_reasons = {f"quality_{key}": key for key in QualityConfig.__dataclass_fields__}

    def __init__(self, config: QualityConfig | None = None) -> None:
        super().__init__(config)
        self.rules = self._rules()

    def _rules(self) -> list[tuple[str, str, tuple, float]]:
        """(config key, statistic, its arguments, threshold) for every rule that is on, cheapest first.

        Plain names rather than closures, so that the step pickles to worker processes.
        """
        c = self.config
        rules = [
            ("min_chars", "chars", ()), ("max_chars", "chars", ()),
            ("min_words", "n_words", ()), ("max_words", "n_words", ()),
            ("min_mean_word_length", "mean_word_length", ()), ("max_mean_word_length", "mean_word_length", ()),
            ("max_symbol_word_ratio", "symbol_ratio", ()),
            ("min_alpha_word_ratio", "alpha_ratio", ()),
            ("min_stop_words", "stop_words", ()),
            ("max_bullet_line_ratio", "bullet_ratio", ()),
            ("max_ellipsis_line_ratio", "ellipsis_ratio", ()),
            ("max_dup_line_fraction", "duplicates", ("line", 0)),
            ("max_dup_para_fraction", "duplicates", ("para", 0)),
            ("max_dup_line_char_fraction", "duplicates", ("line", 1)),
            ("max_dup_para_char_fraction", "duplicates", ("para", 1)),
        ]
        rules += [(f"max_top_{n}gram_char_fraction", "top_ngram_share", (n,)) for n in (2, 3, 4)]
        rules += [(f"max_dup_{n}gram_char_fraction", "dup_ngram_share", (n,)) for n in range(5, 11)]
        return [(key, stat, args, getattr(c, key)) for key, stat, args in rules if getattr(c, key) is not None]

    def failed_rule(self, text: str) -> str | None:
        """The config key of the first rule ``text`` fails, or None when it passes them all."""
        stats = DocumentStats(text)
        for key, stat, args, threshold in self.rules:
            value = getattr(stats, stat)(*args)
            if value < threshold if key.startswith("min_") else value > threshold:
                return key
        return None

    def process(self, docs: Iterable[Document], stats: Counter) -> Iterator[Document]:
        for doc in docs:
            if rule := self.failed_rule(doc.text):
                stats[f"dropped:quality_{rule}"] += 1
                continue
            yield doc


@hookimpl
def register_preprocessors(register):
    register(Quality)
