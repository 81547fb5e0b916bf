from lmforge.contracts import Param
from lmforge.plugins.tuners.bayes import Bayes, BayesConfig
from lmforge.testing import TunerContract


class TestBayes(TunerContract):
    component = Bayes
    config = BayesConfig(init_budget=3)
    budget = 4  # one model-based ask per run: each fits a GP and maximises the acquisition (slow)


def test_the_model_beats_its_own_random_start():
    """After a 4-trial random design, the GP finds a clearly better point on a 1-D quadratic."""
    tuner = Bayes(BayesConfig(init_budget=4))
    tuner.start([Param("x", "float", low=-5.0, high=5.0)], budget=10, num_workers=1, seed=0)
    values = []
    while (trial := tuner.ask()) is not None:
        values.append((trial.params["x"] - 1.3) ** 2)
        tuner.tell(trial, values[-1])
    assert min(values[4:]) < min(values[:4]) and min(values) < 0.01
