"""End to end through real installs: lmforge's wheel and a third-party plugin in a fresh venv.

One session fixture builds lmforge's wheel, creates a virtual environment, installs the
wheel and ``tests/fixtures/lmforge-toyplugin`` into it with pip, and every test then runs
the venv's ``lmforge`` from an unrelated directory. This proves that the configs ship
inside the wheel and that ``pip install`` is all a plugin needs.

The venv sees this environment's third-party packages (torch, lightning, pytest) through
a ``.pth`` file instead of reinstalling them. Its own site-packages comes first on
``sys.path``, so the installed wheel shadows the editable lmforge of this environment.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import REPO, TINY
from lmforge.loader import DISABLE_AUTOLOAD_ENV

TOYPLUGIN = Path(__file__).resolve().parent / "fixtures" / "lmforge-toyplugin"

# Left out of the copy the wheel is built from. setuptools builds inside the source tree:
# building a copy keeps build/ and egg-info out of the working tree, and keeps a stale
# build/lib there from leaking deleted modules into the wheel.
NOT_SOURCE = {".git", "tests", "build", "dist", "outputs", "multirun", ".venv", ".pytest_cache"}

# TINY minus what is specific to collector=stdlib and model=transformer.
TOY_RUN = [o for o in TINY if not o.startswith(("collector.", "model."))] + [
    "model=toygru",
    "collector=alphabet",
    "model.hidden=32",
]


@dataclass
class Venv:
    python: Path
    bin: Path
    site_packages: Path
    wheel: Path
    toyplugin: Path  # the installed copy of the toy plugin's source, with its tests


def _run(*args, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _copy_source(src: Path, dst: Path, skip: set[str]) -> Path:
    """Copy a source tree, leaving out ``skip`` at its top and caches and egg-info anywhere."""

    def ignore(folder, names):
        top = skip if Path(folder) == src else set()
        return {n for n in names if n in top or n == "__pycache__" or n.endswith(".egg-info")}

    return Path(shutil.copytree(src, dst, ignore=ignore))


@pytest.fixture(scope="session")
def venv(tmp_path_factory) -> Venv:
    root = tmp_path_factory.mktemp("packaging")
    pip = ["-m", "pip", "--disable-pip-version-check", "--no-cache-dir", "--quiet"]
    src = _copy_source(REPO, root / "lmforge-src", NOT_SOURCE)
    _run(sys.executable, *pip, "wheel", src, "--no-deps", "--no-build-isolation", "--no-index", "-w", root / "dist", cwd=root)
    (wheel,) = (root / "dist").glob("lmforge-*.whl")

    _run(sys.executable, "-m", "venv", "--without-pip", root / "venv", cwd=root)
    bin_dir = root / "venv" / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root).stdout.strip())
    outer = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_outer_environment.pth").write_text("".join(f"{p}\n" for p in outer))

    # pip itself comes from the outer environment; --ignore-installed keeps it from
    # touching the editable lmforge it sees there.
    toyplugin = _copy_source(TOYPLUGIN, root / "lmforge-toyplugin", {"build", ".pytest_cache"})
    _run(python, *pip, "install", "--no-deps", "--no-index", "--ignore-installed", wheel, cwd=root)
    _run(python, *pip, "install", "--no-deps", "--no-index", "--ignore-installed", "--no-build-isolation", toyplugin, cwd=root)
    return Venv(python, bin_dir, site, wheel, toyplugin)


@pytest.fixture
def workdir(tmp_path) -> Path:
    """An unrelated directory to run from: nothing of the source tree is importable there."""
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


@pytest.fixture
def env(tmp_path) -> dict:
    """The subprocess environment: a fresh stage cache, and third-party autoload on."""
    full = {k: v for k, v in os.environ.items() if k not in (DISABLE_AUTOLOAD_ENV, "PYTHONPATH")}
    return full | {"LMFORGE_CACHE_DIR": str(tmp_path / "cache"), "PYTHONWARNINGS": "ignore"}


def train_losses(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [float(row["train/loss"]) for row in csv.DictReader(f) if row.get("train/loss")]


def test_wheel_ships_every_config_and_preset(venv):
    names = set(zipfile.ZipFile(venv.wheel).namelist())
    assert {"lmforge/conf/train.yaml", "lmforge/experiments/tiny.yaml"} <= names
    shipped = {f"lmforge/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    shipped |= {f"lmforge/experiments/{p.name}" for p in (REPO / "experiments").glob("*.yaml")}
    assert shipped <= names, f"missing from the wheel: {sorted(shipped - names)}"


def test_venv_imports_the_installed_wheel(venv, workdir, env):
    out = _run(venv.python, "-c", "import lmforge; print(lmforge.__file__)", cwd=workdir, env=env).stdout
    path = Path(out.strip()).resolve()
    assert path.is_relative_to(venv.site_packages.resolve())
    assert not path.is_relative_to(REPO)


def test_plugins_lists_builtins_and_the_installed_plugin(venv, workdir, env):
    text = _run(venv.bin / "lmforge", "plugins", cwd=workdir, env=env).stdout
    assert "lmforge 0.1.0" in text and "transformer" in text and "stdlib" in text
    assert "lmforge-toyplugin 0.1.0" in text
    toy = text.split("lmforge-toyplugin 0.1.0", 1)[1]
    for word in ("toygru", "alphabet", "reverse", "model=toygru", "collector=alphabet", "task=reverse"):
        assert word in toy, f"{word!r} missing from the toy plugin's listing:\n{text}"
    assert "BROKEN" not in text and "disabled" not in text

    listing = json.loads(_run(venv.bin / "lmforge", "plugins", "--json", cwd=workdir, env=env).stdout)
    dists = {p["distribution"]: p for p in listing["plugins"]}
    assert dists["lmforge-toyplugin"]["version"] == "0.1.0"
    assert dists["lmforge-toyplugin"]["components"] == {"model": ["toygru"], "collector": ["alphabet"], "task": ["reverse"]}
    assert dists["lmforge-toyplugin"]["options"] == {"collector": ["alphabet"], "model": ["toygru"], "task": ["reverse"]}
    assert "transformer" in dists["lmforge"]["components"]["model"]
    assert listing["broken"] == [] and listing["disabled"] == []


def test_installed_lmforge_trains_the_default_run(venv, workdir, env):
    run_dir = workdir / "run"
    _run(venv.bin / "lmforge", "train", *TINY, f"hydra.run.dir={run_dir}", cwd=workdir, env=env)
    for name in ("summary.json", "metrics.csv", "tokenizer.json", "manifest.json", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), f"{name} missing from {sorted(p.name for p in run_dir.iterdir())}"
    losses = train_losses(run_dir)
    assert len(losses) >= 2 and losses[0] > losses[-1], losses


def test_installed_plugin_trains_with_its_own_config_options(venv, workdir, env):
    run_dir = workdir / "run"
    _run(venv.bin / "lmforge", "train", *TOY_RUN, f"hydra.run.dir={run_dir}", cwd=workdir, env=env)
    assert (run_dir / "summary.json").is_file()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["plugins"]["lmforge-toyplugin"] == "0.1.0"
    assert manifest["components"]["model"] == "toygru" and manifest["components"]["collector"] == "alphabet"
    losses = train_losses(run_dir)
    assert len(losses) >= 2 and losses[0] > losses[-1], losses


def test_plugin_runs_the_contract_suites_in_its_own_ci(venv, workdir, env):
    """lmforge.testing works for a third party: the toy plugin's suite passes against the installed package."""
    proc = _run(venv.python, "-m", "pytest", venv.toyplugin / "tests", "-q", "-p", "no:cacheprovider", cwd=workdir, env=env)
    assert " passed" in proc.stdout and "failed" not in proc.stdout and "error" not in proc.stdout
