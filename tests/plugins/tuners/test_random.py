import math

from lmforge.contracts import Param
from lmforge.plugins.tuners.random import RandomSearch
from lmforge.testing import TunerContract


class TestRandom(TunerContract):
    component = RandomSearch


def test_log_floats_are_log_uniform():
    """About half the draws of lr in [1e-4, 1e-0] fall below 1e-2, the geometric middle."""
    tuner = RandomSearch()
    tuner.start([Param("lr", "float", low=1e-4, high=1.0, log=True)], budget=2000, num_workers=1, seed=0)
    draws = [tuner.ask().params["lr"] for _ in range(2000)]
    below = sum(d < 1e-2 for d in draws) / len(draws)
    assert 0.45 < below < 0.55, below  # a linear draw would put 1% there
    assert min(draws) >= 1e-4 and max(draws) <= 1.0 and not any(math.isnan(d) for d in draws)


def test_other_seeds_give_other_asks():
    a, b = RandomSearch(), RandomSearch()
    space = [Param("x", "float", low=0.0, high=1.0)]
    a.start(space, 3, 1, seed=0)
    b.start(space, 3, 1, seed=1)
    assert a.ask().params != b.ask().params
