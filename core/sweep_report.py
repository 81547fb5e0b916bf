"""Deprecated: the sweep report moved to ``lmforge.plugins.sweep.report``.

Kept so that a config naming ``lmforge.sweep_report.SweepResultsCallback`` (a copy of
lmforge 0.1's ``conf/train.yaml``) still works. Like every shim of a moved name, it
forwards by name, when used: the core imports no plugin.
"""

from __future__ import annotations

import importlib
import warnings

MOVED_TO = "lmforge.plugins.sweep.report"


def __getattr__(name: str):
    report = importlib.import_module(MOVED_TO)
    if not hasattr(report, name):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"lmforge.sweep_report.{name} moved to {MOVED_TO}.{name}", DeprecationWarning, stacklevel=2)
    return getattr(report, name)
