"""Tuners: the ask-and-tell optimisers behind ``lmforge train -m tuner=...``.

One thin module per option (``grid``, ``random``, ``bayes``, ``nevergrad``); the
nevergrad-backed ones import nevergrad only in ``_nevergrad.py``. The sweeper that
drives them, its report and the pruner are the ``lmforge.plugins.sweep`` plugin.
"""

from __future__ import annotations

from lmforge.contracts import Trial, Tuner, TunerConfig

__all__ = ["NevergradTuner", "TunerConfig"]  # TunerConfig lives in lmforge.contracts; re-exported for 0.1 code


class NevergradTuner(Tuner):
    """A tuner whose ``start`` opens a ``_nevergrad.Session``; asks and tells go to it."""

    def ask(self) -> Trial | None:
        return self.session.ask()

    def tell(self, trial: Trial, value: float) -> None:
        self.session.tell(trial, value)
