"""The bridge between the plugin registry and Hydra.

- Every plugin's config package goes on Hydra's search path (``pkg://``), so its YAML
  options become choices of the config groups as soon as the plugin is installed.
- lmforge's top-level ``experiments/`` package serves the ``experiment`` group.
- A registered component that ships no YAML option still becomes one: its ``Config``
  defaults are stored in Hydra's ConfigStore under its name.
- ``component_config`` checks a composed node against the component's typed schema, so
  a wrong key or type fails before any work starts, naming the key.
"""

from __future__ import annotations

import dataclasses
import importlib.resources as resources
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lmforge.contracts import KIND_GROUPS
from lmforge.errors import ConfigError
from lmforge.loader import load_plugins
from lmforge.registry import Entry

EXPERIMENTS_PACKAGE = "lmforge.experiments"


def config_options(package: str) -> dict[str, list[str]]:
    """The YAML options a config package holds, by group (``{"model": ["gru"]}``)."""
    try:
        root = resources.files(package)
    except (ModuleNotFoundError, TypeError):
        return {}
    found: dict[str, list[str]] = {}

    def walk(folder, prefix: str) -> None:
        for item in folder.iterdir():
            if item.is_dir() and not item.name.startswith(("_", ".")):
                walk(item, f"{prefix}{item.name}/")
            elif prefix and item.name.endswith(".yaml"):
                found.setdefault(prefix.rstrip("/"), []).append(item.name[: -len(".yaml")])

    walk(root, "")
    return {group: sorted(names) for group, names in sorted(found.items())}


def install() -> None:
    """Register lmforge's search path and config sources with Hydra. Idempotent."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins
    from hydra.plugins.search_path_plugin import SearchPathPlugin

    from lmforge._group_source import GroupPackageConfigSource

    class LmforgeSearchPath(SearchPathPlugin):
        def manipulate_search_path(self, search_path) -> None:
            search_path.append("lmforge", f"{GroupPackageConfigSource.scheme()}://experiment={EXPERIMENTS_PACKAGE}")
            for package, prov in load_plugins()[1].config_packages:
                search_path.append(prov.distribution, f"pkg://{package}")

    LmforgeSearchPath.__module__ = __name__  # Hydra names plugins by module and class
    plugins = Plugins.instance()
    if not any(c.__name__ == "LmforgeSearchPath" for c in plugins.discover(SearchPathPlugin)):
        plugins.register(LmforgeSearchPath)
        plugins.register(GroupPackageConfigSource)
    from lmforge.sweeper import LmforgeSweeperConf, plugin_class

    plugins.register(plugin_class())  # idempotent: hydra/sweeper=lmforge
    ConfigStore.instance().store(group="hydra/sweeper", name="lmforge", node=LmforgeSweeperConf, provider="lmforge")

    _, registry = load_plugins()
    shipped: dict[str, set[str]] = {}
    for package in ["lmforge.conf"] + [p for p, _ in registry.config_packages]:
        for group, names in config_options(package).items():
            shipped.setdefault(group, set()).update(names)
    store = ConfigStore.instance()
    for kind, group in KIND_GROUPS.items():
        if kind == "preprocessor":  # steps are composed into the preprocess pipeline, not chosen alone
            continue
        for name, entry in registry.components[kind].items():
            if name not in shipped.get(group, set()):
                # structured() keeps fields without a default as '???', which the user must set
                node = {"name": name, **OmegaConf.to_container(OmegaConf.structured(entry.cls.Config))}
                store.store(group=group, name=name, node=node, provider=entry.provenance.distribution)


def component_config(kind: str, node: DictConfig | dict, key: str) -> tuple[Entry, Any]:
    """Check ``node`` (with its ``name``) against the component's schema.

    Returns the registry entry and an instance of the component's ``Config``. ``key`` is
    the node's place in the run config (``model``, ``preprocess.steps[1]``), used in errors.
    """
    _, registry = load_plugins()
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    if "name" not in values:
        raise ConfigError(f"{key}: no 'name' key saying which {kind} to use; add {key}.name=<one of {registry.names(kind)}>")
    name = values.pop("name")
    try:
        entry = registry.get(kind, name)
    except Exception as exc:
        raise ConfigError(str(exc)) from None
    return entry, structured(entry.cls.Config, values, key, f"{KIND_GROUPS[kind]}={name}")


def structured(schema: type, values: dict, key: str, what: str) -> Any:
    """Merge ``values`` into the dataclass ``schema``; errors name ``key`` and list the options."""
    base = OmegaConf.structured(schema)
    try:
        return OmegaConf.to_object(OmegaConf.merge(base, values))
    except OmegaConfBaseException as exc:
        bad = f"{key}.{exc.full_key}" if getattr(exc, "full_key", None) else key
        options = ", ".join(f.name for f in dataclasses.fields(schema)) or "none"
        reason = str(exc).splitlines()[0]
        raise ConfigError(f"{bad}: {reason}. The options of {what} are: {options}.") from None
    except (ValueError, TypeError) as exc:  # raised by the schema's own __post_init__ checks
        raise ConfigError(f"{key}: {exc}") from None


@dataclass
class Selected:
    """A component chosen by the config, checked but not yet built."""

    entry: Entry
    config: Any

    def build(self):
        return self.entry.cls(self.config)

    @property
    def name(self) -> str:
        return self.entry.cls.name


def check(cfg: DictConfig) -> SimpleNamespace:
    """Check the whole run config against its schemas before any work starts.

    Returns the chosen components (``collector``, ``steps``, ``tokenizer``, ``model``) as
    ``Selected`` and every other group as an instance of its schema.
    """
    from lmforge.schemas import GROUP_SCHEMAS

    known = {"seed", "cache_dir", "resume", *KIND_GROUPS.values(), *GROUP_SCHEMAS}
    if unknown := sorted(set(cfg) - known):
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown)}: the run config has {', '.join(sorted(known & set(cfg)))}")
    spec = SimpleNamespace()
    for kind, group in (("collector", "collector"), ("tokenizer", "tokenizer"), ("architecture", "model")):
        setattr(spec, group, Selected(*component_config(kind, cfg[group], group)))
    for group, schema in GROUP_SCHEMAS.items():
        node = OmegaConf.to_container(cfg[group], resolve=True) if group in cfg else {}
        what = group
        if isinstance(schema, dict):  # one schema per option (optimizer=sgd), chosen by name
            what = f"{group}={node.get('name')}"
            if node.get("name") not in schema:
                raise ConfigError(f"{group}.name={node.get('name')!r} is not an option; choose {group}=<one of {', '.join(schema)}>")
            schema = schema[node["name"]]
        setattr(spec, group, structured(schema, node, group, what))
    if cfg.get("tuner") is not None:  # read by the sweeper; checked here so a typo fails at once
        spec.tuner = Selected(*component_config("tuner", cfg.tuner, "tuner"))
    spec.steps = [
        Selected(*component_config("preprocessor", step, f"preprocess.steps[{i}]"))
        for i, step in enumerate(spec.preprocess.steps)
    ]
    return spec
