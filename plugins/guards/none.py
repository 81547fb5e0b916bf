"""``guard=none``: every text is allowed; the default where no guard is chosen."""

from __future__ import annotations

from lmforge import hookimpl
from lmforge.contracts import Guard, Scanner, Verdict


class _Passthrough(Scanner):
    def feed(self, chunk: str) -> tuple[str, Verdict]:
        return chunk, self.verdict

    def finish(self) -> tuple[str, Verdict]:
        return "", self.verdict


class NoGuard(Guard):
    name = "none"

    def check(self, text: str) -> Verdict:
        return Verdict()

    def scanner(self) -> Scanner:
        return _Passthrough(self)


@hookimpl
def register_guards(register):
    register(NoGuard)
