"""The median pruner: stops a sweep's trial whose validation metric trails the field.

It works through the ``train_callbacks`` hook, and only inside a sweep run by lmforge's
sweeper with ``hydra.sweeper.pruner.kind=median``: elsewhere the hook returns nothing.
The callback itself (``_pruning.py``) imports Lightning.
"""

from __future__ import annotations

from lmforge import hookimpl


def sweep_pruner() -> dict | None:
    """The pruner settings, sweep dir and trial number when this job is a pruned sweep's trial."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    sweeper = hydra.sweeper
    if hydra.mode is None or hydra.mode.name != "MULTIRUN" or not str(sweeper.get("_target_", "")).endswith(".LmforgeSweeper"):
        return None
    pruner = sweeper.get("pruner") or {}
    if pruner.get("kind", "none") == "none":
        return None
    return {"pruner": dict(pruner), "sweep_dir": str(hydra.sweep.dir), "number": int(hydra.job.num)}


@hookimpl
def train_callbacks(run_dir):
    found = sweep_pruner()
    if found is None:
        return None
    from lmforge.plugins.tuners._pruning import MedianPruning

    return [MedianPruning(found["sweep_dir"], found["number"], **found["pruner"])]
