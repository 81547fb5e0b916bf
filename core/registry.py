"""The registry of components, their provenance, and the plugins that failed to load."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from lmforge.contracts import KIND_GROUPS, Component
from lmforge.errors import DuplicateComponentError, PluginError


@dataclass(frozen=True)
class Provenance:
    """Where a component comes from: the installed distribution and its entry point."""

    distribution: str
    version: str
    plugin: str  # the entry-point name

    def __str__(self) -> str:
        return f"{self.distribution} {self.version}"


@dataclass(frozen=True)
class Entry:
    cls: type[Component]
    provenance: Provenance


@dataclass
class Broken:
    provenance: Provenance
    error: str


@dataclass
class Command:
    name: str
    function: Callable[[list[str]], int]
    help: str
    provenance: Provenance


@dataclass
class Registry:
    components: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KIND_GROUPS})
    config_packages: list[tuple[str, Provenance]] = field(default_factory=list)
    commands: dict[str, Command] = field(default_factory=dict)
    broken: list[Broken] = field(default_factory=list)
    disabled: list[Provenance] = field(default_factory=list)
    plugins: list[Provenance] = field(default_factory=list)

    def add(self, kind: str, cls: type, provenance: Provenance) -> None:
        """Add one component; a duplicate name is an error naming both distributions."""
        if not (isinstance(cls, type) and issubclass(cls, Component) and cls.kind == kind):
            raise PluginError(
                f"plugin {provenance.plugin!r} ({provenance}) registered {cls!r} as a {kind}, "
                f"but it does not subclass the lmforge.contracts class for {kind}s"
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {provenance.plugin!r} ({provenance}) registered {cls.__name__} without a name")
        existing = self.components[kind].get(name)
        if existing is not None and existing.cls is not cls:
            raise DuplicateComponentError(
                f"{kind} {name!r} is registered twice: by {existing.provenance} "
                f"(entry point {existing.provenance.plugin!r}) and by {provenance} "
                f"(entry point {provenance.plugin!r}). Uninstall one of the two distributions, "
                f"or rename the component in one of them."
            )
        self.components[kind][name] = Entry(cls, provenance)

    def add_command(self, command: Command) -> None:
        """Add a CLI sub-command; taking a built-in's or another plugin's name is an error."""
        if command.name in ("train", "plugins"):
            raise PluginError(f"plugin {command.provenance.plugin!r} ({command.provenance}) registers command {command.name!r}, which is lmforge's own")
        existing = self.commands.get(command.name)
        if existing is not None:
            raise DuplicateComponentError(
                f"command {command.name!r} is registered twice: by {existing.provenance} and by {command.provenance}. "
                f"Uninstall one of the two distributions."
            )
        self.commands[command.name] = command

    def get(self, kind: str, name: str) -> Entry:
        """Look a component up; the error lists what is available and what failed to load."""
        entry = self.components[kind].get(name)
        if entry is not None:
            return entry
        group = KIND_GROUPS[kind]
        available = ", ".join(sorted(self.components[kind])) or "none"
        message = f"{group}={name}: no {kind} named {name!r} is registered. Available: {available}."
        suspects = [b for b in self.broken if b.provenance.plugin == name] or self.broken
        for b in suspects:
            message += f"\nPlugin {b.provenance.plugin!r} from {b.provenance} failed to load: {b.error}"
        if self.disabled:
            message += "\nThird-party plugins are switched off by LMFORGE_DISABLE_PLUGIN_AUTOLOAD."
        raise PluginError(message)

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])
