"""Spending compute well, as one built-in plugin: ``lmforge size`` and ``experiment=scaling``.

==================  ==============================================================
``size.py``         ``lmforge size``: the compute-optimal size for a budget, the
                    nearest transformer shape and its overrides; ``--fit`` on a
                    sweep; the ``${compute.max_steps:C}`` resolver
``scaling.py``      the Hydra callback that fits ``experiment=scaling`` when its
                    sweep ends
``_chinchilla.py``  the numbers: Chinchilla's allocation and loss law, the
                    transformer's parameter count, the fit and its plot (numpy,
                    scipy and matplotlib, imported when used)
==================  ==============================================================

It plugs in through two hooks, like any third-party plugin: ``register_commands``
(``lmforge size``) and ``register_resolvers`` (the resolver, which must exist before
Hydra resolves a config that uses it). Importing this module imports neither Hydra nor numpy.
"""

from __future__ import annotations

from lmforge import hookimpl


def size(argv: list[str]) -> int:
    from lmforge.plugins.compute.size import size as run

    return run(argv)


@hookimpl
def register_commands(register):
    register("size", size, "compute-optimal model size and tokens for a FLOP, token or time budget (Chinchilla); --fit a sweep")


@hookimpl
def register_resolvers(register):
    from lmforge.plugins.compute.size import RESOLVER, max_steps_for

    register(RESOLVER, max_steps_for)  # ${compute.max_steps:C}, used by experiment=scaling
