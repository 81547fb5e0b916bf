"""A finished run as an object: the one way into a run directory.

Every command that uses a trained model (``lmforge eval`` today; generate, chat, serve,
export, explain and finetune) opens it here and never rebuilds a model or a tokenizer
on its own::

    run = Run.open("outputs/2026-12-06/09-00-00")   # or a .ckpt file inside a run
    run.spec                                        # the checked config (lmforge.hydra_bridge.RunSpec)
    run.tokenizer                                   # loaded from the run's tokenizer.json
    model = run.model(device="cuda")                # built, loaded, in eval mode

Opening reads only small files and imports no torch; ``model()`` imports it. Every
problem is one ``RunError`` that names the file and what to do.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from lmforge.contracts import Document
from lmforge.errors import ConfigError, LmforgeError

if TYPE_CHECKING:
    import torch

    from lmforge.contracts import Preprocessor, Tokenizer
    from lmforge.hydra_bridge import RunSpec

CHECKPOINTS, LAST = "checkpoints", "last.ckpt"
HEAD = "classifier.json"  # a classify fine-tune's head: lmforge.classifier.Head
EXPORT_CONFIG, EXPORT_WEIGHTS = "lmforge.json", "model.safetensors"  # a folder from `lmforge export` (either format)


class RunError(LmforgeError):
    """A run directory or checkpoint that cannot be opened; the message names the file and the fix."""


@dataclass
class Checkpoint:
    """The weights of one checkpoint file, read with ``weights_only=True``."""

    path: Path
    step: int
    state_dict: dict[str, Any] = field(repr=False)


@dataclass
class Run:
    dir: Path
    spec: "RunSpec"
    summary: dict | None  # summary.json; None when training did not finish (a pre-empted run)
    manifest: dict | None  # manifest.json: written once the data stages are done, ``complete`` once training is
    default_checkpoint: Path  # the checkpoint named when the run was opened, else last.ckpt

    @classmethod
    def open(cls, path: Path | str) -> Run:
        """Open a run directory, or a checkpoint file inside one's ``checkpoints/``, or a
        folder that ``lmforge export`` wrote (``--format safetensors`` or ``hf``)."""
        path = Path(path).expanduser().resolve()
        if not path.exists():
            raise RunError(f"{path}: no such file or directory; pass a run directory that `lmforge train` wrote (outputs/<date>/<time>)")
        if (exported := path if path.is_dir() else path.parent).joinpath(EXPORT_CONFIG).is_file():
            return cls._open_export(exported)
        checkpoint = None
        if path.is_file():
            checkpoint, path = path, path.parent.parent if path.parent.name == CHECKPOINTS else path.parent
        missing = [f for f in ("config.yaml", "tokenizer.json") if not (path / f).is_file()]
        if missing:
            raise RunError(
                f"{path} is not a finished lmforge run directory ({' and '.join(missing)} missing): pass the directory "
                f"`lmforge train` wrote, outputs/<date>/<time>, or a checkpoint inside its checkpoints/"
            )
        manifest = _read_json(path / "manifest.json")
        spec = _check(path, manifest)
        return cls(path, spec, _read_json(path / "summary.json"), manifest, checkpoint or path / CHECKPOINTS / LAST)

    @classmethod
    def _open_export(cls, folder: Path) -> Run:
        """An exported folder: ``lmforge.json`` holds the run's checked config, summary and manifest."""
        from omegaconf import OmegaConf

        from lmforge.hydra_bridge import check

        data = _read_json(folder / EXPORT_CONFIG)
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise RunError(f"{folder / EXPORT_CONFIG} holds no run config: export the run again with lmforge export --format safetensors")
        if not (folder / "tokenizer.json").is_file():
            raise RunError(f"{folder} has {EXPORT_CONFIG} but no tokenizer.json: export the run again with lmforge export --format safetensors")
        try:
            spec = check(OmegaConf.create(data["config"]))
        except ConfigError as exc:
            raise RunError(f"{folder / EXPORT_CONFIG}: {exc} (exported from a run trained with lmforge {data.get('lmforge')}; install the plugin that provides it)") from None
        return cls(folder, spec, data.get("summary"), data.get("manifest"), folder / EXPORT_WEIGHTS)

    @property
    def name(self) -> str:
        """The run's place under ``outputs/``: ``<date>/<time>``."""
        return "/".join(self.dir.parts[-2:])

    @cached_property
    def tokenizer(self) -> "Tokenizer":
        tokenizer = self.spec.tokenizer.build()
        tokenizer.load(self.dir / "tokenizer.json")
        return tokenizer

    @cached_property
    def steps(self) -> list["Preprocessor"]:
        """The run's preprocessing steps, set up, in order."""
        steps = [s.build() for s in self.spec.steps]
        for step in steps:
            step.setup()
        return steps

    def preprocess(self, texts: Iterable[str], source: str = "input") -> tuple[list[Document], Counter]:
        """Texts as the run saw its corpus: through its preprocessing steps. Returns the
        documents kept and the counts of what was dropped, by reason."""
        docs: Iterable[Document] = [Document(id=f"{source}-{i}", text=t, source=source) for i, t in enumerate(texts)]
        stats: Counter = Counter()
        for step in self.steps:
            docs = step.process(docs, stats)
        return list(docs), stats

    @cached_property
    def head(self) -> "Any":
        """The classification head a ``classify`` fine-tune recorded (``classifier.json``:
        labels, pooling, row length) as an ``lmforge.classifier.Head``, or None for a language model."""
        data = _read_json(self.dir / HEAD)
        if data is None:
            return None
        from lmforge.classifier import Head

        return Head.from_json(data, str(self.dir / HEAD))

    @property
    def bytes_per_token(self) -> float | None:
        """UTF-8 bytes per token of the run's tokenized corpus, as its bits per byte used."""
        if self.summary and "signature" in self.summary:
            return self.summary["signature"].get("bytes_per_token")
        report = ((self.manifest or {}).get("data") or {}).get("tokenize") or {}
        return report.get("bytes_per_token")

    def checkpoints(self) -> list[Path]:
        """The run's checkpoint files, newest first."""
        folder = self.dir / CHECKPOINTS
        found = [p for p in folder.glob("*.ckpt") if p.is_file()] if folder.is_dir() else []
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def checkpoint(self, given: Path | str | None = None) -> Path:
        """The checkpoint file to use: ``given``, else the one the run was opened with."""
        path = Path(given).expanduser() if given else self.default_checkpoint
        if path.is_file():
            return path
        others = ", ".join(p.name for p in self.checkpoints()) or "none"
        raise RunError(
            f"no checkpoint at {path} (the run's checkpoints: {others}): pass --checkpoint <file.ckpt>, or a run "
            f"whose training saved one"
        )

    def read_checkpoint(self, given: Path | str | None = None, *, use: "Callable[[Path], str] | None" = None) -> Checkpoint:
        """Read a checkpoint's weights; a truncated, corrupt or unsafe file is one ``RunError``.

        The error names the run's newest intact checkpoint and the command that uses it:
        ``use(path)`` (default: ``lmforge eval <run> --checkpoint <path>``).
        """
        path = self.checkpoint(given)
        use = use or (lambda p: f"lmforge eval {self.dir} --checkpoint {p}")
        try:
            state = _load(path)
        except _Unreadable as exc:
            raise RunError(f"{path} {exc}{self._intact_hint(path, use)}") from None
        return Checkpoint(path, int(state.get("global_step", 0)), state["state_dict"])

    def intact_checkpoint(self, besides: Path) -> Checkpoint | None:
        """The run's newest checkpoint other than ``besides`` that reads, else None."""
        for path in self.checkpoints():
            if path.resolve() == besides.resolve():
                continue
            try:
                state = _load(path)
            except _Unreadable:
                continue
            return Checkpoint(path, int(state.get("global_step", 0)), state["state_dict"])
        return None

    def _intact_hint(self, bad: Path, use: "Callable[[Path], str]") -> str:
        intact = self.intact_checkpoint(bad)
        if intact is None:
            others = ", ".join(p.name for p in self.checkpoints() if p.resolve() != bad.resolve())
            return f"; the run has no other intact checkpoint{f' (unreadable too: {others})' if others else ''}"
        return f"; the run's newest intact checkpoint is {intact.path.name} (step {intact.step}): {use(intact.path)}"

    def model(
        self, checkpoint: Checkpoint | Path | str | None = None, device: "str | torch.device" = "cpu", vocab_size: int | None = None,
    ) -> "torch.nn.Module":
        """The run's architecture built at its size and loaded with ``checkpoint``'s weights
        (default: the run's), in eval mode, on ``device``. ``vocab_size`` above the tokenizer's
        is for a tokenizer extended with new tokens (``lmforge finetune``): every weight sized
        by the vocabulary gets a row per new token, drawn around the mean of its rows."""
        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else self.read_checkpoint(checkpoint)
        size = max(vocab_size or 0, self.tokenizer.vocab_size)
        model = self.spec.model.build().build(vocab_size=size, max_seq_len=self.spec.data.seq_len)
        if self.head is not None:  # a classifier fine-tune: its head wraps the architecture
            from lmforge.classifier import Classifier

            model = Classifier(model, self.head)
        prefix = "model."  # the LightningModule's attribute holding the architecture
        weights = {k[len(prefix):]: v for k, v in ckpt.state_dict.items() if k.startswith(prefix)}
        if size > self.tokenizer.vocab_size:
            weights = _grow_vocab(weights, self.tokenizer.vocab_size, size)
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise RunError(
                f"{ckpt.path} does not fit the run's model={self.spec.model.name} "
                f"({str(exc).splitlines()[0]}): was the checkpoint written by another run?"
            ) from None
        return model.eval().to(device)


def _grow_vocab(weights: dict, old: int, new: int) -> dict:
    """``weights`` with ``new - old`` rows added to each tensor of ``old`` rows (embeddings, an
    output head and its bias): the mean of the existing rows plus noise of their spread, seeded,
    so new tokens start apart from each other and near the tokens the model knows (as
    ``transformers``' ``resize_token_embeddings(mean_resizing=True)``)."""
    import torch

    generator, grown, done = torch.Generator().manual_seed(0), {}, {}
    for key, value in weights.items():
        if value.dim() >= 1 and value.shape[0] == old and value.is_floating_point():
            if value.data_ptr() not in done:  # a tied head shares its embedding's tensor: grown once
                rows = value.float()
                extra = rows.mean(0) + rows.std(0) * torch.randn((new - old, *value.shape[1:]), generator=generator)
                done[value.data_ptr()] = torch.cat([value, extra.to(value.dtype)])
            value = done[value.data_ptr()]
        grown[key] = value
    return grown


class _Unreadable(Exception):
    """A checkpoint file that does not load; the message says why, after the file's name."""


def read_state(path: Path | str, map_location: Any = "cpu") -> dict:
    """A checkpoint file's whole state, read with ``weights_only=True``; a corrupt or unsafe
    file is one ``RunError`` naming it. What Lightning loads on ``resume=`` goes through here."""
    try:
        return _load(Path(path), map_location)
    except _Unreadable as exc:
        raise RunError(f"{path} {exc}") from None


def _load(path: Path, map_location: Any = "cpu") -> dict:
    """A checkpoint read with ``weights_only=True``: tensors and plain values, never code."""
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    import pickle

    import torch

    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        # torch's message advises retrying with weights_only=False, which would run the payload: never pass it on
        if "global" in str(exc).lower():  # torch names the blocked class or function: "Unsupported global: GLOBAL x.y"
            raise _Unreadable(
                "holds Python objects that lmforge does not load (only tensors and plain values are read, so no code "
                "in a checkpoint runs): use a checkpoint that lmforge train wrote"
            ) from None
        reason = type(exc).__name__ if isinstance(exc, pickle.UnpicklingError) or not str(exc) else str(exc).splitlines()[0]
        raise _Unreadable(f"is not a readable checkpoint, it is truncated or corrupt ({reason})") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise _Unreadable("is not an lmforge training checkpoint (no state_dict)")
    return state


def _load_safetensors(path: Path) -> dict:
    """An exported folder's weights as a checkpoint's state: ``model.``-prefixed, with the step.

    A ``--format hf`` folder holds the weights under Hugging Face names; its ``lmforge.json``
    says how each lmforge tensor is rebuilt from them (``hf_names``: parts concatenated,
    some transposed), so the run's own model loads the very same numbers.
    """
    from safetensors import SafetensorError, safe_open

    exported = _read_json(path.parent / EXPORT_CONFIG) or {}
    names = exported.get("hf_names")
    try:
        with safe_open(str(path), framework="pt") as f:
            step = int((f.metadata() or {}).get("step", exported.get("step", 0)))
            weights = _from_hf(f, names) if names else {f"model.{k}": f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise _Unreadable(f"is not a readable safetensors file, it is truncated or corrupt ({str(exc).splitlines()[0]})") from None
    return {"state_dict": weights, "global_step": step}


def _from_hf(f, names: dict) -> dict:
    import torch

    def part(name: str, transposed: bool):
        return (f.get_tensor(name).t() if transposed else f.get_tensor(name)).reshape(-1)

    return {f"model.{key}": torch.cat([part(*p) for p in m["parts"]]).reshape(m["shape"]) for key, m in names.items()}


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunError(f"{path} is not readable JSON ({exc}): the run directory is damaged") from None


def _check(run_dir: Path, manifest: dict | None) -> "RunSpec":
    """The run's config.yaml, checked; a component whose plugin is gone names its distribution."""
    from omegaconf import OmegaConf

    from lmforge.hydra_bridge import check

    cfg = OmegaConf.load(run_dir / "config.yaml")
    try:
        return check(cfg)
    except ConfigError as exc:
        installed = ""
        if manifest:
            plugins = ", ".join(f"{d} {v}" for d, v in sorted(manifest.get("plugins", {}).items()) if d != "lmforge")
            installed = f" The run was trained with these plugin distributions: {plugins}; install the one that provides it." if plugins else ""
        raise RunError(f"{run_dir / 'config.yaml'}: {exc}{installed}") from None
