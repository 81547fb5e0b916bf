"""Deprecated: this module moved to ``lmforge.engine.losses`` in lmforge 0.2; import from there."""

import warnings

from lmforge.engine.losses import *  # noqa: F401,F403

warnings.warn("lmforge.plugins.training.losses moved to lmforge.engine.losses", DeprecationWarning, stacklevel=2)
