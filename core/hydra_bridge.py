"""The bridge between the plugin registry and Hydra.

- Every plugin's config package goes on Hydra's search path (``pkg://``), so its YAML
  options become choices of the config groups as soon as the plugin is installed.
- lmforge's top-level ``experiments/`` package serves the ``experiment`` group.
- A registered component that ships no YAML option still becomes one: its ``Config``
  defaults are stored in Hydra's ConfigStore under its name.
- Plugins' Hydra plugins (lmforge's own sweeper among them) come in through the
  ``register_hydra_plugins`` hook.
- ``component_config`` checks a composed node against the component's typed schema, so
  a wrong key or type fails before any work starts, naming the key; ``check`` does it
  for the whole run config and returns a ``RunSpec``, what the run wiring and every
  command that opens a run read instead of the raw config.
"""

from __future__ import annotations

import dataclasses
import importlib.resources as resources
from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lmforge.contracts import KINDS, kind_of
from lmforge.engine.config import GROUP_SCHEMAS as ENGINE_GROUPS
from lmforge.engine.config import DataConfig, LossConfig, SampleConfig, TrainerConfig
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
    """Register lmforge's search path, config sources and the plugins' Hydra plugins. Idempotent."""
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
    pm, registry = load_plugins()
    plugins = Plugins.instance()
    if not any(c.__name__ == "LmforgeSearchPath" for c in plugins.discover(SearchPathPlugin)):
        plugins.register(LmforgeSearchPath)
        plugins.register(GroupPackageConfigSource)
    store = ConfigStore.instance()

    def register(cls: type, group: str | None = None, name: str | None = None, node: Any = None) -> None:
        plugins.register(cls)  # idempotent
        if group and name:
            store.store(group=group, name=name, node=node, provider="lmforge")

    pm.hook.register_hydra_plugins(register=register)

    resolvers: dict[str, str] = {}

    def register_resolver(name: str, function: Any) -> None:
        owner = getattr(function, "__module__", "?")
        if name in resolvers and resolvers[name] != owner:
            raise ConfigError(f"two plugins register the resolver ${{{name}:...}}: {resolvers[name]} and {owner}")
        resolvers[name] = owner
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)

    pm.hook.register_resolvers(register=register_resolver)

    shipped: dict[str, set[str]] = {}
    for package in ["lmforge.conf"] + [p for p, _ in registry.config_packages]:
        for group, names in config_options(package).items():
            shipped.setdefault(group, set()).update(names)
    for group, kind in KINDS.items():
        if not kind.chosen:  # preprocess steps are composed into a pipeline, not chosen alone
            continue
        for name, entry in registry.components[group].items():
            if name not in shipped.get(group, set()):
                # structured() keeps fields without a default as '???', which the user must set
                node = {"name": name, **OmegaConf.to_container(OmegaConf.structured(entry.cls.Config))}
                store.store(group=group, name=name, node=node, provider=entry.provenance.distribution)


def component_config(kind: str, node: DictConfig | dict, key: str) -> tuple[Entry, Any]:
    """Check ``node`` (with its ``name``) against the component's schema.

    ``kind`` is a group of ``lmforge.contracts.KINDS`` (or a kind's older alias). Returns
    the registry entry and an instance of the component's ``Config``. ``key`` is the
    node's place in the run config (``model``, ``preprocess.steps[1]``), used in errors.
    """
    _, registry = load_plugins()
    group = kind_of(kind).group
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    if "name" not in values:
        raise ConfigError(f"{key}: no 'name' key saying which {group} to use; add {key}.name=<one of {registry.names(group)}>")
    name = values.pop("name")
    try:
        entry = registry.get(group, name)
    except Exception as exc:
        raise ConfigError(str(exc)) from None
    return entry, structured(entry.cls.Config, values, key, f"{group}={name}")


def structured(schema: type, values: dict, key: str, what: str) -> Any:
    """Merge ``values`` into the dataclass ``schema``; errors name ``key`` and list the options.

    A dict field given in ``values`` replaces its default rather than merging into it, so
    a key removed on the command line (``~tokenizer.special_tokens.unk``) is gone from
    what the component receives, as from the recorded config.
    """
    base = OmegaConf.structured(schema)
    try:
        merged = OmegaConf.merge(base, values)
        for name, value in values.items():
            if isinstance(value, dict) and OmegaConf.get_type(base, name) is dict:
                merged[name] = value
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        bad = f"{key}.{exc.full_key}" if getattr(exc, "full_key", None) else key
        options = ", ".join(f.name for f in dataclasses.fields(schema)) or "none"
        reason = str(exc).splitlines()[0]
        raise ConfigError(f"{bad}: {reason}. The options of {what} are: {options}.") from None
    except (ValueError, TypeError) as exc:  # raised by the schema's own __post_init__ checks
        import re

        # a check names its field bare (n_layer=0: ...); the user wrote it under its key (model.n_layer=0)
        names = "|".join(re.escape(f.name) for f in dataclasses.fields(schema))
        message = re.sub(rf"(?<![\w.\[])(?=(?:{names})(?:\.\w+|\[\d+\])*=)", f"{key}.", str(exc)) if names else str(exc)
        raise ConfigError(message if message.startswith(f"{key}.") else f"{key}: {message}") from None


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

    @property
    def provenance(self):
        return self.entry.provenance

    def record(self) -> dict:
        """The config node as the component receives it: its name and every option."""
        return {"name": self.name, **dataclasses.asdict(self.config)}


@dataclass
class PreprocessConfig:
    steps: List[Any] = field(default_factory=list)  # each a dict with a 'name' and that step's options
    n_workers: int = 1


@dataclass
class RunSpec:
    """A run config, checked: every component chosen and every group typed.

    What the run wiring, the run object and every command that opens a run read, instead
    of the raw config.
    """

    seed: int
    cache_dir: str
    resume: Optional[str]
    collector: Selected
    steps: list[Selected]  # the preprocess steps, in order
    preprocess: PreprocessConfig
    tokenizer: Selected
    model: Selected
    optimizer: Selected
    scheduler: Selected
    logger: Selected
    tuner: Optional[Selected]
    data: DataConfig
    trainer: TrainerConfig
    loss: LossConfig
    sample: SampleConfig
    resume_fallback: bool = False  # resume= a corrupt checkpoint: take the run's newest intact one

    def record(self) -> dict:
        """The config as checked, defaults filled in: what ``config.yaml`` records."""
        chosen = ("collector", "tokenizer", "model", "optimizer", "scheduler", "logger")
        found: dict[str, Any] = {"seed": self.seed, "cache_dir": self.cache_dir, "resume": self.resume, "resume_fallback": self.resume_fallback}
        found.update({group: getattr(self, group).record() for group in chosen})
        found["tuner"] = self.tuner.record() if self.tuner else None
        found["preprocess"] = {"steps": [s.record() for s in self.steps], "n_workers": self.preprocess.n_workers}
        found.update({group: dataclasses.asdict(getattr(self, group)) for group in ENGINE_GROUPS})
        return found


def check(cfg: DictConfig) -> RunSpec:
    """Check the whole run config against its schemas before any work starts."""
    try:
        OmegaConf.to_container(cfg, resolve=True)  # an interpolation that fails names its key here
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "the config"
        cause = exc
        while cause is not None and not isinstance(cause, ConfigError):  # a resolver's own message, if it gave one
            cause = cause.__context__
        reason = str(cause or exc).splitlines()[0]
        raise ConfigError(f"{key}: {reason}; fix the value or the ${{...}} interpolation in it") from None
    known = {"seed", "cache_dir", "resume", "resume_fallback", "preprocess", *KINDS, *ENGINE_GROUPS}
    if unknown := sorted(set(cfg) - known):
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown)}: the run config has {', '.join(sorted(known & set(cfg)))}")
    chosen = {
        group: Selected(*component_config(group, cfg[group], group))
        for group, kind in KINDS.items()
        if kind.chosen and kind.command == "train" and group != "tuner"
    }
    groups = {
        group: structured(schema, OmegaConf.to_container(cfg[group], resolve=True) if group in cfg else {}, group, group)
        for group, schema in {"preprocess": PreprocessConfig, **ENGINE_GROUPS}.items()
    }
    if (workers := groups["preprocess"].n_workers) < 1:
        raise ConfigError(f"preprocess.n_workers={workers}: must be at least 1; e.g. preprocess.n_workers=4")
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed}: must be an integer; e.g. seed=1337")
    if not cfg.get("cache_dir"):
        raise ConfigError(f"cache_dir={cfg.get('cache_dir')}: must be a directory path; e.g. cache_dir=~/.cache/lmforge")
    resume_fallback = cfg.get("resume_fallback", False)
    if not isinstance(resume_fallback, bool):
        raise ConfigError(f"resume_fallback={resume_fallback}: must be true or false")
    steps = [
        Selected(*component_config("preprocess", step, f"preprocess.steps[{i}]"))
        for i, step in enumerate(groups["preprocess"].steps)
    ]
    # read by the sweeper; checked here so a typo fails at once
    tuner = Selected(*component_config("tuner", cfg.tuner, "tuner")) if cfg.get("tuner") is not None else None
    return RunSpec(
        seed=seed, cache_dir=str(cfg.get("cache_dir")), resume=cfg.get("resume"), steps=steps, tuner=tuner, **chosen, **groups,
        resume_fallback=resume_fallback,
    )
