"""What a run records about itself: versions, cache keys, data statistics, git commit."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from lmforge import __version__
from lmforge.loader import load_plugins


def plugin_versions() -> dict[str, str]:
    """Every distribution that registered plugins, with its version."""
    return {p.distribution: p.version for p in load_plugins()[1].plugins}


def git_commit(folder: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def manifest(*, seed: int, stages: dict[str, str], data: dict, launch_dir: Path, components: dict) -> dict:
    import lightning
    import torch

    registry = load_plugins()[1]
    return {
        "lmforge": __version__,
        "plugins": plugin_versions(),
        # installed plugins that failed to load during this run: what it could not have used
        "broken": [{"distribution": b.provenance.distribution, "version": b.provenance.version, "error": b.error} for b in registry.broken],
        "components": components,
        "stages": stages,
        "data": data,
        "seed": seed,
        "git_commit": git_commit(launch_dir),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
    }
