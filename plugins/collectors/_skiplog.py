"""``skipped.jsonl``: the inputs a collector skipped, one JSON object a line, with the reason.

Counts say how many files were skipped; this file says which. A collector writes it in
its ``workdir``, from scratch on every (re)play, and the collect stage gathers it into
the stage folder next to ``report.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

FILE = "skipped.jsonl"


class SkipLog:
    """Appends ``{"path", "reason", "detail"}`` lines to ``<workdir>/skipped.jsonl``.

    The file is opened on the first skip and truncated then, since a replayed collector
    skips the same files again; use it as a context manager so that it is closed.
    """

    def __init__(self, workdir: Path) -> None:
        self.path = Path(workdir) / FILE
        self._file = None

    def add(self, path: str, reason: str, detail: str = "") -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8")
        record = {"path": path, "reason": reason, **({"detail": detail} if detail else {})}
        self._file.write(json.dumps(record) + "\n")  # ASCII: a name that is not UTF-8 survives as escapes

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "SkipLog":
        self.path.unlink(missing_ok=True)  # a replay that now skips nothing leaves no stale list
        return self

    def __exit__(self, *exc) -> None:
        self.close()
