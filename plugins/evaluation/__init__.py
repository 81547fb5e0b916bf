"""lm-eval-harness on lmforge runs, as one built-in plugin.

==================  ==============================================================
``_lm_eval.py``     ``LmforgeLM``: lm-eval's model interface (``loglikelihood``,
                    ``loglikelihood_rolling``, ``generate_until``) over a run that
                    ``lmforge.runs.Run`` opens: a run directory, a checkpoint or an
                    export
==================  ==============================================================

It plugs in through the ``lm_eval_models`` hook: ``lmforge eval --lm-eval`` registers
each named class with lm-eval's model registry, so the harness finds it as ``lmforge``.
Importing this module imports neither torch nor lm_eval: the class is named by its path.
"""

from __future__ import annotations

from lmforge import hookimpl

MODEL = "lmforge"


@hookimpl
def lm_eval_models():
    return {MODEL: "lmforge.plugins.evaluation._lm_eval:LmforgeLM"}
