"""Deprecated: the config schemas moved in lmforge 0.2.

The engine's groups (``DataConfig``, ``TrainerConfig``, ``LossConfig``, ``SampleConfig``)
are in ``lmforge.engine.config``; the optimizer, scheduler and logger are components
with their own ``Config`` in ``lmforge.plugins.training``; ``PreprocessConfig`` is in
``lmforge.hydra_bridge``. Importing a name from here still works, with a warning.
"""

from __future__ import annotations

import importlib
import warnings

_MOVED = {
    "DataConfig": "lmforge.engine.config",
    "TrainerConfig": "lmforge.engine.config",
    "LossConfig": "lmforge.engine.config",
    "SampleConfig": "lmforge.engine.config",
    "PreprocessConfig": "lmforge.hydra_bridge",
    "OptimizerConfig": "lmforge.contracts",
    "SchedulerConfig": "lmforge.contracts",
    "AdamWConfig": "lmforge.plugins.training.optimizers",
    "SGDConfig": "lmforge.plugins.training.optimizers",
    "AdafactorConfig": "lmforge.plugins.training.optimizers",
    "CosineSchedulerConfig": "lmforge.plugins.training.schedulers:CosineConfig",
    "LinearSchedulerConfig": "lmforge.plugins.training.schedulers:LinearConfig",
    "ConstantSchedulerConfig": "lmforge.plugins.training.schedulers:ConstantConfig",
    "WSDSchedulerConfig": "lmforge.plugins.training.schedulers:WSDConfig",
    "WandbLoggerConfig": "lmforge.plugins.training.loggers:WandbConfig",
}


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, attr = _MOVED[name].partition(":")
    warnings.warn(f"lmforge.schemas.{name} moved to {module}.{attr or name}", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(module), attr or name)
