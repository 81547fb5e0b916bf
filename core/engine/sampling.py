"""The settings of one generation request, checked: ``Sampling``.

Kept apart from ``lmforge.engine.generate`` because it imports nothing heavy: a server
validates a request's sampling fields in a process that never loads torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lmforge.errors import ConfigError

MAX_TOP_LOGPROBS = 20  # OpenAI's limit on top_logprobs


def _bad(name: str, value, rule: str, example: str) -> ConfigError:
    flag = "--" + name.replace("_", "-")
    return ConfigError(f"{name}={value!r} ({flag}): {rule}; e.g. {flag} {example}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Sampling:
    """How to pick each new token. Every value is checked; an error names its flag."""

    max_tokens: int = 128  # new tokens at most; a row also stops when the context window is full
    temperature: float = 0.8  # 0 is greedy: the likeliest token, no randomness
    top_k: int | None = 50  # sample among the k likeliest tokens; None or 0 for all
    top_p: float = 1.0  # nucleus sampling (Holtzman et al. 2019): the likeliest tokens holding this mass; 1 for all
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the prompt or reply (Keskar et al. 2019); 1 is off
    stop: tuple[str, ...] = ()  # a row ends before the first of these texts; it is not emitted
    seed: int | None = None  # the same seed gives the same text; None draws one
    logprobs: int = 0  # alternatives reported with each token's log-probability (top_logprobs)

    def __post_init__(self) -> None:
        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            raise _bad("max_tokens", self.max_tokens, "must be a whole number of 1 or more", "128")
        if not isinstance(self.temperature, (int, float)) or not 0 <= self.temperature < math.inf:
            raise _bad("temperature", self.temperature, "must be 0 (greedy) or more", "0.8")
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 0):
            raise _bad("top_k", self.top_k, "must be a whole number, 0 for the whole vocabulary", "50")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise _bad("top_p", self.top_p, "must be above 0 and at most 1 (1 turns it off)", "0.95")
        if not isinstance(self.repetition_penalty, (int, float)) or not 0 < self.repetition_penalty < math.inf:
            raise _bad("repetition_penalty", self.repetition_penalty, "must be above 0 (1 turns it off)", "1.1")
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if not all(isinstance(s, str) and s for s in stop):
            raise _bad("stop", list(stop), "each stop sequence must be non-empty text", "'\\n\\n'")
        object.__setattr__(self, "stop", stop)
        if self.seed is not None and not _is_int(self.seed):
            raise _bad("seed", self.seed, "must be a whole number", "0")
        if not _is_int(self.logprobs) or not 0 <= self.logprobs <= MAX_TOP_LOGPROBS:
            raise _bad("logprobs", self.logprobs, f"must be a whole number from 0 to {MAX_TOP_LOGPROBS}", "5")
