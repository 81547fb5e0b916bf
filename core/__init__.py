"""lmforge: train language models from scratch as reproducible, pluggable experiments.

Plugins import ``hookimpl`` from here::

    from lmforge import hookimpl

    @hookimpl
    def register_models(register):
        register(MyArchitecture)

Importing this package is cheap: it pulls in pluggy and nothing heavy.
"""

from importlib.metadata import PackageNotFoundError, version

import pluggy

try:
    __version__ = version("lmforge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

PROJECT = "lmforge"

hookimpl = pluggy.HookimplMarker(PROJECT)
hookspec = pluggy.HookspecMarker(PROJECT)

__all__ = ["PROJECT", "__version__", "hookimpl", "hookspec"]
