"""``collector=hf``: a Hugging Face dataset, from the Hub or from local files.

``path`` names a Hub dataset (``HuggingFaceFW/fineweb-edu``), read with
``streaming=True`` so that nothing is downloaded up front, or one of the packaged
builders ``parquet``, ``json``, ``csv`` or ``text`` reading ``data_files``. With only
``data_files`` set, the builder follows from their extension. ``datasets`` is imported
only when documents are read.

Rows come in the dataset's own order (no shuffling), so the corpus is the same for the
same files, or for the same Hub ``revision``: pin one, since an unpinned Hub dataset may
change between runs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional

from lmforge import hookimpl
from lmforge.contracts import Collector, Document
from lmforge.engine.config import bad_value, check_count
from lmforge.errors import ConfigError

BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".txt": "text"}
COMPRESSED = (".gz", ".zst", ".bz2", ".xz")


def builder_for(data_file: str) -> str | None:
    name = data_file.lower()
    for suffix in COMPRESSED:
        name = name.removesuffix(suffix)
    return next((b for ext, b in BUILDERS.items() if name.endswith(ext)), None)


@dataclass
class HfConfig:
    path: Optional[str] = None
    subset: Optional[str] = None  # `name` in load_dataset; `name` here selects the collector
    split: str = "train"
    data_files: List[str] = field(default_factory=list)
    text_field: str = "text"
    id_field: Optional[str] = None
    streaming: bool = True
    max_documents: Optional[int] = None
    revision: Optional[str] = None

    def __post_init__(self) -> None:
        # only what was set explicitly is checked: the defaults must compose and build
        examples = {"path": "HuggingFaceFW/fineweb-edu", "subset": "sample-10BT", "id_field": "id", "revision": "main"}
        for key, example in examples.items():
            if (value := getattr(self, key)) is not None and not value.strip():
                raise bad_value(key, value, "must not be empty; null leaves it out", example)
        for key, example in (("split", "train"), ("text_field", "text")):
            if not getattr(self, key).strip():
                raise bad_value(key, getattr(self, key), "must not be empty", example)
        if any(not f.strip() for f in self.data_files):
            raise bad_value("data_files", self.data_files, "an entry is empty; each is a local file or glob", ["/data/part-0.parquet"])
        if self.path in set(BUILDERS.values()) and not self.data_files:
            raise ValueError(f"path={self.path} is a builder for local files: list them in data_files; e.g. data_files=[/data/part-0.{self.path}]")
        if self.data_files and self.path is None and len({builder_for(f) for f in self.data_files}) != 1:
            raise bad_value(
                "data_files", self.data_files,
                f"cannot tell one builder from their extensions ({', '.join(BUILDERS)}); set path to parquet, json, csv or text",
                ["/data/part-0.parquet", "/data/part-1.parquet"],
            )  # fmt: skip
        check_count(self, "max_documents", 1, 10_000, optional=True)


class Hf(Collector):
    name = "hf"
    Config = HfConfig

    @property
    def builder(self) -> str | None:
        """The dataset path handed to ``load_dataset``: a Hub name or a packaged builder."""
        if self.config.path is not None:
            return self.config.path
        return builder_for(self.config.data_files[0]) if self.config.data_files else None

    @property
    def is_local(self) -> bool:
        return bool(self.config.data_files)

    def cache_token(self) -> str:
        # local files: their sizes and modification times; the Hub: only a pinned revision
        import glob

        parts = []
        for pattern in self.config.data_files:
            for name in sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True)):
                st = Path(name).stat()
                parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
        return ";".join(parts)

    def _load(self):
        import datasets

        if self.builder is None:
            raise ConfigError(
                "collector.path is not set: name a Hub dataset (collector.path=HuggingFaceFW/fineweb-edu) "
                "or list local files (collector.data_files=[/data/part-0.parquet])"
            )
        kwargs = {}
        if self.is_local:
            files = [str(Path(f).expanduser()) for f in self.config.data_files]
            if missing := [f for f in files if not any(c in f for c in "*?[") and not Path(f).exists()]:
                raise ConfigError(f"collector.data_files: {', '.join(missing)} does not exist")
            kwargs["data_files"] = {self.config.split: files}  # a plain list would always be "train"
        try:
            return datasets.load_dataset(
                self.builder,
                self.config.subset,
                split=self.config.split,
                streaming=self.config.streaming,
                revision=self.config.revision,
                **kwargs,
            )
        except (FileNotFoundError, ValueError) as exc:
            where = "collector.data_files" if self.is_local else "collector.path, collector.subset and collector.split"
            raise ConfigError(f"collector=hf could not open {self.builder!r} split {self.config.split!r}: {exc}. Check {where}.") from None

    def documents(self, workdir: Path, stats: Counter) -> Iterator[Document]:
        config = self.config
        dataset = self._load()
        label = "/".join(p for p in (self.builder, config.subset, config.split) if p)
        uri = f"https://huggingface.co/datasets/{config.path}" if not self.is_local else ""
        if self.is_local and len(config.data_files) == 1 and Path(config.data_files[0]).is_file():
            uri = Path(config.data_files[0]).expanduser().resolve().as_uri()
        license = str(getattr(getattr(dataset, "info", None), "license", "") or "")
        produced = 0
        for row_number, row in enumerate(dataset):
            if config.text_field not in row:
                raise ConfigError(f"collector.text_field={config.text_field!r} is not a column of {label}; its columns are {', '.join(row)}")
            text = row[config.text_field]
            if not isinstance(text, str):
                stats["skipped:not_text"] += 1
                continue
            if not text.strip():
                stats["skipped:empty"] += 1
                continue
            if config.id_field is not None:
                if row.get(config.id_field) is None:
                    raise ConfigError(f"collector.id_field={config.id_field!r} is missing in row {row_number} of {label}; its columns are {', '.join(row)}")
                key = str(row[config.id_field])
            else:
                key = str(row_number)
            produced += 1
            yield Document(
                id=f"{self.name}/{label}/{key}",
                text=text,
                source=self.name,
                uri=uri,
                license=license,
                meta={"dataset": self.builder, "subset": config.subset, "split": config.split, "row": row_number},
            )
            if produced == config.max_documents:
                return  # before reading a row that would not be used


@hookimpl
def register_collectors(register):
    register(Hf)
