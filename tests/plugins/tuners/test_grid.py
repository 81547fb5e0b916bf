from lmforge.contracts import Param
from lmforge.plugins.tuners.grid import GridConfig, GridSearch, axis
from lmforge.testing import TunerContract


class TestGrid(TunerContract):
    component = GridSearch
    config = GridConfig(num=2)


def test_grid_covers_every_combination_in_order():
    tuner = GridSearch(GridConfig(num=3))
    tuner.start([Param("a", "choice", choices=["x", "y"]), Param("b", "float", low=0.0, high=1.0)], budget=100, num_workers=1, seed=0)
    seen = []
    while (trial := tuner.ask()) is not None:
        seen.append((trial.params["a"], trial.params["b"]))
    assert seen == [("x", 0.0), ("x", 0.5), ("x", 1.0), ("y", 0.0), ("y", 0.5), ("y", 1.0)]


def test_log_axis_is_geometric_and_small_int_ranges_are_complete():
    assert axis(Param("lr", "float", low=1e-4, high=1e-2, log=True), 3) == [1e-4, 1e-3, 1e-2] or all(
        abs(a - b) / b < 1e-9 for a, b in zip(axis(Param("lr", "float", low=1e-4, high=1e-2, log=True), 3), [1e-4, 1e-3, 1e-2])
    )
    assert axis(Param("n", "int", low=2, high=4), 5) == [2, 3, 4]
