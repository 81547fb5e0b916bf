"""The ``lmforge`` command line.

``lmforge train [overrides]`` hands its arguments to Hydra, so the override grammar and
Hydra's flags (``--cfg job``, ``--help``, ``-m``, ``hydra.run.dir=...``) all work.
``lmforge plugins`` lists what is installed without importing torch or spaCy. Plugins
add their own sub-commands through the ``register_commands`` hook.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

from lmforge import __version__
from lmforge.errors import LmforgeError
from lmforge.loader import load_plugins

log = logging.getLogger("lmforge")
# Lightning's DDP launcher adds this override when it re-runs a Hydra app for rank N
DDP_CHILD = "hydra.job.name=train_ddp_process_"

USAGE = """usage: lmforge <command> [arguments]

commands:
  train [overrides]   collect, preprocess, tokenize, train and evaluate (Hydra overrides; --help for more)
                      -m runs a sweep; with tuner=grid|random|bayes|nevergrad, lmforge's sweeper searches it
  plugins [--json]    list installed plugins, their components and config options
  eval <run dir>      recompute a run's metrics on its validation split (or --split, --text) into eval.json
                      --task <name>: score it, its base and the baseline on a task's test split
                      --lm-eval TASKS [--include-path DIR]: lm-eval-harness tasks, offline, into eval.json
{extra}
Run 'lmforge train --help' for the config groups and their options."""


def _unavailable_choice(argv: list[str]) -> str | None:
    """An override choosing a component whose plugin failed to load or was not loaded, explained."""
    from lmforge.contracts import KINDS
    from lmforge.registry import autoload_note

    registry = load_plugins()[1]
    broken = {b.provenance.plugin: b for b in registry.broken}
    for arg in argv:
        group, _, option = arg.partition("=")
        if group not in KINDS or not option or option in registry.components[group]:
            continue
        plugin = option if option in broken else f"{group}_{option}"  # <group>_<name> where <name> is taken
        if plugin in broken:
            b = broken[plugin]
            return (
                f"{group}={option}: plugin {plugin!r} from {b.provenance} failed to load ({b.error}). "
                f"Fix or reinstall {b.provenance.distribution}, or choose another {group}."
            )
        if registry.disabled and option not in _shipped_options(group):
            return f"{group}={option}: no {group} named {option!r} is registered.{autoload_note(registry.disabled)}"
    return None


def _shipped_options(group: str) -> set[str]:
    from lmforge.hydra_bridge import config_options

    packages = ["lmforge.conf"] + [p for p, _ in load_plugins()[1].config_packages]
    return {name for package in packages for name in config_options(package).get(group, [])}


def train(argv: list[str]) -> int:
    def run(cfg, run_dir: Path, launch_dir: Path) -> float:
        from lmforge.run import train as run_train

        return run_train(cfg, run_dir, launch_dir)

    return hydra_app(argv, "train", run)


def hydra_app(argv: list[str], config_name: str, run: Callable[[Any, Path, Path], float]) -> int:
    """Run a command as a Hydra app over ``lmforge.conf/<config_name>.yaml``, as ``train`` runs.

    ``run(cfg, run_dir, launch_dir)`` does one job and returns the metric a sweeper
    optimizes. Around it: plugin conflicts and unwritable run folders are refused before
    Hydra starts, the run directory is locked, ``-m`` with a ``tuner=`` selects lmforge's
    sweeper, and a job refused with an ``LmforgeError`` prints one line, exits 2 and
    leaves no run directory behind (in a sweep, the sweeper records the failed trial).
    ``lmforge finetune`` is the other command built on it.
    """
    load_plugins()[1].check()  # two plugins claiming one name: refuse before any work
    if message := _unavailable_choice(argv) or _unwritable_run_dir(argv):
        print(f"lmforge: error: {message}", file=sys.stderr)
        return 2
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from lmforge import hydra_bridge, rundir

    hydra_bridge.install()
    rundir.register(argv)  # the default hydra.run.dir claims a new folder: ${lmforge.unique_dir:...}
    rundir.lock_requested(argv)  # a folder another live run holds: refused before Hydra writes into it

    @hydra.main(config_path="pkg://lmforge.conf", config_name=config_name, version_base="1.3")
    def task(cfg) -> float:
        runtime = HydraConfig.get().runtime
        run_dir, launch_dir = Path(runtime.output_dir), Path(runtime.cwd)
        try:
            with rundir.locked(run_dir):
                return run(cfg, run_dir, launch_dir)
        except LmforgeError as exc:
            if HydraConfig.get().mode.name == "MULTIRUN":
                raise  # the sweeper records the failed trial and goes on
            log.error("%s", exc)
            if not isinstance(exc, rundir.RunDirBusy):  # a busy folder is another run's to keep
                _remove_if_empty(run_dir, launch_dir, f"{HydraConfig.get().job.name}.log")
            raise SystemExit(2) from None

    multirun = any(a in ("-m", "--multirun") for a in argv)
    if multirun and any(a.startswith("tuner=") for a in argv) and not any(a.startswith("hydra/sweeper=") for a in argv):
        argv = [*argv, "hydra/sweeper=lmforge"]  # a tuner means lmforge's sweeper drives the sweep
    sys.argv = [sys.argv[0], *argv]  # Lightning's DDP re-runs sys.argv[0] (or python -m <module>) for each extra rank
    task()
    return 0


def _unwritable_run_dir(argv: list[str]) -> str | None:
    """``hydra.run.dir`` (default ``outputs/``) where no folder can be made, said before Hydra
    tries and fails with a traceback."""
    import os

    if any(a in ("-m", "--multirun") for a in argv):
        return None
    given = [a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")]
    if given and "${" in given[-1]:
        return None  # an interpolation only Hydra resolves
    target = Path(given[-1] if given else "outputs").expanduser().absolute()
    existing = next(p for p in (target, *target.parents) if p.exists())
    shown = f"hydra.run.dir={given[-1]}" if given else "hydra.run.dir (outputs/ under the current folder)"
    if not existing.is_dir():
        return f"{shown}: cannot create the run directory, {existing} is a file, not a folder: set hydra.run.dir to a folder you can write"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{shown}: cannot create the run directory, {existing} is not writable (permission denied): set hydra.run.dir to a folder you can write"
    return None


def _remove_if_empty(run_dir: Path, launch_dir: Path, log_file: str = "train.log") -> None:
    """A run refused before any work leaves no run directory behind: only Hydra's files are in
    it. Parents it leaves empty (``outputs/<date>``) go too, up to the launch directory."""
    import shutil

    from lmforge.rundir import LOCK

    if not run_dir.is_dir() or not {p.name for p in run_dir.iterdir()} <= {".hydra", log_file, LOCK}:
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in run_dir.parents:
        if parent == launch_dir or launch_dir not in parent.parents:
            break
        try:
            parent.rmdir()  # only when empty: another run's directory keeps it
        except OSError:
            break


def evaluate(argv: list[str]) -> int:
    from lmforge.evaluate import main as eval_main

    return eval_main(argv)


def plugins(argv: list[str]) -> int:
    """List what is installed, by distribution, under the config groups a user types."""
    from lmforge import PROJECT
    from lmforge.hydra_bridge import config_options
    from lmforge.registry import Provenance

    _, registry = load_plugins()
    by_dist: dict[tuple[str, str], dict] = {}

    def dist(p) -> dict:
        return by_dist.setdefault((p.distribution, p.version), {"components": {}, "options": {}})

    for p in registry.plugins:  # every distribution that loaded, even one whose only component conflicts
        dist(p)
    for group, entries in registry.components.items():
        for name, entry in sorted(entries.items()):
            dist(entry.provenance)["components"].setdefault(group, []).append(name)
    for c in registry.conflicts:
        dist(c.second)["components"].setdefault(c.group, []).append(f"{c.name} (CONFLICT: also registered by {c.first})")
    own = dist(Provenance(PROJECT, __version__, ""))
    own["options"] = config_options("lmforge.conf") | {"experiment": _experiments()}
    for package, p in registry.config_packages:
        dist(p)["options"] = config_options(package)
    broken = [{"distribution": b.provenance.distribution, "version": b.provenance.version, "entry_point": b.provenance.plugin, "error": b.error} for b in registry.broken]
    disabled = sorted({f"{p.distribution} {p.version}" for p in registry.disabled})
    status = 2 if registry.conflicts else 0
    if "--json" in argv:
        plugins_json = [{"distribution": d, "version": v, **info} for (d, v), info in sorted(by_dist.items())]
        print(json.dumps({"plugins": plugins_json, "broken": broken, "disabled": disabled, "conflicts": [str(c) for c in registry.conflicts]}, indent=2))
        return status
    for (name, version), info in sorted(by_dist.items(), key=lambda kv: (kv[0][0] != "lmforge", kv[0])):
        print(f"{name} {version}")
        for group, names in info["components"].items():
            print(f"  {group:<11} {', '.join(names)}")
        options = [f"{group}={option}" for group, names in info["options"].items() for option in names]
        if options:
            print(f"  {'options':<11} {', '.join(options)}")
    for b in broken:
        print(f"BROKEN {b['distribution']} {b['version']} (entry point {b['entry_point']!r}): {b['error']}")
    for d in disabled:
        print(f"disabled {d} (LMFORGE_DISABLE_PLUGIN_AUTOLOAD is set)")
    for conflict in registry.conflicts:
        print(f"lmforge: error: {conflict}", file=sys.stderr)
    return status


def _experiments() -> list[str]:
    import importlib.resources as resources

    return sorted(f.name[:-5] for f in resources.files("lmforge.experiments").iterdir() if f.name.endswith(".yaml"))


def _format_warning(message, category, filename, lineno, line=None, _default=warnings.formatwarning) -> str:
    """A broken plugin is reported as one line, without the Python source line of the warning."""
    from lmforge.loader import PluginLoadWarning

    if issubclass(category, PluginLoadWarning):
        return f"lmforge: warning: {message}\n"
    return _default(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    warnings.formatwarning = _format_warning
    try:
        _, registry = load_plugins()
    except LmforgeError as exc:
        print(f"lmforge: error: {exc}", file=sys.stderr)
        return 2
    commands = {n: c.function for n, c in registry.commands.items()} | {"train": train, "plugins": plugins, "eval": evaluate}
    if not argv or argv[0] in ("-h", "--help", "help"):
        extra = "".join(f"  {n:<19} {c.help} ({c.provenance})\n" for n, c in sorted(registry.commands.items()))
        print(USAGE.format(extra=extra))
        return 0
    if argv[0] == "--version":
        print(f"lmforge {__version__}")
        return 0
    if argv[0] not in commands and any(a.startswith(DDP_CHILD) for a in argv):
        argv = ["train", *argv]  # a DDP rank Lightning re-launched: the parent's overrides, without the sub-command
    if argv[0] not in commands:
        print(f"lmforge: unknown command {argv[0]!r}; choose one of: {', '.join(sorted(commands))}", file=sys.stderr)
        return 2
    try:
        return commands[argv[0]](argv[1:]) or 0
    except LmforgeError as exc:
        print(f"lmforge: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
