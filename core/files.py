"""Durable writes: every file lmforge writes for keeps goes through one of these.

``atomic_write`` writes a temporary file beside the target, fsyncs it, renames it over
the target and fsyncs the directory, so a reader (or a run killed mid-write) sees the
old file or the new one, never half of one, and the rename survives a power cut.
``atomic_path`` does the same for a writer that needs a path rather than an open file
(an SQLite database).
``append_line`` adds one whole line to a log-like file (sweep records, pruning values)
and fsyncs it. ``remove_stale_temps`` clears the temporary files of writers that died
mid-write; ``write_fault`` turns a failed write into a message naming the key to change.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Union

Payload = Union[bytes, str, Callable[[BinaryIO], None]]


def temp_name(path: Path) -> Path:
    """The temporary file ``atomic_write`` uses for ``path`` in this process."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temps(folder: Path | str) -> list[Path]:
    """Remove the ``temp_name`` files in ``folder`` whose writing process is gone; returns them.

    A process killed mid-write (kill -9, a lost node) leaves its temporary file, as large
    as what it was writing; a live writer's file is left alone.
    """
    removed = []
    for path in Path(folder).glob(".*.tmp-*"):
        match = re.fullmatch(r"\..+\.tmp-(\d+)", path.name)
        if match and int(match[1]) != os.getpid() and not _alive(int(match[1])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# a write that fails for one of these is the user's to fix: a folder, not a bug
WRITE_FAULTS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a file is in the way of a folder",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
}


def write_fault(exc: BaseException, key: str) -> str | None:
    """``exc`` as one line naming the path and the config ``key`` that chose it, when it is
    a folder that cannot be written (permissions, a read-only or full disk); else None."""
    if not isinstance(exc, OSError) or exc.errno not in WRITE_FAULTS:
        return None
    return f"cannot write {exc.filename or 'to it'} ({WRITE_FAULTS[exc.errno]}): set {key} to a folder you can write"


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path | str, data: Payload) -> None:
    """Write ``data`` to ``path`` atomically and durably.

    ``data`` is bytes, text (written as UTF-8), or a function that writes into the open
    binary file it is given (``torch.save``, ``pyarrow.parquet.write_table``, ``np.savez``).
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to build ``path`` at; publish it like ``atomic_write`` on a clean exit.

    For writers that open the file themselves (``sqlite3.connect``). The file must be closed
    when the block ends. On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write_json(path: Path | str, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def append_line(path: Path | str, line: str) -> None:
    """Append ``line`` (a newline is added) in one write, then fsync: no reader sees half of it."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
        f.flush()
        os.fsync(f.fileno())
