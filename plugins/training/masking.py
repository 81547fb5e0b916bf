"""Deprecated: ``mask_tokens`` moved to ``lmforge.masking``.

The contract suites use it, and they must not import the training engine. This module
re-exports it for code written against lmforge 0.1; import from ``lmforge.masking``.
"""

import warnings

from lmforge.masking import IGNORE_INDEX, mask_tokens

warnings.warn(
    "lmforge.plugins.training.masking is deprecated: import mask_tokens and IGNORE_INDEX from lmforge.masking",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["IGNORE_INDEX", "mask_tokens"]
