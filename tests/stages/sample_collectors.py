"""Small collectors for the stage tests: numbered documents, given texts, crashes on cue."""

from __future__ import annotations

from lmforge.contracts import Collector, Document


class Numbers(Collector):
    """Yields numbered documents and can be told to crash after some of them."""

    name = "numbers"

    def __init__(self, n: int, crash_after: int | None = None):
        super().__init__()
        self.n, self.crash_after, self.produced = n, crash_after, 0

    def documents(self, workdir, stats):
        for i in range(self.n):
            if self.crash_after is not None and i == self.crash_after:
                raise KeyboardInterrupt("killed")
            self.produced += 1
            yield Document(id=f"n{i}", text=f"document {i} " * 50, source=self.name)


class Echo(Collector):
    """Yields the given texts, so duplicates can be staged."""

    name = "echo"

    def __init__(self, texts):
        super().__init__()
        self.texts = texts

    def documents(self, workdir, stats):
        for i, text in enumerate(self.texts):
            yield Document(id=f"e{i}", text=text, source="echo" if i % 2 else "other")
