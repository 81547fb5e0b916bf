"""A sweep's search space, read from Hydra's override grammar, and trials back to overrides.

The sweep grammar maps onto ``lmforge.contracts.Param``:

==========================================  ==========================================
``key=a,b,c`` or ``key=choice(a,b,c)``      a choice (``model=choice(rnn,transformer)``)
``key=range(2,8)``                          an int from 2 to 7 (a choice when the step is not 1)
``key=interval(1e-4,1e-2)``                 a float (Hydra reads interval ends as floats)
``key=tag(log,interval(1e-4,1e-2))``        the same on a log scale
==========================================  ==========================================

Any other override is fixed: every trial gets it as it was typed.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from lmforge.contracts import Param
from lmforge.errors import ConfigError

_PLAIN = re.compile(r"^[\w./:\-+@]+$")


def _typed(value: Any) -> Any:
    from hydra.core.override_parser.types import QuotedString

    return value.text if isinstance(value, QuotedString) else value


def param_from_override(override) -> Param:
    """The ``Param`` a sweep override describes; its name is the key as typed (``+foo``, ``model``)."""
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep

    name, value = override.get_key_element(), override.value()
    tags = getattr(value, "tags", set()) or set()
    if override.is_choice_sweep():
        return Param(name, "choice", choices=[_typed(v) for v in override.sweep_iterator()])
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        if all(isinstance(x, int) for x in (value.start, value.stop, value.step)) and value.step == 1:
            return Param(name, "int", low=value.start, high=value.stop - 1, log="log" in tags)
        return Param(name, "choice", choices=list(value.range()))
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        kind = "int" if isinstance(value.start, int) and isinstance(value.end, int) else "float"
        return Param(name, kind, low=value.start, high=value.end, log="log" in tags)
    raise ConfigError(f"{override.input_line}: not a sweep lmforge's sweeper can search; use a,b,c, choice(), range() or interval()")


def parse_space(arguments: Iterable[str], params: dict[str, Any] | None = None) -> tuple[list[str], list[Param]]:
    """Split overrides into the fixed ones and the search space.

    ``params`` (``tuner.params``: key -> sweep grammar or a list of values) adds
    dimensions; a sweep of the same key among ``arguments`` wins over it.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    fixed, space = [], {}
    for key, spec in (params or {}).items():
        text = ",".join(format_value(v) for v in spec) if isinstance(spec, (list, tuple)) else str(spec)
        try:
            (override,) = parser.parse_overrides([f"{key}={text}"])
        except HydraException as exc:
            raise ConfigError(f"tuner.params.{key}={text!r} is not Hydra sweep grammar ({exc}); write e.g. 'tag(log, interval(1e-4, 1e-2))', 'range(2, 8)' or 'choice(a, b)'") from None
        if not override.is_sweep_override():
            raise ConfigError(f"tuner.params.{key}={text!r} is a single value, not a search range; give a list, choice(), range() or interval()")
        space[key] = param_from_override(override)
    for override in parser.parse_overrides(list(arguments)):
        if override.is_sweep_override():
            if override.is_hydra_override():
                raise ConfigError(f"{override.input_line}: the sweeper searches the task's config, not hydra.*; set one value")
            space[override.get_key_element()] = param_from_override(override)
        else:
            fixed.append(override.input_line)
    return fixed, list(space.values())


def format_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it back."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.match(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def trial_overrides(fixed: list[str], params: dict[str, Any]) -> list[str]:
    """The overrides a trial runs with: the fixed ones, then one per searched key."""
    return [*fixed, *(f"{key}={format_value(value)}" for key, value in params.items())]
