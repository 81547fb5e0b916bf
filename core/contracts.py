"""The contracts every component kind fulfils.

A component is a class that a plugin hands to a registration hook (see
``lmforge.hookspecs``). Each class carries three things:

``name``
    The registered name. It is also the file name of the plugin module and the name of
    the config option (``plugins/models/transformer.py`` registers ``transformer``,
    configured by ``conf/model/transformer.yaml`` and selected as ``model=transformer``).
``Config``
    A dataclass: the typed schema of the component's config node. Its fields are the
    keys of the YAML option, with their types and defaults. A key that is not a field,
    or a value of the wrong type, fails before any work starts.
``__init__(config)``
    The component is built from an instance of its own ``Config`` and nothing else:
    never from the whole run config. Runtime inputs (the vocabulary size, a tokenizer)
    are passed to the methods that need them.

Importing a component's module must be cheap: keep torch, spaCy and other heavy
imports inside the methods that use them, so that discovery and ``lmforge plugins``
stay fast.

This module imports nothing heavy; tensor types appear only in docstrings.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator, List, Optional

if TYPE_CHECKING:
    import torch


@dataclass
class Document:
    """One document as it flows from a collector through preprocessing to the tokenizer.

    ``id`` is stable across runs for the same input (a path, a URL, a post id), so that
    the train/validation split, deduplication and resume are deterministic.
    """

    id: str
    text: str
    source: str  # the collector that produced it
    uri: str = ""  # where it came from: file://, https://, git commit path
    license: str = ""  # SPDX identifier or free text, "" when unknown
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable extras


@dataclass
class NoConfig:
    """Schema for components that take no options."""


class Component:
    """Base of every component kind. Subclass one of the kinds below, not this."""

    kind: ClassVar[str]
    name: ClassVar[str]
    Config: ClassVar[type] = NoConfig

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    def cache_token(self) -> str:
        """Inputs outside the config that change this component's output.

        The stage cache key already covers the config and the plugin's version. Return
        anything else that matters, such as the Python version for a collector that reads
        the standard library, or a data file's modification time. The default is none.
        """
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


class Collector(Component):
    """Produces documents: the first stage of every run.

    Contract:

    - ``documents`` is a generator. It must stream: yield documents as they are read and
      never build the whole corpus in memory, so that a collector can produce millions.
    - Iteration order is deterministic for the same config and ``cache_token``. The stage
      runner resumes an interrupted collection by replaying the stream and skipping the
      documents it already stored, which relies on this order.
    - A collector whose order cannot be repeated (a crawler) sets ``resumable = True``
      and keeps its own state in ``workdir``: the runner then calls ``checkpoint()``
      right after each shard is durably written, and on a rerun expects ``documents``
      to continue after the last checkpoint instead of replaying.
    - ``workdir`` survives an interrupted run and is removed once the stage completes.
    - Skipped inputs are counted in ``stats`` by reason, as ``stats["skipped:binary"] += 1``;
      the counts go into the collection report. Exact duplicates are dropped by the
      runner, by content hash, so collectors need not.
    """

    kind = "collector"
    resumable: ClassVar[bool] = False

    def checkpoint(self) -> None:
        """Persist resume state: everything yielded so far is stored. Resumable collectors only."""

    def sample_prompts(self) -> list[str]:
        """Prompts that suit this collector's text, for the samples a run writes at its end.

        An empty list (the default) makes the run take the first words of validation
        documents instead; ``sample.prompts`` in the config overrides both.
        """
        return []

    def documents(self, workdir: Path, stats: Counter) -> Iterator[Document]:
        raise NotImplementedError


class Preprocessor(Component):
    """One step of the text pipeline between collection and tokenization.

    Contract:

    - Keep heavy state (a spaCy pipeline) out of ``__init__`` and create it in ``setup``:
      where workers are spawned, instances are pickled to them before ``setup`` runs.
    - ``setup`` runs once per process before the first ``process`` call (once in total
      where workers are forked: they inherit the set-up instance).
    - ``process`` takes an iterable of documents (one shard, or with ``n_workers > 1`` a
      run of consecutive documents of one shard) and yields those it keeps, possibly
      changed. A dropped document is not yielded; count it in ``stats`` with
      its reason, as ``stats["dropped:too_short"] += 1``.
    - ``drop_reasons`` maps each drop reason to the config option that decides it, as
      ``{"too_short": "min_words"}``, so that a run that drops every document can name
      the key to change (``preprocess.steps[1].min_words``). Reasons no option controls
      (broken input) are left out.
    - A step that must see every document in one process (corpus-wide deduplication)
      sets ``parallel = False``; it then runs in the main process, shard after shard.
      Such a step returns its corpus-wide state from ``state()``; the runner saves it
      after each shard, as JSON with any arrays in an ``.npz`` file (never a pickle: the
      cache may be shared), and hands it to ``restore`` when an interrupted run resumes.
    """

    kind = "preprocess"
    parallel: ClassVar[bool] = True
    drop_reasons: ClassVar[dict[str, str]] = {}

    def setup(self) -> None:
        """Load heavy state. Called once per process, after unpickling."""

    def process(self, docs: Iterable[Document], stats: Counter) -> Iterator[Document]:
        raise NotImplementedError

    def state(self) -> Any:
        """Corpus-wide state to carry across an interruption, or None.

        JSON data (numbers, strings, lists, dicts with string keys; bytes as hex or base64),
        whose values may also be numpy arrays of numbers for anything large: they are saved
        in an ``.npz`` file beside the JSON and read back with ``allow_pickle=False``.
        """
        return None

    def restore(self, state: Any) -> None:
        """Take back what ``state`` returned, after ``setup``, when a run resumes.

        ``state`` comes back as JSON gives it (tuples as lists) with its arrays in place.
        Raise ``ValueError`` for a state this step cannot use: the runner then tells the
        user to rebuild the stage.
        """


class Tokenizer(Component):
    """Turns text into token ids and back, and saves itself as a ``tokenizer.json``.

    Contract:

    - ``train`` learns a vocabulary from a stream of texts. A tokenizer that needs no
      training (bytes) sets ``trainable = False``; ``train`` is then not called.
    - ``save(path)`` writes a Hugging Face ``tokenizer.json`` that
      ``transformers.PreTrainedTokenizerFast(tokenizer_file=path)`` loads and that gives
      the same ids; ``load(path)`` restores a saved tokenizer into this instance.
    - ``special_ids`` maps roles to ids. Roles used by the trainer: ``eos`` (appended
      after each document for causal LMs), ``pad``, ``mask``, ``cls``, ``sep``, ``unk``.
    """

    kind = "tokenizer"
    trainable: ClassVar[bool] = True

    def train(self, texts: Iterator[str]) -> None:
        raise NotImplementedError

    def save(self, path: Path) -> None:
        raise NotImplementedError

    def load(self, path: Path) -> None:
        raise NotImplementedError

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    @property
    def special_ids(self) -> dict[str, int]:
        raise NotImplementedError


@dataclass
class LMOutput:
    """What a language model's ``forward`` returns.

    ``logits``: (B, T, V). ``attention``: one (B, H, T, S) tensor per layer when
    ``return_attention=True`` was passed, else None. ``cache``: the updated KV cache
    when one was passed, else None. ``hidden``: the residual stream, one (B, T, C) tensor
    after the embedding and one after each layer, when ``return_hidden=True`` was passed
    (architectures with ``unembed`` only), else None. ``features``: the (B, T, C) input of
    ``lm_head`` when ``return_logits=False`` was passed (``supports_features``); ``logits``
    is None then.
    """

    logits: "torch.Tensor"
    attention: list["torch.Tensor"] | None = None
    cache: Any = None
    hidden: list["torch.Tensor"] | None = None
    features: "torch.Tensor | None" = None


class Architecture(Component):
    """Builds a ``torch.nn.Module`` language model. Selected by the ``model`` group.

    ``objective`` tells the trainer how to train the model: ``"causal"`` (next-token
    prediction, windows shifted by one) or ``"masked"`` (masked-LM, BERT-style). The
    trainer picks the batch collation and loss from it, so ``model=<name>`` is all a
    user types: the data module builds ``(inputs, targets)`` batches for the objective,
    and the trainer's loss is the same for both.

    The module returned by ``build`` must provide:

    - ``forward(idx, *, cache=None, return_attention=False) -> LMOutput`` with ``idx`` a
      (B, T) long tensor. With ``cache`` (from ``init_cache``) it decodes incrementally:
      ``idx`` holds only the new positions and the cache advances by T.
    - ``max_seq_len: int``, the longest input it accepts without a cache.
    - ``num_params(non_embedding: bool = True) -> int``.
    - with ``return_attention=True``, one map per attention layer: an architecture without
      attention layers (an RNN) returns an empty list.
    - ``flops_per_token(seq_len: int) -> float``: training FLOPs (forward + backward)
      per token, for throughput and MFU.
    - ``supports_cache: bool`` and, when true, ``init_cache(batch_size, max_len)``
      returning a cache object with ``pos`` (positions filled so far) and ``max_len``.
    - optionally ``supports_padding: bool`` (absent means False). When true, ``forward``
      also takes ``key_mask`` and ``positions``, so that prompts of different lengths
      decode as one left-padded batch: ``key_mask`` (B, S) bool, S the cached plus new
      positions, is False at padding, which no real token may attend to; ``positions``
      (B, T) long is each new token's position counted from its row's first real token
      (padding gets 0). The logits of a row's real tokens must equal those of the row
      decoded alone. Without it, generation decodes rows of different lengths apart.
    - optionally ``supports_features: bool`` (absent means False). When true, ``lm_head``
      is a bias-free ``nn.Linear`` whose output is the logits, and ``forward(idx,
      return_logits=False)`` skips it and fills ``LMOutput.features`` with its input: the
      fused losses of ``trainer.kernels`` never hold the (B, T, V) logits.
    - optionally ``supports_documents: bool`` (absent means False). When true, ``forward``
      also takes ``documents`` (B, T), each position's document id (equal ids, one
      document), and no position attends across a change of id (``model.attention=document``).
      Training passes it when the batches carry a third tensor.

    Optional, for ``lmforge explain`` (each method runs where its part is present):

    - ``get_input_embeddings() -> nn.Embedding``: the token embedding table. Saliency and
      integrated gradients differentiate and interpolate its output (B, T, C), replacing it
      through a forward hook, so ``forward`` must use this module's output as is.
    - ``unembed(h) -> logits`` mapping a residual stream (B, T, C) to (B, T, V) through the
      final norm and the head, with ``forward(idx, return_hidden=True)`` filling
      ``LMOutput.hidden``; ``unembed(hidden[-1])`` equals the logits. The logit lens reads
      each layer's stream through it, and a classification head (``lmforge finetune`` on a
      ``classify`` task) pools ``hidden[-1]``; without ``unembed`` the head pools the
      next-token log-probabilities instead, so every architecture gets one.
    - attention maps come from ``return_attention`` above; an empty list means none.

    Distributed training goes through Lightning strategies, so the module must be a
    plain ``nn.Module`` with no process-group logic of its own.

    Optional: ``export_hf(model, out_dir)``, used by ``lmforge export --format hf`` before
    lmforge's own mappings (``transformer`` to Llama or GPT-2, ``bert`` to BERT). It writes
    a stock ``transformers`` model into ``out_dir``: ``config.json`` naming a class that
    ships with ``transformers`` (no ``auto_map``, no remote code) and its weights as
    ``model.safetensors``. lmforge then adds the token ids to ``config.json`` where unset,
    the tokenizer files, ``generation_config.json`` and the model card. The default raises
    ``NotImplementedError``, and ``lmforge export`` then offers ``--format safetensors``.
    """

    kind = "model"
    objective: ClassVar[str] = "causal"

    def build(self, vocab_size: int, max_seq_len: int) -> "torch.nn.Module":
        raise NotImplementedError

    def export_hf(self, model: "torch.nn.Module", out_dir: Path) -> None:
        """Write ``model`` (from ``build``, with its trained weights, in eval mode) into the
        existing folder ``out_dir`` as a stock ``transformers`` model."""
        raise NotImplementedError


@dataclass
class Param:
    """One dimension of a search space.

    ``kind`` is ``"float"`` or ``"int"`` (with ``low``, ``high`` and optional ``log``) or
    ``"choice"`` (with ``choices``). The name is a config key path, such as
    ``optimizer.lr``.
    """

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    def __post_init__(self) -> None:
        if self.kind == "choice":
            if not self.choices:
                raise ValueError(f"parameter {self.name!r}: a choice needs at least one option")
        elif self.kind in ("float", "int"):
            if self.low is None or self.high is None or not self.low <= self.high:
                raise ValueError(f"parameter {self.name!r}: needs low <= high, got {self.low}, {self.high}")
            if self.log and self.low <= 0:
                raise ValueError(f"parameter {self.name!r}: a log scale needs low > 0, got {self.low}")
        else:
            raise ValueError(f"parameter {self.name!r}: kind must be float, int or choice, got {self.kind!r}")


@dataclass
class Trial:
    """One point the tuner asked to evaluate. ``number`` is stable across a resumed sweep."""

    number: int
    params: dict[str, Any]


@dataclass
class TunerConfig:
    """Keys every tuner takes; a tuner's ``Config`` subclasses this.

    The search space may come from here, from the command line, or from both.
    """

    # config key -> Hydra sweep grammar, e.g. {"optimizer.lr": "tag(log, interval(1e-4, 1e-2))"};
    # a sweep of the same key on the command line wins
    params: dict[str, Any] = field(default_factory=dict)


class Tuner(Component):
    """Proposes hyperparameters by ask and tell. Selected by the ``tuner`` group.

    Contract:

    - ``start(space, budget, num_workers, seed)`` is called once before the first ask.
      ``budget`` is the total number of trials; ``num_workers`` how many run at once.
    - ``ask()`` returns the next trial, or None once the tuner has nothing left to
      propose (a finished grid). Up to ``num_workers`` trials may be pending at once.
    - ``tell(trial, value)`` reports the objective to minimise. A failed trial is told
      ``math.inf``. The sweeper converts maximisation into minimisation.
    - The same seed and the same told values give the same asks, so that a resumed
      sweep replays its finished trials and carries on where it stopped.
    """

    kind = "tuner"

    def start(self, space: list[Param], budget: int, num_workers: int, seed: int) -> None:
        raise NotImplementedError

    def ask(self) -> Trial | None:
        raise NotImplementedError

    def tell(self, trial: Trial, value: float) -> None:
        raise NotImplementedError


@dataclass
class OptimizerConfig:
    """Keys every optimizer takes; an optimizer's ``Config`` subclasses this and adds its own."""

    lr: float = 1e-3  # peak learning rate; the scheduler scales it
    weight_decay: float = 0.1  # on matrices only: norms, biases and embeddings are spared

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr}: must be above 0; e.g. lr=3e-4")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay={self.weight_decay}: must be 0 or more; e.g. weight_decay=0.1")


class Optimizer(Component):
    """Builds a ``torch.optim.Optimizer``. Selected by the ``optimizer`` group.

    ``build(param_groups, on_cuda)`` receives two parameter groups, the matrices with the
    config's ``weight_decay`` and the rest (norms, biases, embeddings) with none, and the
    device kind, so that it can pick a fused CUDA kernel. ``lr`` is the peak rate: the
    scheduler scales it every step. An optimizer whose ``step`` accepts ``found_inf``
    (``_step_supports_amp_scaling``, as torch's fused AdamW) gets non-finite steps skipped
    on the device, without a host sync.
    """

    kind = "optimizer"
    Config: ClassVar[type] = OptimizerConfig

    def build(self, param_groups: list[dict], on_cuda: bool) -> "torch.optim.Optimizer":
        raise NotImplementedError


@dataclass
class SchedulerConfig:
    """Keys every schedule takes: a linear warm-up from 0 to the peak rate. Options add their own."""

    warmup_steps: int = 100

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps}: must be 0 (no warm-up) or more; e.g. warmup_steps=100")


class Scheduler(Component):
    """A learning-rate schedule: the multiplier of the peak rate at each optimizer step.

    Selected by the ``scheduler`` group. The base class gives the linear warm-up over
    ``warmup_steps``; a schedule implements ``multiplier(progress)``, the factor at
    ``progress`` in [0, 1] of its decay phase, and may move that phase's start with
    ``decay_start`` (by default, the end of the warm-up). The trainer wraps
    ``lr_lambda(max_steps)`` in ``torch.optim.lr_scheduler.LambdaLR``, stepped once per
    optimizer step.
    """

    kind = "scheduler"
    Config: ClassVar[type] = SchedulerConfig

    def decay_start(self, max_steps: int) -> int:
        return self.config.warmup_steps

    def multiplier(self, progress: float) -> float:
        raise NotImplementedError

    def lr_lambda(self, max_steps: int):
        """The multiplier of the peak rate at each step, for ``LambdaLR``."""
        warmup, start = self.config.warmup_steps, self.decay_start(max_steps)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if step < start:
                return 1.0
            return self.multiplier(min(1.0, (step - start) / max(1, max_steps - start)))

        return factor


class Logger(Component):
    """Where training metrics go besides ``metrics.csv``. Selected by the ``logger`` group.

    ``build(run_dir)`` returns Lightning loggers (``lightning.pytorch.loggers.Logger``),
    built with their heavy imports inside the method. Every run also keeps
    ``metrics.csv`` in its run directory, so runs compare on the same local record,
    unless ``metrics_csv`` is False (``logger=none``: no logging at all).
    """

    kind = "logger"
    metrics_csv: ClassVar[bool] = True

    def build(self, run_dir: Path) -> list:
        raise NotImplementedError


@dataclass
class Segment:
    """A piece of a formatted example: its text, and whether the model is trained on it.

    ``target`` segments carry the loss; the rest (the prompt, a user's turn, the role
    tokens before an assistant's turn) get label -100.
    """

    text: str
    target: bool = False


@dataclass
class Example:
    """One task example, formatted by ``Task.format``.

    ``segments`` is the whole sequence the model sees, in order: for a generative task
    ``[Segment(prompt), Segment(target, target=True)]``, for a chat every turn with the
    assistant's turns as targets, for classification one segment holding the text.
    ``label`` is the class name for a classification task, else "". ``prompt`` and
    ``reference`` are what evaluation uses: the text before the last target segment,
    and that segment's text. A preference task's example holds two sequences: the
    preferred one in ``segments`` and the rejected one in ``rejected``, each the same
    prompt followed by its reply as the one target segment.
    """

    id: str
    segments: list[Segment]
    label: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    rejected: list[Segment] = field(default_factory=list)  # a preference pair's rejected sequence

    @property
    def prompt(self) -> str:
        last = max((i for i, s in enumerate(self.segments) if s.target), default=len(self.segments))
        return "".join(s.text for s in self.segments[:last])

    @property
    def reference(self) -> str:
        targets = [s.text for s in self.segments if s.target]
        return targets[-1] if targets else ""


@dataclass
class TaskConfig:
    """Where a task's examples come from and how they are formatted.

    Subclasses add their own fields (a template, a language pair) and set defaults.
    """

    data: str = ""  # JSONL, CSV/TSV or Parquet file, a datasets builder ("hf:<name>"); "" = the offline demo
    fields: dict[str, str] = field(default_factory=dict)  # the task's field -> the column that holds it
    template: str = ""  # a Jinja template over the record's fields; "" = the task's own default
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train/validation/test shares, by a hash of the id
    max_examples: Optional[int] = None  # read at most this many records
    overlong: str = "truncate"  # an example longer than the context: truncate | drop

    def __post_init__(self) -> None:
        shares = list(self.split)
        if len(shares) != 3 or any(not isinstance(s, (int, float)) or s < 0 for s in shares) or abs(sum(shares) - 1) > 1e-6 or not shares[0] > 0:
            raise ValueError(f"split={list(self.split)}: must be three shares (train, validation, test), each 0 or more, train above 0, summing to 1; e.g. split=[0.8,0.1,0.1]")
        if self.overlong not in ("truncate", "drop"):
            raise ValueError(f"overlong={self.overlong}: must be truncate or drop; e.g. overlong=truncate")
        if self.max_examples is not None and (isinstance(self.max_examples, bool) or self.max_examples < 1):
            raise ValueError(f"max_examples={self.max_examples}: must be at least 1, or null for all; e.g. max_examples=1000")


class Task(Component):
    """A downstream task: its examples, their format and its metrics. Selected by ``task``.

    Contract:

    - ``type`` is ``"generate"`` (the model writes the reference after the prompt, scored
      by decoding greedily), ``"classify"`` (a head on the model predicts ``label``
      among ``labels``) or ``"preference"`` (pairs of a preferred and a rejected reply
      to one prompt, for preference optimization: ``Example.segments`` and
      ``Example.rejected``; ``reference`` is the preferred reply).
    - ``skip_reason(example)`` (optional) names why a formatted example cannot be used
      (a preference pair whose replies are empty or identical); ``lmforge.tasks.load``
      counts and skips it.
    - ``fields`` names the record fields the task reads. ``config.fields`` maps each to
      a column of the user's data, so that any file works without renaming columns.
    - ``demo()`` returns the records of an offline demo dataset, built with no download,
      so that ``lmforge finetune task=<name>`` runs out of the box.
    - ``format(record)`` turns one record (keyed by the task's fields, plus ``id``) into
      an ``Example``. The text layout comes from ``config.template``, a config string.
    - ``special_tokens`` lists tokens the template uses that the base tokenizer must
      know (chat roles, a separator); fine-tuning adds the missing ones and resizes the
      embeddings.
    - ``metrics`` names the task's metrics, higher is better unless the name ends in
      ``loss``. A metric ending in ``loss`` (``assistant_loss``) is the model's mean
      cross-entropy on the target tokens of the split, measured by the engine;
      ``score(predictions, examples)`` maps each of the others to a float.
    - ``baseline(examples)`` gives a trivial system's predictions (the majority class,
      copying the source), which a fine-tuned model must beat.
    - ``prepare(train)`` is called by ``lmforge.tasks.load`` with the training split
      before anything is scored: a classify task learns ``labels`` (sorted) and its
      majority class there.
    """

    kind = "task"
    Config: ClassVar[type] = TaskConfig
    type: ClassVar[str] = "generate"
    fields: ClassVar[tuple[str, ...]] = ()
    metrics: ClassVar[tuple[str, ...]] = ()
    special_tokens: ClassVar[tuple[str, ...]] = ()
    may_be_empty: ClassVar[tuple[str, ...]] = ()  # fields whose empty text is the task's to judge (skip_reason)
    labels: list[str] = []  # a classify task's classes, sorted, set by ``prepare``

    def prepare(self, train: list[Example]) -> None:
        """Learn what scoring needs from the training split (the classes). The default: nothing."""

    def skip_reason(self, example: Example) -> str | None:
        """Why ``example`` cannot be used (counted and skipped under that name), or None. The default: None."""
        return None

    def demo(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def format(self, record: dict[str, Any]) -> Example:
        raise NotImplementedError

    def score(self, predictions: list[str], examples: list[Example]) -> dict[str, float]:
        raise NotImplementedError

    def baseline(self, examples: list[Example]) -> list[str]:
        raise NotImplementedError


@dataclass(frozen=True)
class Verdict:
    """What a guard decided about a text.

    ``decision`` is ``allow``, ``flag`` (let it through, and say so) or ``block`` (refuse
    it). ``categories`` are the hazard categories the text fell in, the worst first;
    ``scores`` gives each category the guard scored a number (a share of words, a
    probability), higher meaning more confident.
    """

    decision: str = "allow"
    categories: tuple[str, ...] = ()
    scores: dict[str, float] = field(default_factory=dict)

    DECISIONS: ClassVar[tuple[str, ...]] = ("allow", "flag", "block")

    def __post_init__(self) -> None:
        if self.decision not in self.DECISIONS:
            raise ValueError(f"decision={self.decision!r}: must be allow, flag or block")

    @property
    def blocked(self) -> bool:
        return self.decision == "block"


@dataclass
class GuardConfig:
    """What every guard's config holds; subclasses add their own fields."""

    refusal: str = "Sorry, I can't help with that."  # the reply to a blocked prompt
    check: List[str] = field(default_factory=lambda: ["prompt", "reply"])  # what it checks: the prompt, the reply, or both


class Scanner:
    """Checks one reply as it streams: ``feed`` each new chunk, then ``finish``.

    Both return ``(released, verdict)``: the text that has now been checked and may be
    shown, and the verdict on the reply so far. Text is held back until it is checked,
    so a blocked reply never shows the text that blocked it. This default re-checks the
    whole reply with ``guard.check`` each time ``stride`` characters have come (``stride``
    0: on every chunk), which suits a model-based guard; a guard that can check a chunk
    with a little overlap (a word list) overrides it with an incremental scanner.
    """

    def __init__(self, guard: "Guard", stride: int = 0) -> None:
        self.guard, self.stride = guard, stride
        self.text, self.pending = "", ""
        self.verdict = Verdict()

    def feed(self, chunk: str) -> tuple[str, Verdict]:
        self.pending += chunk
        if len(self.pending) < self.stride:
            return "", self.verdict
        return self._check()

    def finish(self) -> tuple[str, Verdict]:
        return self._check() if self.pending else ("", self.verdict)

    def _check(self) -> tuple[str, Verdict]:
        self.text, released, self.pending = self.text + self.pending, self.pending, ""
        self.verdict = self.guard.check(self.text)  # the reply so far: a block stops the stream
        return ("" if self.verdict.blocked else released), self.verdict


class Guard(Component):
    """Checks text going into and coming out of a model. Selected by ``--guard`` (the
    ``guard`` group) in ``lmforge generate``, ``chat`` and ``serve``.

    Contract:

    - ``check(text)`` returns a ``Verdict`` for a whole text (a prompt, a reply); the same
      text gets the same verdict.
    - ``scanner()`` returns a fresh ``Scanner`` for one reply, which sees the reply chunk
      by chunk as it streams. Its verdict on the whole reply equals ``check`` on the
      whole reply however the reply is cut into chunks (a match may span two chunks),
      and it releases every character exactly once unless it blocks.
    - ``config.refusal`` is what a blocked prompt is answered with.
    - Heavy work (loading a moderation model) happens on the first check, or in
      ``setup()``, which the commands call once before serving.
    """

    kind = "guard"
    Config: ClassVar[type] = GuardConfig

    def setup(self) -> None:
        """Load what checking needs, once. The default: nothing."""

    def check(self, text: str) -> Verdict:
        raise NotImplementedError

    def scanner(self) -> Scanner:
        return Scanner(self)


@dataclass(frozen=True)
class Kind:
    """One kind of component: the config group a user types, its hook and its base class.

    ``group`` is the one name a user sees: in ``lmforge plugins``, on the command line
    (``model=rnn``) and in errors. ``alias`` is the kind's older name, which code written
    against earlier versions may still pass (``"architecture"``). A kind that is not
    ``chosen`` is not picked alone as ``group=<name>``: preprocessors are composed into
    the ``preprocess.steps`` list. ``command`` is the command whose config holds the
    group: ``lmforge train`` checks its own kinds, ``lmforge finetune`` adds ``task``, and
    ``lmforge generate``, ``chat`` and ``serve`` choose a ``guard`` with ``--guard``.
    """

    group: str
    hook: str
    base: type
    alias: str = ""
    chosen: bool = True
    command: str = "train"  # the command whose config chooses it: train, finetune for tasks, generate (and chat, serve) for guards


# Adding a kind is one row here plus its contract suite in lmforge.testing
# (``<Base>Contract``); the loader, registry, Hydra bridge, ``lmforge plugins`` and the
# docs test read this table.
KINDS: dict[str, Kind] = {
    k.group: k
    for k in (
        Kind("collector", "register_collectors", Collector),
        Kind("preprocess", "register_preprocessors", Preprocessor, alias="preprocessor", chosen=False),
        Kind("tokenizer", "register_tokenizers", Tokenizer),
        Kind("model", "register_models", Architecture, alias="architecture"),
        Kind("optimizer", "register_optimizers", Optimizer),
        Kind("scheduler", "register_schedulers", Scheduler),
        Kind("logger", "register_loggers", Logger),
        Kind("tuner", "register_tuners", Tuner),
        Kind("task", "register_tasks", Task, command="finetune"),
        Kind("guard", "register_guards", Guard, command="generate"),
    )
}


def kind_of(name: str) -> Kind:
    """The kind called ``name``: its group (``model``) or its older alias (``architecture``)."""
    for kind in KINDS.values():
        if name in (kind.group, kind.alias):
            return kind
    raise KeyError(f"no component kind {name!r}; the kinds are {', '.join(KINDS)}")


def __getattr__(name: str):
    if name == "KIND_GROUPS":  # the kind -> group dict of lmforge 0.1
        import warnings

        warnings.warn("lmforge.contracts.KIND_GROUPS is deprecated: use lmforge.contracts.KINDS", DeprecationWarning, stacklevel=2)
        return {(k.alias or k.group): k.group for k in KINDS.values()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def config_fields(cls: type[Component]) -> dict[str, Any]:
    """The option keys of a component and their defaults, for docs and listings."""
    return {
        f.name: (f.default if f.default is not dataclasses.MISSING else None)
        for f in dataclasses.fields(cls.Config)
    }

