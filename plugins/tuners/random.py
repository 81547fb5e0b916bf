"""``tuner=random``: independent, seeded draws from the search space.

Floats on a log scale are drawn log-uniformly; ints uniformly over the integers of the
range (log-uniformly on a log scale). Random search ignores results, so a resumed sweep
replays its asks from the seed alone.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from lmforge import hookimpl
from lmforge.contracts import Param, Trial, Tuner, TunerConfig


@dataclass
class RandomConfig(TunerConfig):
    pass


def draw(p: Param, rng: random.Random) -> Any:
    if p.kind == "choice":
        return p.choices[rng.randrange(len(p.choices))]
    if p.kind == "int":
        # widen by half a step on each side so the end points are as likely as the rest
        lo, hi = p.low - 0.5, p.high + 0.5
        x = math.exp(rng.uniform(math.log(max(lo, 1e-12)), math.log(hi))) if p.log else rng.uniform(lo, hi)
        return int(min(max(round(x), p.low), p.high))
    if p.log:
        return math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
    return rng.uniform(p.low, p.high)


class RandomSearch(Tuner):
    name = "random"
    Config = RandomConfig

    def start(self, space: list[Param], budget: int, num_workers: int, seed: int) -> None:
        self.space, self.budget, self.asked = space, budget, 0
        self.rng = random.Random(seed)

    def ask(self) -> Trial | None:
        if self.asked >= self.budget:
            return None
        trial = Trial(self.asked, {p.name: draw(p, self.rng) for p in self.space})
        self.asked += 1
        return trial

    def tell(self, trial: Trial, value: float) -> None:
        pass  # random search does not adapt


@hookimpl
def register_tuners(register):
    register(RandomSearch)
