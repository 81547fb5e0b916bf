"""A data stage stopped by a signal ends with one line, and keeps its finished shards.

Each stage writes its pieces atomically into the cache's partial folder, so a rerun of
the same command resumes from them: SIGINT (Ctrl-C) or SIGTERM during a stage prints
which stage stopped and that, and exits 130 or 143, with no traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Iterator

from lmforge.errors import ConfigError
from lmforge.files import write_fault

log = logging.getLogger("lmforge")


@contextlib.contextmanager
def data_stage(name: str, cache_dir: str) -> Iterator[None]:
    """Around one data stage: SIGINT or SIGTERM stops it with one line (its finished shards
    stay in the cache, and a rerun resumes from them), and a cache that cannot be written
    names ``cache_dir``."""
    stopped: list[int] = []

    main_pid = os.getpid()

    def on_sigterm(signum, frame) -> None:
        if os.getpid() != main_pid:  # a forked worker inherited this handler: it just ends, its parent reports
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        stopped.append(signum)
        raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main else None
    try:
        yield
    except KeyboardInterrupt:
        signum = stopped[0] if stopped else signal.SIGINT
        log.error(
            "%s stage stopped by %s: its finished shards are kept in the stage cache (%s); rerun the same command "
            "to resume from them", name, signal.Signals(signum).name, cache_dir,
        )
        raise SystemExit(128 + signum) from None
    except OSError as exc:
        if message := write_fault(exc, "cache_dir (or $LMFORGE_CACHE_DIR)"):
            raise ConfigError(f"{name} stage: {message}") from None
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
