"""The registry of components, their provenance, and the plugins that failed to load."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from lmforge.contracts import KINDS, Component, kind_of
from lmforge.errors import DuplicateComponentError, PluginError


RESERVED_COMMANDS = ("train", "plugins", "eval")  # lmforge's own sub-commands


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


@dataclass(frozen=True)
class Conflict:
    """Two distributions registered one name for one kind; the second was left out."""

    group: str
    name: str
    first: Provenance
    second: Provenance

    def __str__(self) -> str:
        return (
            f"{self.group} {self.name!r} is registered twice: by {self.first} "
            f"(entry point {self.first.plugin!r}) and by {self.second} (entry point {self.second.plugin!r}). "
            f"Uninstall one of the two distributions, or rename the component in one of them."
        )


@dataclass
class Command:
    name: str
    function: Callable[[list[str]], int]
    help: str
    provenance: Provenance


@dataclass
class Registry:
    """What the plugins registered, by kind (keyed by the kind's group: ``model``, ``preprocess``...)."""

    components: dict[str, dict[str, Entry]] = field(default_factory=lambda: {group: {} for group in KINDS})
    config_packages: list[tuple[str, Provenance]] = field(default_factory=list)
    commands: dict[str, Command] = field(default_factory=dict)
    broken: list[Broken] = field(default_factory=list)
    disabled: list[Provenance] = field(default_factory=list)
    plugins: list[Provenance] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)  # duplicate names: every command but `plugins` refuses

    def check(self) -> None:
        """Raise the conflicts, if any: two distributions registered one name."""
        if self.conflicts:
            raise DuplicateComponentError("\n".join(map(str, self.conflicts)))

    def add(self, kind: str, cls: type, provenance: Provenance) -> None:
        """Add one component; a duplicate name is recorded as a ``Conflict`` (see ``check``)."""
        kind = kind_of(kind).group
        base = KINDS[kind].base
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(
                f"plugin {provenance.plugin!r} ({provenance}) registered {cls!r} as a {kind}, "
                f"but it does not subclass lmforge.contracts.{base.__name__}"
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {provenance.plugin!r} ({provenance}) registered {cls.__name__} without a name")
        existing = self.components[kind].get(name)
        if existing is not None and existing.cls is not cls:
            self.conflicts.append(Conflict(kind, name, existing.provenance, provenance))
            return
        self.components[kind][name] = Entry(cls, provenance)

    def add_command(self, command: Command) -> None:
        """Add a CLI sub-command; taking a built-in's or another plugin's name is an error."""
        if command.name in RESERVED_COMMANDS:
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
        group = kind_of(kind).group
        entry = self.components[group].get(name)
        if entry is not None:
            return entry
        available = ", ".join(sorted(self.components[group])) or "none"
        message = f"{group}={name}: no {KINDS[group].alias or group} named {name!r} is registered. Available: {available}."
        suspects = [b for b in self.broken if b.provenance.plugin == name] or self.broken
        for b in suspects:
            message += f"\nPlugin {b.provenance.plugin!r} from {b.provenance} failed to load: {b.error}"
        if self.disabled:
            message += autoload_note(self.disabled)
        raise PluginError(message)

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind_of(kind).group])


def autoload_note(disabled: list[Provenance]) -> str:
    dists = ", ".join(sorted({str(p) for p in disabled}))
    return (
        f"\nThird-party plugins are switched off by LMFORGE_DISABLE_PLUGIN_AUTOLOAD, so these installed ones "
        f"were not loaded: {dists}. Unset it to use them."
    )
