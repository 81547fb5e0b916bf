"""A Hydra app with a synthetic objective and no training, swept by lmforge's sweeper.

    python synthetic_app.py -m tuner=bayes 'x0=interval(-2,2)' ... hydra.sweep.dir=DIR

``function`` is a shifted Rosenbrock (optimum 0 at x = SHIFT) or a shifted sphere. Options
to exercise the sweeper: ``fail_above`` (raise when x0 is above it), ``nan_below``
(return NaN when x0 is below it), ``sleep`` (seconds per trial), ``calls`` (a file that
gets one line per trial actually run: its job number).
"""

from __future__ import annotations

import math
import time

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig

from lmforge import hydra_bridge

SHIFT = (0.6, -0.4, 0.9, 0.2)

CONFIG = {
    "defaults": [{"tuner": "random"}, {"override hydra/sweeper": "lmforge"}, "_self_"],
    "hydra": {"searchpath": ["pkg://lmforge.conf"], "job": {"chdir": False}},
    "function": "rosenbrock",
    "dim": 4,
    **{f"x{i}": 0.0 for i in range(4)},
    "fail_above": None,
    "nan_below": None,
    "sleep": 0.0,
    "calls": None,
}


def objective(function: str, x: list[float]) -> float:
    """Shifted so that the optimum (0) sits at SHIFT, not at a corner or the centre."""
    z = [xi - si for xi, si in zip(x, SHIFT)]
    if function == "sphere":
        return sum(zi * zi for zi in z)
    y = [zi + 1.0 for zi in z]  # Rosenbrock's minimum is at y = 1
    return sum(100.0 * (y[i + 1] - y[i] ** 2) ** 2 + (1.0 - y[i]) ** 2 for i in range(len(y) - 1))


def main() -> None:
    hydra_bridge.install()
    ConfigStore.instance().store(name="synthetic", node=CONFIG)

    @hydra.main(config_path=None, config_name="synthetic", version_base="1.3")
    def app(cfg) -> float:
        if cfg.calls:
            with open(cfg.calls, "a", encoding="utf-8") as f:
                f.write(f"{HydraConfig.get().job.num}\n")
        time.sleep(cfg.sleep)
        if cfg.fail_above is not None and cfg.x0 > cfg.fail_above:
            raise RuntimeError(f"x0={cfg.x0} is above fail_above={cfg.fail_above}")
        if cfg.nan_below is not None and cfg.x0 < cfg.nan_below:
            return math.nan
        return objective(cfg.function, [cfg[f"x{i}"] for i in range(cfg.dim)])

    app()


if __name__ == "__main__":
    main()
