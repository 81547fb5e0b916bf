"""Run directories that no two live runs share.

- **A default run directory is claimed**, not just named: ``conf/train.yaml`` sets
  ``hydra.run.dir: ${lmforge.unique_dir:outputs/<date>/<time>}``, and the resolver makes
  the folder with ``os.mkdir``, which fails if it exists, trying ``<time>-1``, ``<time>-2``...
  until one is new. Two runs started in the same second (a job array) get two folders.
  The answer is cached per path in this process, because Hydra resolves the key more than
  once (for the job, and again when Lightning re-launches the DDP ranks).
- **Every run directory is locked** for the run's lifetime: an exclusive, non-blocking
  ``flock`` on ``.lmforge.lock`` inside it, which also holds the owner's pid. A second
  run given the same ``hydra.run.dir`` stops at once with ``RunDirBusy``. The kernel
  drops the lock when the process ends, however it ends, so a killed run never leaves
  its folder locked.
- **Ranks after the first** (DDP processes Lightning re-launches with the parent's
  ``hydra.run.dir``, or ranks torchrun or ``srun`` started) neither claim nor lock: they
  work in their rank 0's directory, which rank 0 holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from lmforge.errors import LmforgeError

RESOLVER = "lmforge.unique_dir"
LOCK = ".lmforge.lock"
# set by Lightning for the ranks it re-launches, by torchrun, and by srun for each task
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID")

_claimed: dict[str, str] = {}  # the path asked for -> the folder this process claimed for it
_held: dict[Path, int] = {}  # run directory -> the open lock file descriptor


class RunDirBusy(LmforgeError):
    """Another live run holds the run directory."""


def first_rank() -> bool:
    """Whether this process is rank 0, or no distributed launcher started it."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return False
    return True


# Hydra's flags that print or explain the config and run nothing: no folder is claimed for them
NO_RUN_FLAGS = ("--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help", "--shell-completion", "-sc")


def register(argv: list[str] = ()) -> None:
    """Register the ``lmforge.unique_dir`` resolver, before Hydra composes. Idempotent.

    For a command line that runs nothing (``--cfg all --resolve``) it only shows the path.
    """
    from omegaconf import OmegaConf

    runs = not any(a.split("=", 1)[0] in NO_RUN_FLAGS for a in argv)
    OmegaConf.register_new_resolver(RESOLVER, claim if runs else str, replace=True)


def claim(path: str) -> str:
    """Make a new folder at ``path``, or at ``path-1``, ``path-2``... if it is taken, lock it,
    and return it. Asked again for the same ``path``, return the same folder."""
    if path in _claimed:
        return _claimed[path]
    if not first_rank():
        return path  # re-launched ranks are given rank 0's folder; one started on its own gets the name unchanged
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    for n in range(10_000):
        candidate = f"{path}-{n}" if n else path
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        lock(Path(candidate))
        _claimed[path] = candidate
        return candidate
    raise RunDirBusy(f"{path}: 10,000 run directories of this name exist already; set hydra.run.dir=<another folder>")


def lock(run_dir: Path) -> None:
    """Hold ``run_dir`` for this process until it ends or ``release`` is called.

    Raises ``RunDirBusy``, naming the other run's pid and the fix, if a live run holds it.
    Ranks after the first share their rank 0's lock and take none.
    """
    run_dir = Path(run_dir).absolute()
    if run_dir in _held or not first_rank():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise RunDirBusy(
            f"run directory {run_dir} is in use by another lmforge run (pid {owner}): two runs in one folder would "
            f"mix their config, checkpoints and records. Give this run its own folder with hydra.run.dir=<another "
            f"folder>, or leave hydra.run.dir unset for a new one under outputs/"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[run_dir] = fd


def release(run_dir: Path) -> None:
    """Give up the lock ``lock`` took on ``run_dir``; the lock file stays, unlocked."""
    fd = _held.pop(Path(run_dir).absolute(), None)
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for the body: a sweep's jobs, run one after another in one process,
    each hold theirs only while they run."""
    lock(run_dir)
    try:
        yield
    finally:
        release(run_dir)


def lock_requested(argv: list[str]) -> None:
    """Lock a ``hydra.run.dir=`` given plainly on the command line before Hydra starts, so a
    second run refused for it writes nothing there, not even Hydra's ``.hydra/`` record."""
    if any(a.startswith("-") for a in argv):  # -m (the sweep's folders), --cfg, --help: no run directory
        return
    given = [a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")]
    if not given:
        return
    value = given[-1]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    if value and not any(c in value for c in "${}[]'\"\\,"):  # anything else is Hydra's grammar to resolve
        lock(Path(value))
