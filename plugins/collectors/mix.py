"""``collector=mix``: a weighted mixture of other collectors.

Each source is ``{collector: {name: ..., ...options}, weight: 0.7, max_bytes: null,
max_documents: null}`` (and optionally ``label``). The sub-collectors are checked
against their own schemas when the run config is checked, so a typo in a source fails
before any work starts.

The interleave is a deterministic, byte-weighted round-robin: the next document comes
from the source that has sent the fewest bytes relative to its weight (ties go to the
earlier source). The realized byte proportions therefore track the weights to within
one document, for as long as every source has documents. A source that runs out or
reaches its budget drops out and the others go on, sharing the rest by their weights.
Budgets are never exceeded: the document that would pass a source's ``max_bytes`` ends
that source, and the one that would pass the mixture's ``max_bytes`` ends the mixture.

Each source's documents keep their ``source`` (the sub-collector's name) and gain
``meta["mix"]``, the source's label: the collector name, or ``<name>.<index>`` when
several sources use the same collector (their ids are then prefixed ``<label>:`` so
they stay unique). Each source works in ``workdir/<label>``.

Stats, for the collection report:

- ``<label>/<key>``: each sub-collector's own counts (``forum/skipped:deleted``);
- ``mix:bytes:<label>`` and ``mix:documents:<label>``: what each source contributed.
  The realized proportions are ``mix:bytes:<label>`` over the sum of ``mix:bytes:*``;
- ``mix:ran_out:<label>``: 1 when a source ended before its budget, the one case where
  the others had to make up its share.

These count what the mix sent, before the stage runner drops exact duplicates.

A mixture of deterministic collectors is itself deterministic, and an interrupted
collection is replayed. One that includes a resumable collector (a crawler) is
resumable too: at each checkpoint it saves what every source has sent and checkpoints
the resumable sources; a rerun replays the deterministic sources past what they sent,
lets the resumable ones continue, and goes on with the same interleave.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, List, Optional

from lmforge import hookimpl
from lmforge.contracts import Collector, Document
from lmforge.engine.config import check_count, shown
from lmforge.errors import ConfigError

STATE = "mix-state.json"
SOURCE_KEYS = ("collector", "weight", "max_bytes", "max_documents", "label")


@dataclass
class MixConfig:
    sources: List[Any] = field(default_factory=list)
    max_bytes: Optional[int] = None
    max_documents: Optional[int] = None

    def __post_init__(self) -> None:
        # builds nothing: checks every source and its collector's options. An empty list is
        # allowed here (the default must build) and refused when collecting.
        parse_sources(self.sources)
        check_count(self, "max_bytes", 1, 100_000_000, optional=True)
        check_count(self, "max_documents", 1, 10_000, optional=True)


@dataclass
class Source:
    label: str
    entry: Any  # the registry entry of the sub-collector
    config: Any  # an instance of its Config
    weight: float
    max_bytes: Optional[int]
    max_documents: Optional[int]


def parse_sources(sources: list) -> list[Source]:
    """Check the ``sources`` list and resolve each collector against its schema.

    Errors are ``ConfigError``s naming the full key (``collector.sources[1].weight``), since
    the mix also calls this outside the config check.
    """
    from lmforge.hydra_bridge import component_config

    parsed = []
    for i, item in enumerate(sources):
        key = f"collector.sources[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("collector"), dict):
            raise ConfigError(f"{key}: each source is {{collector: {{name: ..., ...options}}, weight: 1.0}}, got {item!r}")
        if unknown := sorted(set(item) - set(SOURCE_KEYS)):
            raise ConfigError(f"{key}: unknown key(s) {', '.join(unknown)}; a source takes {', '.join(SOURCE_KEYS)}")
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < math.inf:
            raise ConfigError(
                f"{key}.weight={shown(weight)}: must be a finite number above 0 (remove the source to leave it out); e.g. {key}.weight=1.0"
            )
        for budget, example in (("max_bytes", 10_000_000), ("max_documents", 10_000)):
            value = item.get(budget)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{key}.{budget}={shown(value)}: must be a whole number of at least 1, or null; e.g. {key}.{budget}={example}")
        label = item.get("label")
        if label is not None and not (isinstance(label, str) and re.fullmatch(r"\w[\w.-]*", label)):
            # the label names the source's work folder and prefixes its ids
            raise ConfigError(f"{key}.label={shown(label)}: must be a name of letters, digits, '_', '-' and '.'; e.g. {key}.label=code")
        try:
            entry, config = component_config("collector", item["collector"], f"{key}.collector")
        except ConfigError as exc:
            if f"{key}.collector" in str(exc):
                raise
            if str(exc).startswith("collector."):  # a sub-collector's own ConfigError names its keys from the top
                raise ConfigError(re.sub(r"(?<![\w./\[])collector\.", f"{key}.collector.", str(exc))) from None
            raise ConfigError(f"{key}.collector.name: {exc}") from None
        parsed.append(Source(item.get("label") or entry.cls.name, entry, config, float(weight), item.get("max_bytes"), item.get("max_documents")))
    names = Counter(s.label for s in parsed)
    for i, source in enumerate(parsed):
        if names[source.label] > 1:
            if source.label != source.entry.cls.name:
                raise ConfigError(f"collector.sources[{i}].label={source.label!r} is used by several sources; labels must be unique")
            source.label = f"{source.label}.{i}"
    return parsed


class Mix(Collector):
    name = "mix"
    Config = MixConfig

    def __init__(self, config: MixConfig | None = None) -> None:
        super().__init__(config)
        self.resumable = any(s.entry.cls.resumable for s in parse_sources(self.config.sources))
        self._save = None  # set while documents() runs, for checkpoint()

    def checkpoint(self) -> None:
        if self._save is not None:
            self._save()

    def sources(self) -> list[tuple[Source, Collector]]:
        if not self.config.sources:
            raise ConfigError(
                "collector.sources is empty: list the collectors to mix, as "
                "collector.sources=[{collector:{name:stdlib},weight:0.7},{collector:{name:forum,paths:[/data/posts.jsonl]},weight:0.3}]"
            )
        return [(s, s.entry.cls(s.config)) for s in parse_sources(self.config.sources)]

    def cache_token(self) -> str:
        # the sub-collectors' own tokens and versions: the mix's config names only them
        if not self.config.sources:
            return ""
        return "|".join(
            f"{s.label}={s.entry.provenance.distribution}-{s.entry.provenance.version}:{c.cache_token()}" for s, c in self.sources()
        )

    def documents(self, workdir: Path, stats: Counter) -> Iterator[Document]:
        pairs = self.sources()
        labels = [s.label for s, _ in pairs]
        repeated = Counter(s.entry.cls.name for s, _ in pairs)
        counters = [Counter() for _ in pairs]
        sent_bytes = [0] * len(pairs)
        sent_docs = [0] * len(pairs)
        ended = [False] * len(pairs)
        state_path = Path(workdir) / STATE
        saved = json.loads(state_path.read_text()) if self.resumable and state_path.exists() else {}
        for i, label in enumerate(labels):
            if label in saved:
                sent_bytes[i], sent_docs[i], ended[i] = saved[label]["bytes"], saved[label]["documents"], saved[label]["ended"]
                if saved[label].get("ran_out"):
                    stats[f"mix:ran_out:{label}"] = 1
        streams = [c.documents(Path(workdir) / _folder(s.label), counters[i]) for i, (s, c) in enumerate(pairs)]
        active = [i for i in range(len(pairs)) if not ended[i]]
        total = sum(sent_bytes)

        def end(i: int, ran_out: bool = False) -> None:
            active.remove(i)
            ended[i] = True
            streams[i].close()  # let the sub-collector release files and connections
            if ran_out:
                stats[f"mix:ran_out:{labels[i]}"] = 1

        merged = [Counter() for _ in pairs]

        def merge() -> None:
            """Bring the counts up to date: the runner stores them with every shard it writes."""
            for i, ((source, collector), counter) in enumerate(zip(pairs, counters)):
                for key, value in counter.items():
                    # a replayed source recounts from the start; a resumed one counts only what is new
                    if collector.resumable:
                        stats[f"{source.label}/{key}"] += value - merged[i][key]
                        merged[i][key] = value
                    else:
                        stats[f"{source.label}/{key}"] = value
                stats[f"mix:bytes:{source.label}"] = sent_bytes[i]
                stats[f"mix:documents:{source.label}"] = sent_docs[i]

        def save() -> None:
            from lmforge.files import atomic_write_json

            for _, collector in pairs:
                if collector.resumable:
                    collector.checkpoint()
            atomic_write_json(state_path, {
                label: {"bytes": b, "documents": d, "ended": e, "ran_out": bool(stats[f"mix:ran_out:{label}"])}
                for label, b, d, e in zip(labels, sent_bytes, sent_docs, ended)
            })

        if self.resumable:
            self._save = save
            for i in list(active):  # replay what the deterministic sources sent before
                if not pairs[i][1].resumable:
                    for _ in range(sent_docs[i]):
                        if next(streams[i], None) is None:
                            end(i, ran_out=True)
                            break
        try:
            while active:
                i = min(active, key=lambda j: (sent_bytes[j] / pairs[j][0].weight, j))
                source = pairs[i][0]
                if source.max_documents is not None and sent_docs[i] >= source.max_documents:
                    end(i)
                    continue
                try:
                    doc = next(streams[i])
                except StopIteration:
                    end(i, ran_out=True)
                    continue
                size = len(doc.text.encode("utf-8"))
                if source.max_bytes is not None and sent_bytes[i] + size > source.max_bytes:
                    end(i)
                    continue
                if self.config.max_bytes is not None and total + size > self.config.max_bytes:
                    break
                sent_bytes[i] += size
                sent_docs[i] += 1
                total += size
                if repeated[source.entry.cls.name] > 1:
                    doc.id = f"{source.label}:{doc.id}"
                doc.meta = {**doc.meta, "mix": source.label}
                merge()
                yield doc
                if self.config.max_documents is not None and sum(sent_docs) >= self.config.max_documents:
                    break
        finally:
            self._save = None
            for stream in streams:
                stream.close()
            merge()


def _folder(label: str) -> str:
    return re.sub(r"[^\w.-]", "_", label)


@hookimpl
def register_collectors(register):
    register(Mix)
