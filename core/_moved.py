"""Names that moved between lmforge versions keep importing from their old module.

A module whose names moved sets ``__getattr__ = forward(__name__, {...})``: each old
name resolves to its new place (``"module"`` or ``"module:new_name"``) on first use,
with a ``DeprecationWarning`` that names where to import it from now. The new module is
imported by name, only then: a shim never imports what it points to at import time.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable


def forward(module: str, moved: dict[str, str]) -> Callable[[str], Any]:
    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target, _, new_name = moved[name].partition(":")
        new_name = new_name or name
        warnings.warn(f"{module}.{name} is deprecated: it moved to {target}.{new_name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(target), new_name)

    return __getattr__
