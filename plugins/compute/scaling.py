"""The Hydra callback that closes ``experiment=scaling``: ``lmforge size --fit`` on the sweep.

Hydra imports this module by the callback's ``_target_``, at the start of the sweep.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger("lmforge")


class ScalingFitCallback(Callback):
    """After ``lmforge train -m experiment=scaling``: fit the law and the IsoFLOP optima of the
    sweep's runs, and write ``scaling_fit.json`` and ``scaling_fit.png`` into the sweep directory."""

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        from lmforge.plugins.compute.size import fit_sweep, show_fit

        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            result = fit_sweep(sweep_dir)
        except Exception as exc:  # the trials are done; a failed fit must not hide them
            log.warning("could not fit the scaling law to %s: %s (rerun: lmforge size --fit %s)", sweep_dir, exc, sweep_dir)
            return
        for line in show_fit(result).splitlines():
            log.info("%s", line)
