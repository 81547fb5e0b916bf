"""The nevergrad side of the ``bayes`` and ``nevergrad`` tuners (imports nevergrad and numpy)."""

from __future__ import annotations

import math
from typing import Any

import nevergrad as ng
import numpy as np

from lmforge.contracts import Param, Trial


def parametrization(space: list[Param], seed: int) -> "ng.p.Dict":
    """The search space as a seeded ``ng.p.Dict`` keyed by config key."""
    params = {}
    for p in space:
        if p.kind == "choice":
            params[p.name] = ng.p.Choice(list(p.choices))
            continue
        scalar = ng.p.Log(lower=p.low, upper=p.high) if p.log else ng.p.Scalar(lower=p.low, upper=p.high)
        if p.kind == "int":
            scalar.set_integer_casting()
        params[p.name] = scalar
    param = ng.p.Dict(**params)
    param.random_state = np.random.RandomState(seed)  # same seed, same asks
    return param


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class Session:
    """One optimiser run: numbers the asks and keeps the candidates until they are told."""

    def __init__(self, optimizer: Any, space: list[Param], budget: int, num_workers: int, seed: int) -> None:
        self.optimizer = optimizer(parametrization=parametrization(space, seed), budget=budget, num_workers=num_workers)
        self.budget, self.asked = budget, 0
        self.pending: dict[int, Any] = {}
        self.worst = -math.inf

    def ask(self) -> Trial | None:
        if self.asked >= self.budget:
            return None
        candidate = self.optimizer.ask()
        if any(candidate.value == c.value for c in self.pending.values()):
            # Sequential optimisers (BO) propose the same point again until told; running it
            # twice in a batch is wasted, and the duplicate makes the GP ill-conditioned.
            # A seeded draw from the space keeps the batch full and the replay deterministic.
            candidate = self.optimizer.parametrization.sample()
        trial = Trial(self.asked, {k: _plain(v) for k, v in candidate.value.items()})
        self.pending[trial.number] = candidate
        self.asked += 1
        return trial

    def tell(self, trial: Trial, value: float) -> None:
        if math.isfinite(value):
            self.worst = max(self.worst, value)
        else:
            # a failed trial: the worst value seen so far keeps model-based optimisers
            # (a Gaussian process) well conditioned where inf or 1e300 would not
            value = self.worst if math.isfinite(self.worst) else 1e6
        self.optimizer.tell(self.pending.pop(trial.number), float(value))


def optimizer_family(name: str) -> Any:
    if name not in ng.optimizers.registry:
        close = [n for n in ng.optimizers.registry if n.lower().startswith(name.lower()[:3])][:8]
        raise ValueError(f"tuner.optimizer={name!r} is not a nevergrad optimizer; try NGOpt, CMA, TwoPointsDE, DE, PSO, OnePlusOne{', or ' + ', '.join(close) if close else ''}")
    return ng.optimizers.registry[name]


def bayes_family(init_budget: int | None, utility_kind: str, kappa: float, xi: float, alpha: float, restarts: int) -> Any:
    gp = {"alpha": alpha, "n_restarts_optimizer": restarts}  # sklearn GaussianProcessRegressor parameters
    return ng.families.ParametrizedBO(init_budget=init_budget, utility_kind=utility_kind, utility_kappa=kappa, utility_xi=xi, gp_parameters=gp)
