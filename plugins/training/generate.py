"""Deprecated: this module moved to ``lmforge.engine.generate`` in lmforge 0.2; import from there."""

import warnings

from lmforge.engine.generate import *  # noqa: F401,F403

warnings.warn("lmforge.plugins.training.generate moved to lmforge.engine.generate", DeprecationWarning, stacklevel=2)
