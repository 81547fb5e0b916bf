"""The stage cache: each stage's output lives under a key derived from what made it.

A stage's key hashes its own config, the versions of the plugins involved, any extra
inputs a component declares (``cache_token``), and the keys of its upstream stages. A
rerun that changes only ``model=`` or ``optimizer.lr=`` therefore finds the collected
and tokenized data under the same keys and reuses them.

Outputs are written into ``<stage>/<key>.partial/`` and published by one atomic rename
to ``<stage>/<key>/``. Pieces inside the partial folder (shards) are themselves written
with ``lmforge.files.atomic_write``, so a stage that crashes reruns from its last
complete piece. A file lock keeps two concurrent runs (a parallel sweep) from building the same
stage at once: the second waits and then reuses the first one's output. A published stage
is read without the lock, so a shared, read-only team cache serves every stage it holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from lmforge.errors import LmforgeError
from lmforge.files import fsync_dir, write_fault

log = logging.getLogger("lmforge")


def stage_key(stage: str, config: Any, versions: dict[str, str], upstream: list[str], token: str = "") -> str:
    payload = json.dumps(
        {"stage": stage, "config": config, "versions": versions, "upstream": upstream, "token": token},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class Stage:
    """One stage's place in the cache.

    ``dir`` is where the output is read (a hit) or written (a miss: the partial folder,
    which becomes the final folder once the ``with`` block exits cleanly).
    """

    name: str
    key: str
    dir: Path
    hit: bool

    def report(self) -> dict:
        path = self.dir / "report.json"
        return json.loads(path.read_text()) if path.exists() else {}


class CacheError(LmforgeError):
    """The stage cache cannot be written where a stage must be built; names the folder and the key."""


class StageCache:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    @contextlib.contextmanager
    def open(self, stage: str, key: str) -> Iterator[Stage]:
        """Yield the stage; build it in the body when ``hit`` is False.

        On a clean exit of the body the partial folder is published atomically. On an
        exception it is kept, so the next run resumes from the pieces already finished.
        """
        final = self.path(stage, key)
        if final.is_dir():  # published by one rename, so complete: read without the lock, as a read-only cache allows
            log.info("%s: reusing cached stage %s (%s)", stage, key, final)
            yield Stage(stage, key, final, hit=True)
            return
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            lock = open(final.parent / f"{key}.lock", "w")
        except OSError as exc:
            if message := write_fault(exc, "cache_dir (or $LMFORGE_CACHE_DIR)"):
                raise CacheError(f"the stage cache {self.root} cannot build stage {stage}: {message}") from None
            raise
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if final.is_dir():  # another run built it while this one waited
                log.info("%s: reusing cached stage %s (%s)", stage, key, final)
                yield Stage(stage, key, final, hit=True)
                return
            partial = final.with_name(f"{key}.partial")
            resumed = partial.is_dir() and any(partial.iterdir())
            partial.mkdir(exist_ok=True)
            log.info("%s: %s stage %s", stage, "resuming" if resumed else "building", key)
            built = Stage(stage, key, partial, hit=False)
            yield built
            shutil.rmtree(partial / "_work", ignore_errors=True)
            os.replace(partial, final)
            fsync_dir(final.parent)
            built.dir = final
