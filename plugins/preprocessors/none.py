"""``preprocess=none``'s step: passes documents through unchanged.

The ``none`` preset is an empty pipeline; this step exists so a pipeline can name an
explicit no-op (handy in sweeps: ``preprocess.steps=[{name:none}]``).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Iterator

from lmforge import hookimpl
from lmforge.contracts import Document, Preprocessor


class Identity(Preprocessor):
    name = "none"

    def process(self, docs: Iterable[Document], stats: Counter) -> Iterator[Document]:
        yield from docs


@hookimpl
def register_preprocessors(register):
    register(Identity)
