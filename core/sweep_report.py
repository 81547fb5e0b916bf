"""Deprecated: the sweep report moved to ``lmforge.plugins.sweep.report``.

Kept so that a config naming ``lmforge.sweep_report.SweepResultsCallback`` (a copy of
lmforge 0.1's ``conf/train.yaml``) still works. Like every shim of a moved name, it
forwards by name, when used: the core imports no plugin.
"""

from __future__ import annotations

from lmforge._moved import forward

__getattr__ = forward(
    __name__, dict.fromkeys(["SweepResultsCallback", "report", "write_report", "RESULTS", "BEST", "SUMMARY"], "lmforge.plugins.sweep.report")
)
