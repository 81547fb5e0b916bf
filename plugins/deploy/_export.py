"""``lmforge export``: a run's model as a folder that ``transformers`` or lmforge loads.

The run is opened through ``lmforge.runs.Run``, so a folder that is not a run, a missing,
corrupt or unsafe checkpoint and an architecture whose plugin is gone are the run
object's errors. Everything is written into a staging folder beside ``--to`` and renamed
into place at the end: a failed export leaves nothing behind, and an existing folder is
replaced only with ``--force``, and only once the new one is complete.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

from lmforge import __version__
from lmforge.contracts import Architecture
from lmforge.errors import LmforgeError
from lmforge.files import atomic_write, atomic_write_json
from lmforge.plugins.deploy import FORMATS, _card, _hf
from lmforge.runs import EXPORT_CONFIG, EXPORT_WEIGHTS, Checkpoint, Run


class ExportError(LmforgeError):
    """An export that cannot be written; the message names the input and the fix."""


def export(run_path: Path | str, to: Path | str, *, fmt: str = "hf", checkpoint: str | None = None, force: bool = False) -> Path:
    """Write the run's model into ``to`` as ``fmt`` (``hf`` or ``safetensors``); returns ``to``."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: not one of {', '.join(FORMATS)}")
    run = Run.open(run_path)
    to = Path(to).expanduser().resolve()
    _check_target(run, to, force)
    arch = run.spec.model.build()
    own = _provides_export(arch)
    if fmt == "hf" and not own:
        config = arch.config.resolved() if hasattr(arch.config, "resolved") else arch.config
        if why := _hf.unsupported(run.spec.model.name, config):
            raise ExportError(f"{why}. Or export with --format safetensors: the weights and lmforge.json, which lmforge reloads")
    ckpt = run.read_checkpoint(checkpoint, use=lambda p: f"lmforge export {run.dir} --to {to} --checkpoint {p}")
    model = run.model(ckpt)

    try:
        to.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{to.name}.", suffix=".partial", dir=to.parent))
    except OSError as exc:
        raise ExportError(f"--to {to}: cannot create a folder there ({exc.strerror}): choose a writable place") from None
    try:
        if fmt == "hf":
            _write_hf(run, arch, model, ckpt, staging, own)
        else:
            _write_lmforge(run, arch, model, ckpt, staging)
        _card.write_readme(run, ckpt, staging, fmt)
        _publish(staging, to)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return to


def _provides_export(arch: Architecture) -> bool:
    """Whether the architecture overrides ``Architecture.export_hf`` (a third party's own mapping)."""
    return getattr(type(arch), "export_hf", None) is not getattr(Architecture, "export_hf", None)


def _check_target(run: Run, to: Path, force: bool) -> None:
    if to == run.dir or to in run.dir.parents:
        raise ExportError(f"--to {to} holds the run being exported ({run.dir}): choose a folder outside it, such as {run.dir.parent / (run.dir.name + '-hf')}")
    if to.exists() and not to.is_dir():
        raise ExportError(f"--to {to} is a file: choose a folder")
    if to.is_dir() and any(to.iterdir()) and not force:
        raise ExportError(f"--to {to} exists and is not empty: choose another folder, or pass --force to replace it")


def _publish(staging: Path, to: Path) -> None:
    """Rename the finished staging folder to ``to``; an old ``to`` goes only once the new one is in place."""
    old = None
    if to.is_dir():
        old = to.with_name(f".{to.name}.old-{os.getpid()}")
        to.rename(old)
    staging.rename(to)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _special_ids(run: Run) -> dict[str, int | None]:
    ids = run.tokenizer.special_ids
    return {"bos": ids.get("bos"), "eos": ids.get("eos", ids.get("sep")), "pad": ids.get("pad")}


def _write_hf(run: Run, arch: Architecture, model, ckpt: Checkpoint, out: Path, own: bool) -> None:
    import json

    from safetensors.torch import save

    ids = _special_ids(run)
    if own:
        arch.export_hf(model, out)
        if not (out / "config.json").is_file():
            raise ExportError(f"model={run.spec.model.name}'s export_hf wrote no config.json: fix it in {type(arch).__module__}")
        config = json.loads((out / "config.json").read_text(encoding="utf-8"))
        config.update({f"{role}_token_id": i for role, i in ids.items() if config.get(f"{role}_token_id") is None})
    else:
        config, tensors = _hf.convert(run.spec.model.name, model.config, model, ids)
        atomic_write(out / "model.safetensors", save(tensors, metadata={"format": "pt"}))
        if names := _hf_names(run, model, ids):  # lmforge.json: lmforge eval, generate... reopen the folder
            atomic_write_json(out / EXPORT_CONFIG, _record(run, arch, ckpt, "hf", hf_names=names))
    atomic_write_json(out / "config.json", config)
    _card.write_tokenizer(run, out)
    generation = {f"{role}_token_id": i for role, i in ids.items() if i is not None}
    atomic_write_json(out / "generation_config.json", {**generation, "max_length": run.spec.data.seq_len})


def _write_lmforge(run: Run, arch: Architecture, model, ckpt: Checkpoint, out: Path) -> None:
    from safetensors.torch import save

    tensors, seen = {}, set()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        if tensor.data_ptr() in seen:  # a tied matrix: safetensors stores no shared memory, so it is kept twice
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        tensors[name] = tensor
    atomic_write(out / EXPORT_WEIGHTS, save(tensors, metadata={"format": "pt", "step": str(ckpt.step)}))
    run.tokenizer.save(out / "tokenizer.json")
    _card.copy_template(run, out)
    atomic_write_json(out / EXPORT_CONFIG, _record(run, arch, ckpt, "lmforge-safetensors"))


def _record(run: Run, arch: Architecture, ckpt: Checkpoint, fmt: str, **extra) -> dict:
    """``lmforge.json``: what ``Run.open`` needs to reopen an exported folder as the run."""
    record = run.spec.record()
    return {
        "format": fmt,
        "format_version": 1,
        "lmforge": __version__,
        "architecture": run.spec.model.name,
        "model": dataclasses.asdict(arch.config),
        "tokenizer": record["tokenizer"],
        "vocab_size": run.tokenizer.vocab_size,
        "max_seq_len": run.spec.data.seq_len,
        "step": ckpt.step,
        "source": {"run": str(run.dir), "checkpoint": str(ckpt.path)},
        "config": record,  # the run's checked config: what Run.open checks again on reload
        "summary": run.summary,
        "manifest": run.manifest,
        **extra,
    }


def _hf_names(run: Run, model, ids: dict) -> dict | None:
    """How ``Run.open`` rebuilds each lmforge tensor from the Hugging Face ones:
    ``{lmforge name: {"shape": [...], "parts": [[hf name, transposed], ...]}}``, the parts
    flattened and concatenated in order (a fused ``qkv`` is ``q_proj``, ``k_proj``, ``v_proj``).

    Found by running the mapping on a float64 copy whose every element holds its own
    index (exact to 2**53), so it follows ``_hf.convert`` whatever it does. None when some
    Hugging Face tensor is not a slice or a transpose of one lmforge tensor.
    """
    import copy

    import torch

    probe = copy.deepcopy(model).double()
    state = probe.state_dict(keep_vars=True)
    starts: dict[str, int] = {}  # lmforge name -> the index its first element holds
    owner: dict[int, str] = {}  # storage -> the first name holding it: a tied weight is rebuilt from the same parts
    with torch.no_grad():
        next_id = 1  # 0 marks a tensor lmforge has not (GPT-2's zero biases, BERT's token types)
        for key, t in state.items():
            if t.data_ptr() not in owner:
                t.copy_(torch.arange(next_id, next_id + t.numel(), dtype=torch.float64).view_as(t))
                owner[t.data_ptr()], starts[key] = key, next_id
                next_id += t.numel()
        _, tensors = _hf.convert(run.spec.model.name, probe.config, probe, ids)
    parts: dict[str, list] = {k: [] for k in starts}
    for name, h in tensors.items():
        if not h.any():
            continue
        first = int(h.reshape(-1)[0])
        key = next((k for k, at in starts.items() if at <= first < at + state[k].numel()), None)
        for transposed in (False, True) if h.dim() == 2 else (False,):
            flat = (h.t() if transposed else h).reshape(-1)
            if key and torch.equal(flat, torch.arange(first, first + flat.numel(), dtype=torch.float64)):
                parts[key].append((first - starts[key], name, transposed))
                break
        else:
            return None
    names = {}
    for key, t in state.items():
        found, covered = sorted(parts[owner[t.data_ptr()]]), 0
        for offset, name, _ in found:
            if offset != covered:
                return None
            covered += tensors[name].numel()
        if covered != t.numel():
            return None
        names[key] = {"shape": list(t.shape), "parts": [[name, transposed] for _, name, transposed in found]}
    return names
