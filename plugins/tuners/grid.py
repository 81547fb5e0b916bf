"""``tuner=grid``: every combination of the search space, in order.

A choice contributes each of its options; a float or int range contributes ``num``
evenly spaced points (geometrically spaced on a log scale; every integer when the range
holds at most ``num``). The grid ignores results and the seed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from lmforge import hookimpl
from lmforge.contracts import Param, Trial, Tuner, TunerConfig


@dataclass
class GridConfig(TunerConfig):
    num: int = 5  # points per float or int range; choices always use every option

    def __post_init__(self) -> None:
        if self.num < 1:
            raise ValueError(f"tuner.num={self.num}: must be at least 1; e.g. tuner.num=5")


def axis(p: Param, num: int) -> list[Any]:
    """The grid points of one parameter."""
    if p.kind == "choice":
        return list(p.choices)
    if p.kind == "int" and p.high - p.low + 1 <= num:
        return list(range(int(p.low), int(p.high) + 1))
    if num == 1:
        points = [math.sqrt(p.low * p.high) if p.log else (p.low + p.high) / 2]
    elif p.log:
        step = (math.log(p.high) - math.log(p.low)) / (num - 1)
        points = [math.exp(math.log(p.low) + i * step) for i in range(num)]
    else:
        points = [p.low + i * (p.high - p.low) / (num - 1) for i in range(num)]
    if p.kind == "int":
        return sorted({int(round(x)) for x in points})
    return points


class GridSearch(Tuner):
    name = "grid"
    Config = GridConfig

    def start(self, space: list[Param], budget: int, num_workers: int, seed: int) -> None:
        self.names = [p.name for p in space]
        self.points = itertools.product(*(axis(p, self.config.num) for p in space))
        self.size = math.prod(len(axis(p, self.config.num)) for p in space)
        self.budget, self.asked = min(budget, self.size), 0

    def ask(self) -> Trial | None:
        if self.asked >= self.budget:
            return None
        trial = Trial(self.asked, dict(zip(self.names, next(self.points))))
        self.asked += 1
        return trial

    def tell(self, trial: Trial, value: float) -> None:
        pass  # a grid does not adapt


@hookimpl
def register_tuners(register):
    register(GridSearch)
