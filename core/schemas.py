"""Deprecated: the config schemas moved in lmforge 0.2.

The engine's groups (``DataConfig``, ``TrainerConfig``, ``LossConfig``, ``SampleConfig``)
are in ``lmforge.engine.config``; the optimizer, scheduler and logger are components
with their own ``Config`` in ``lmforge.plugins.training``; ``PreprocessConfig`` is in
``lmforge.hydra_bridge``. Importing a name from here still works, with a warning.
"""

from __future__ import annotations

from lmforge._moved import forward

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

__getattr__ = forward(__name__, _MOVED)
