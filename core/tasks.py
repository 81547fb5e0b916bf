"""A task's examples: read, mapped, formatted and split. ``lmforge.tasks.load`` is the one way in.

``load(task)`` is what ``lmforge finetune`` and ``lmforge eval --task`` call::

    data = lmforge.tasks.load(task)          # task: a built lmforge.contracts.Task
    data.splits["train"], data["test"]       # lists of lmforge.contracts.Example
    data.skipped, data.notices               # what was left out, and why

It reads ``task.config.data`` (or the task's offline demo when that is ""), maps each
record's columns to the task's fields through ``task.config.fields``, gives each record an
id, formats it with ``task.format``, and puts it in train, validation or test by a hash of
its id (``task.config.split``), so that the same record lands in the same split on every
machine and whatever else the file holds. The data errors name the file, the line and
the mapping key to change.

Templates are rendered here too, for every task: ``render_fields`` for a Jinja template
over a record's fields whose target field marks the target segment, and
``render_chat`` for a chat template over OpenAI messages. Heavy readers (pyarrow,
datasets) and jinja2 are imported when used.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from lmforge.contracts import Example, Segment, Task
from lmforge.errors import ConfigError, DataError

SPLITS = ("train", "validation", "test")
MAX_NOTICES = 5  # notices of one kind shown in full; the rest are counted
JSON_LINES = (".jsonl", ".ndjson", ".json")
DELIMITED = {".csv": ",", ".tsv": "\t"}
PARQUET = (".parquet", ".pq")


@dataclass
class TaskData:
    """A task's examples by split, with what was skipped on the way.

    ``splits`` maps ``train``, ``validation`` and ``test`` to lists of ``Example`` (in the
    order of the source); ``data["test"]`` is ``data.splits["test"]``. ``skipped`` counts
    records left out, by reason (``malformed_json``, ``duplicate_id``, and the task's own
    ``skip_reason``: a preference pair's ``identical_replies``); ``notices`` holds
    one line per problem worth telling the user, already naming the file and line.
    ``labels`` is a classify task's sorted classes (from the training split), else [].
    ``source`` says what was read, for logs.
    """

    splits: dict[str, list[Example]]
    skipped: Counter = field(default_factory=Counter)
    notices: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    source: str = ""

    def __getitem__(self, split: str) -> list[Example]:
        return self.splits[split]

    def summary(self) -> str:
        """One line for the console: the split sizes and the skipped records."""
        sizes = ", ".join(f"{len(v):,} {k}" for k, v in self.splits.items())
        skipped = f"; skipped {', '.join(f'{n:,} {why}' for why, n in sorted(self.skipped.items()))}" if self.skipped else ""
        return f"{self.source}: {sizes}{skipped}"


def split_of(example_id: str, shares: list[float]) -> str:
    """The split of an id: a hash of the id placed on [0, 1), cut by the cumulative shares.

    It depends on the id alone, so adding records never moves the others between splits.
    """
    digest = hashlib.sha256(f"lmforge-split:{example_id}".encode()).digest()
    x = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, share in zip(SPLITS, shares):
        edge += share
        if x < edge:
            return name
    return next(name for name, share in reversed(list(zip(SPLITS, shares))) if share > 0)  # rounding at 1.0


def content_id(values: dict[str, Any]) -> str:
    """The id of a record without one: a hash of its task fields, as canonical JSON."""
    text = json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Reading ---------------------------------------------------------------------------------

def rows(data: str, skipped: Counter, notices: list[str]) -> Iterator[tuple[str, dict]]:
    """``(where, row)`` for each row of ``task.data``: ``where`` is ``file:line`` or ``file row N``.

    A malformed JSON line is counted in ``skipped["malformed_json"]`` with a notice, and
    skipped; everything else that cannot be read stops with an error naming ``task.data``.
    """
    if data.startswith("hf:"):
        yield from _datasets_rows(data[3:], data)
        return
    path = Path(data).expanduser()
    if path.is_dir():
        yield from _datasets_rows(str(path), data)
        return
    if not path.is_file():
        raise ConfigError(f"task.data={data}: no such file or folder; give a JSONL, CSV/TSV or Parquet file, a datasets folder, or hf:<name>")
    suffix = path.suffix.lower()
    if suffix in JSON_LINES:
        yield from _json_rows(path, skipped, notices)
    elif suffix in DELIMITED:
        yield from _delimited_rows(path, DELIMITED[suffix])
    elif suffix in PARQUET:
        yield from _parquet_rows(path)
    else:
        kinds = ", ".join(JSON_LINES + tuple(DELIMITED) + PARQUET)
        raise ConfigError(f"task.data={data}: unknown file type {suffix or '(none)'!r}; lmforge reads {kinds}, a datasets folder, or hf:<name>")


def _json_rows(path: Path, skipped: Counter, notices: list[str]) -> Iterator[tuple[str, dict]]:
    with open(path, encoding="utf-8") as f:
        head = f.read(1 << 16).lstrip()
        f.seek(0)
        if path.suffix.lower() == ".json" and head.startswith("["):  # a JSON array of objects
            try:
                items = json.load(f)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); task.data must be a JSON array of objects or JSON lines") from None
            for i, item in enumerate(items, 1):
                if not isinstance(item, dict):
                    raise DataError(f"{path}: item {i} is a {type(item).__name__}, not an object with the task's fields")
                yield f"{path} item {i}", item
            return
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"a {type(row).__name__}, not an object")
            except ValueError as exc:
                skipped["malformed_json"] += 1
                if skipped["malformed_json"] <= MAX_NOTICES:
                    notices.append(f"{path}:{lineno}: not a JSON object ({str(exc).splitlines()[0]}); line skipped")
                continue
            yield f"{path}:{lineno}", row


def _delimited_rows(path: Path, delimiter: str) -> Iterator[tuple[str, dict]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row:  # more cells than the header has columns
                raise DataError(f"{where}: {len(row) - 1 + len(row[None])} cells but the header names {len(reader.fieldnames)} columns; quote cells that hold a {'tab' if delimiter == chr(9) else 'comma'}")
            yield where, row


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            n += 1
            yield f"{path} row {n}", row


def _datasets_rows(name: str, data: str) -> Iterator[tuple[str, dict]]:
    """Every split of a ``datasets`` builder, in its order; the task re-splits by id."""
    import datasets

    try:
        loaded = datasets.load_dataset(name)
    except Exception as exc:  # datasets raises many kinds: missing, offline, bad builder
        raise ConfigError(f"task.data={data}: datasets could not load it ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); give a Hub name (online), a local data folder, or a file") from None
    parts = loaded.items() if isinstance(loaded, dict) else [("train", loaded)]
    for split, part in parts:
        names = {k: f.names for k, f in part.features.items() if isinstance(f, datasets.ClassLabel)}
        for i, row in enumerate(part, 1):
            for column, labels in names.items():
                if isinstance(row.get(column), int) and 0 <= row[column] < len(labels):
                    row[column] = labels[row[column]]
            yield f"{data} [{split}] row {i}", row


def records(task: Task, skipped: Counter, notices: list[str]) -> Iterator[tuple[str, dict]]:
    """``(where, record)``: each row mapped to the task's fields, with an ``id``.

    A record holds every column of its row, then the task's fields under their own names
    (``config.fields`` maps a field to the column holding it; by default the column of the
    same name), then ``id``: the mapped ``id`` column if there is one, else a hash of the
    task's fields. The demo's records already use the task's field names.
    """
    config = task.config
    mapping = {f: config.fields.get(f, f) for f in task.fields}
    unknown = sorted(set(config.fields) - set(task.fields) - {"id"})
    if unknown:
        raise ConfigError(f"task.fields.{unknown[0]}: task={task.name} has no field {unknown[0]!r}; its fields are {', '.join(task.fields)} (and id)")
    id_column = config.fields.get("id", "id")
    if config.data:
        source = rows(config.data, skipped, notices)
    else:
        source = ((f"the demo of task={task.name}, record {i}", r) for i, r in enumerate(task.demo(), 1))
    count = 0
    for where, row in source:
        if config.max_examples is not None and count >= config.max_examples:
            break
        values = {}
        for name, column in mapping.items():
            empty = isinstance(row.get(column), str) and not row[column].strip()
            if row.get(column) is None or (empty and name not in task.may_be_empty):
                columns = ", ".join(sorted(map(str, row))) or "none"
                raise DataError(
                    f"{where}: no value for the task's field {name!r} (column {column!r}, task.fields.{name}); "
                    f"the record's columns are {columns}. Map the field to a column: task.fields.{name}=<column>"
                )
            values[name] = row[column]
        if "id" in config.fields and row.get(id_column) is None:
            raise DataError(f"{where}: no value in column {id_column!r} for the id (task.fields.id); give every record one, or drop task.fields.id to hash the content")
        rid = str(row[id_column]) if row.get(id_column) is not None else content_id(values)
        count += 1
        yield where, {**row, **values, "id": rid}


# Loading ---------------------------------------------------------------------------------

def load(task: Task) -> TaskData:
    """Read, format and split ``task``'s examples; errors name the file, line and mapping key.

    Returns a ``TaskData``. Records whose id repeats an earlier one are skipped
    (``skipped["duplicate_id"]``), as are malformed JSON lines. Raises ``DataError`` for a
    missing field, a record ``task.format`` rejects, no examples at all, an empty training
    split (or another split with a share above 0), and, for a classify task, a label
    that only the validation or test split holds. Calls ``task.prepare(train)`` last.
    """
    skipped: Counter = Counter()
    notices: list[str] = []
    source = config_source(task)
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    seen: set[str] = set()
    first_seen: dict[tuple[str, str], str] = {}  # (split, label) -> where, for the label check
    for where, record in records(task, skipped, notices):
        if record["id"] in seen:
            skipped["duplicate_id"] += 1
            if skipped["duplicate_id"] <= MAX_NOTICES:
                notices.append(f"{where}: id {record['id']!r} repeats an earlier record's; record skipped")
            continue
        seen.add(record["id"])
        try:
            example = task.format(record)
        except (ValueError, TypeError, KeyError) as exc:
            raise DataError(f"{where}: {exc}") from None
        example.meta.setdefault("where", where)
        if reason := task.skip_reason(example):
            skipped[reason] += 1
            if skipped[reason] <= MAX_NOTICES:
                notices.append(f"{where}: {reason.replace('_', ' ')}; record skipped")
            continue
        split = split_of(example.id, task.config.split)
        splits[split].append(example)
        if task.type == "classify":
            first_seen.setdefault((split, example.label), where)
    if skipped["malformed_json"] > MAX_NOTICES:
        notices.append(f"... and {skipped['malformed_json'] - MAX_NOTICES:,} more malformed JSON lines skipped")
    total = sum(len(v) for v in splits.values())
    if total == 0:
        left = f" ({', '.join(f'{n:,} {why}' for why, n in skipped.items())} skipped)" if skipped else ""
        raise DataError(f"{source}: no examples{left}; task.data needs records with the fields {', '.join(task.fields)}")
    for name, share in zip(SPLITS, task.config.split):
        if share > 0 and not splits[name]:
            raise DataError(
                f"{source}: the {name} split is empty: {total:,} examples are too few for task.split={list(task.config.split)}; "
                f"add records, or raise the {name} share (or set it to 0)"
            )
    if task.type == "classify":
        train_labels = {e.label for e in splits["train"]}
        for (split, label), where in first_seen.items():
            if split != "train" and label not in train_labels:
                column = task.config.fields.get("label", "label")
                raise DataError(
                    f"{where}: label {label!r} (column {column!r}, task.fields.label) is only in the {split} split, "
                    f"so no model trained on this data can predict it; add training records of it, drop its records, or change task.split"
                )
    task.prepare(splits["train"])
    return TaskData(splits, skipped, notices, list(task.labels) if task.type == "classify" else [], source)


def config_source(task: Task) -> str:
    return f"task.data={task.config.data}" if task.config.data else f"the demo of task={task.name}"


# Templates -------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _environment(strict: bool):
    from jinja2 import StrictUndefined, Undefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # the chat template renders in the environment of `lmforge chat` (plugins/deploy/_chat.py),
    # so that a fine-tuned run is prompted exactly as it was trained
    return ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined if strict else Undefined)


@lru_cache(maxsize=256)
def compile_template(source: str, strict: bool = True):
    from jinja2 import TemplateError

    try:
        return _environment(strict).from_string(source)
    except TemplateError as exc:
        raise ConfigError(f"task.template is not a valid Jinja template ({exc}); fix it, or set task.template='' for the task's default") from None


def template_of(task: Task) -> str:
    """``task.config.template``, or when that is "" the ``template`` of the task's shipped option.

    A task's default template lives in its YAML option (``conf/task/<name>.yaml``), not in
    code: lmforge's own options first, then the config packages of installed plugins.
    """
    if task.config.template:
        return task.config.template
    found = shipped_template(task.name)
    if not found:
        raise ConfigError(f"task.template is empty and task={task.name} ships no task/{task.name}.yaml with a template: set task.template")
    return found


@lru_cache(maxsize=None)
def shipped_template(name: str) -> str:
    import importlib.resources as resources

    from omegaconf import OmegaConf

    from lmforge.loader import load_plugins

    _, registry = load_plugins()
    for package in ["lmforge.conf", *(p for p, _ in registry.config_packages)]:
        try:
            option = resources.files(package).joinpath("task", f"{name}.yaml")
            if option.is_file():
                node = OmegaConf.create(option.read_text(encoding="utf-8"))
                if node.get("name", name) == name and node.get("template"):
                    return str(node.template)
        except (ModuleNotFoundError, FileNotFoundError):
            continue
    return ""


def render_fields(template: str, record: dict[str, Any], target: str, extra: dict[str, Any] | None = None) -> list[Segment]:
    """Segments of a record rendered by a template in which the field ``target`` is the target.

    The text before ``{{ <target> }}`` is the prompt, the field's value the target segment,
    and any text after it one more segment without loss. The template must print the
    target field once, unchanged (no filter), so that the split is exact.
    """
    from jinja2 import TemplateError, UndefinedError

    compiled = compile_template(template)
    marker = "\x00\x1f\x00"  # no letters: a filter on the target (upper) keeps it and is caught below
    values = {**record, **(extra or {})}
    value = str(values[target])
    try:
        marked = compiled.render({**values, target: marker})
        full = compiled.render(values)
    except UndefinedError as exc:
        raise ValueError(f"the template uses a field this record lacks ({exc}); fix task.template or the data") from None
    except TemplateError as exc:
        raise ConfigError(f"task.template cannot be rendered ({exc})") from None
    if marked.count(marker) != 1:
        raise ConfigError(f"task.template must print {{{{ {target} }}}} exactly once, where the target goes (found {marked.count(marker)}); e.g. task.template='{{{{ ... }}}} {{{{ {target} }}}}'")
    before, after = marked.split(marker)
    if before + value + after != full:
        raise ConfigError(f"task.template must print {{{{ {target} }}}} unchanged (no filter, no condition on it), so that the target is exactly the record's {target}")
    segments = [Segment(before), Segment(value, target=True)]
    return segments + ([Segment(after)] if after else [])


def render_text(template: str, record: dict[str, Any], extra: dict[str, Any] | None = None) -> str:
    """A record rendered by a template with no target (a classification input)."""
    from jinja2 import TemplateError, UndefinedError

    try:
        return compile_template(template).render({**record, **(extra or {})})
    except UndefinedError as exc:
        raise ValueError(f"the template uses a field this record lacks ({exc}); fix task.template or the data") from None
    except TemplateError as exc:
        raise ConfigError(f"task.template cannot be rendered ({exc})") from None


def render_chat(template: str, messages: list[dict[str, str]]) -> list[Segment]:
    """Segments of a conversation rendered by a chat template, the assistant's turns as targets.

    The template is rendered the way ``lmforge chat`` renders it (``messages``,
    ``add_generation_prompt``; ``eos_token`` is ""). Each assistant turn's target is what
    the conversation up to that turn adds to the conversation before it with the
    generation prompt: the reply and whatever the template closes a turn with (an
    end-of-turn token), so that the model learns to stop.
    """
    from jinja2 import TemplateError

    compiled = compile_template(template, strict=False)

    def render(upto: int, prompt: bool) -> str:
        try:
            return compiled.render(messages=messages[:upto], add_generation_prompt=prompt, eos_token="")
        except TemplateError as exc:
            raise ConfigError(f"task.template cannot render this conversation ({exc})") from None

    segments, done = [], ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt, full = render(i, True), render(i + 1, False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise ConfigError(
                "task.template must render a conversation as the conversation before each assistant turn plus that turn: "
                "with add_generation_prompt it must end where the assistant's reply starts"
            )
        if prompt[len(done):]:
            segments.append(Segment(prompt[len(done):]))
        segments.append(Segment(full[len(prompt):], target=True))
        done = full
    rest = render(len(messages), False)[len(done):]
    return segments + ([Segment(rest)] if rest else [])


# Truncation ------------------------------------------------------------------------------

def keep_ends(ids: list, budget: int) -> list:
    """``ids`` in at most ``budget`` tokens: its head, and its last quarter of the budget
    (a prompt's cue: ``\nSummary: ``, a chat's last turn); the middle goes. How an overlong
    prompt is cut, in fine-tuning windows and when a run is prompted (``lmforge finetune``'s
    decoding, ``lmforge eval --task``), so that both cut it alike."""
    if len(ids) <= budget:
        return ids
    tail = budget // 4
    return ids[: budget - tail] + (ids[-tail:] if tail else [])
