"""Discover plugins through the ``lmforge`` entry-point group and fill the registry.

Every entry point is loaded in isolation: one that fails to import or to register is
reported as a warning naming its distribution and the error, and the rest keeps working.
Set ``LMFORGE_DISABLE_PLUGIN_AUTOLOAD=1`` to load lmforge's own plugins only.
"""

from __future__ import annotations

import functools
import os
import warnings
from importlib.metadata import entry_points

import pluggy

from lmforge import PROJECT, hookspecs
from lmforge.contracts import KINDS
from lmforge.registry import Broken, Command, Provenance, Registry

DISABLE_AUTOLOAD_ENV = "LMFORGE_DISABLE_PLUGIN_AUTOLOAD"

# registration hook -> the group of the kind it registers, from the one table of kinds
KIND_HOOKS = {kind.hook: group for group, kind in KINDS.items()}


class PluginLoadWarning(UserWarning):
    """A plugin failed to import or register; its components are unavailable."""


def _call(pm: pluggy.PluginManager, hook: str, plugin: object, **kwargs):
    """Call one plugin's implementation of ``hook``, passing only the arguments it takes."""
    for impl in getattr(pm.hook, hook).get_hookimpls():
        if impl.plugin is plugin:
            return [impl.function(*[kwargs[a] for a in impl.argnames])]
    return []


def _register(pm: pluggy.PluginManager, registry: Registry, plugin: object, prov: Provenance) -> None:
    staged: list[tuple[str, type]] = []
    for hook, kind in KIND_HOOKS.items():
        _call(pm, hook, plugin, register=lambda cls, kind=kind: staged.append((kind, cls)))
    packages = [p for p in _call(pm, "config_package", plugin) if p]
    commands: list[Command] = []
    _call(pm, "register_commands", plugin, register=lambda name, function, help="": commands.append(Command(name, function, help, prov)))
    # Committed only once the whole plugin registered cleanly.
    for kind, cls in staged:  # a duplicate name is recorded: `lmforge plugins` shows it, other commands refuse
        registry.add(kind, cls, prov)
    registry.config_packages += [(p, prov) for p in packages]
    for command in commands:
        registry.add_command(command)


def make_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


@functools.cache
def load_plugins() -> tuple[pluggy.PluginManager, Registry]:
    """Load every plugin once per process; returns the plugin manager and the registry."""
    pm, registry = make_plugin_manager(), Registry()
    autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "").lower() not in ("1", "true", "yes")
    for ep in sorted(entry_points(group=PROJECT), key=lambda ep: (ep.dist.name != PROJECT, ep.dist.name, ep.name)):
        prov = Provenance(ep.dist.name, ep.dist.version, ep.name)
        if ep.dist.name != PROJECT and not autoload:
            registry.disabled.append(prov)
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=f"{prov.distribution}:{ep.name}")
            pm.check_pending()
        except Exception as exc:  # a broken plugin must not take the others down
            if (name := f"{prov.distribution}:{ep.name}") in dict(pm.list_name_plugin()):
                pm.unregister(name=name)
            _broken(registry, prov, exc)
            continue
        try:
            _register(pm, registry, plugin, prov)
        except Exception as exc:
            pm.unregister(plugin)
            _broken(registry, prov, exc)
            continue
        registry.plugins.append(prov)
    return pm, registry


def _broken(registry: Registry, prov: Provenance, exc: BaseException) -> None:
    error = f"{type(exc).__name__}: {exc}"
    registry.broken.append(Broken(prov, error))
    warnings.warn(
        f"lmforge plugin {prov.plugin!r} from {prov} failed to load and is skipped ({error}). "
        f"Fix or uninstall {prov.distribution}; set {DISABLE_AUTOLOAD_ENV}=1 to skip third-party plugins.",
        PluginLoadWarning,
        stacklevel=2,
    )
