import pytest

from lmforge.plugins.tuners.nevergrad import Nevergrad, NevergradConfig
from lmforge.testing import TunerContract


class TestNGOpt(TunerContract):
    component = Nevergrad


class TestTwoPointsDE(TunerContract):
    component = Nevergrad
    config = NevergradConfig(optimizer="TwoPointsDE")


class TestCMA(TunerContract):
    component = Nevergrad
    config = NevergradConfig(optimizer="CMA")


def test_an_unknown_optimizer_is_named_with_alternatives():
    tuner = Nevergrad(NevergradConfig(optimizer="NGOptt"))
    with pytest.raises(ValueError, match="tuner.optimizer='NGOptt' is not a nevergrad optimizer.*NGOpt"):
        tuner.start([], 4, 1, 0)
