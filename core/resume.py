"""What ``resume=`` must satisfy, checked before any stage runs.

The checkpoint reads (a corrupt one names the run's intact ones, and with
``resume_fallback=true`` the newest intact one is used instead), it was written by a run
with this config's model and tokenizer, and ``trainer.max_steps`` leaves steps to train.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lmforge.errors import ConfigError
from lmforge.hydra_bridge import RunSpec

log = logging.getLogger("lmforge")


def resume_checkpoint(spec: RunSpec) -> str | None:
    """The checkpoint ``resume=`` continues from, checked before any stage: it reads (or,
    with ``resume_fallback``, the run's newest intact one does), its run's model and
    tokenizer are this config's, and ``trainer.max_steps`` leaves steps to train."""
    if not spec.resume:
        return None
    from lmforge.files import remove_stale_temps
    from lmforge.runs import CHECKPOINTS, LAST, Run, RunError, read_state

    path = Path(spec.resume).expanduser()
    ckpt = path / CHECKPOINTS / LAST if path.is_dir() else path
    if not ckpt.is_file():
        raise ConfigError(
            f"resume={spec.resume}: no checkpoint at {ckpt}; pass a run directory holding checkpoints/last.ckpt "
            f"or a .ckpt file"
        )
    remove_stale_temps(ckpt.parent)  # what saves killed mid-write left behind
    try:
        run = Run.open(ckpt)
    except RunError:  # a checkpoint kept outside its run: only the file itself can be checked
        step = int(read_state(ckpt).get("global_step", 0))
        log.warning("resume=%s: no run directory around the checkpoint, so its model and tokenizer are not compared", spec.resume)
        return _steps_left(spec, ckpt, step)
    try:
        found = run.read_checkpoint(ckpt, use=lambda p: f"rerun with resume={p}, or add resume_fallback=true")
    except RunError:
        intact = run.intact_checkpoint(ckpt) if spec.resume_fallback else None
        if intact is None:
            raise
        log.warning(
            "resume=%s: %s is corrupt; resume_fallback=true: resuming from the run's newest intact checkpoint %s (step %d)",
            spec.resume, ckpt.name, intact.path, intact.step,
        )
        found = intact
    if changed := _changed(run.spec, spec, run.tokenizer.vocab_size):
        raise ConfigError(
            f"resume={spec.resume}: the checkpoint's run ({run.dir / 'config.yaml'}) had another model or tokenizer: "
            f"{'; '.join(changed)}. Resume with the run's values, or train a new run without resume="
        )
    return _steps_left(spec, found.path, found.step)


def _changed(before: RunSpec, now: RunSpec, vocab_size: int) -> list[str]:
    """What the checkpoint cannot carry over, as ``key=<now> (the checkpoint's run had <before>)``:
    any tokenizer setting (its ids would mean other tokens), and the model settings and
    ``data.seq_len`` when they change a weight's shape (a new ``model.dropout`` is fine)."""
    import torch

    def flat(spec: RunSpec, groups: tuple[str, ...]) -> dict:
        found = {f"{g}.{k}": v for g in groups for k, v in getattr(spec, g).record().items()}
        return found | ({"data.seq_len": spec.data.seq_len} if "model" in groups else {})

    def shapes(spec: RunSpec) -> dict:
        with torch.device("meta"):  # no memory, no initialisation: only the shapes
            model = spec.model.build().build(vocab_size=vocab_size, max_seq_len=spec.data.seq_len)
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    groups = ("tokenizer", "model") if shapes(before) != shapes(now) else ("tokenizer",)
    old, new, missing = flat(before, groups), flat(now, groups), "(not set)"
    return [
        f"{key}={new.get(key, missing)} (the checkpoint's run had {old.get(key, missing)})"
        for key in sorted(old.keys() | new.keys()) if old.get(key, missing) != new.get(key, missing)
    ]


def _steps_left(spec: RunSpec, ckpt: Path, step: int) -> str:
    if spec.trainer.max_steps <= step:
        raise ConfigError(
            f"resume={spec.resume}: {ckpt} is at step {step} and trainer.max_steps={spec.trainer.max_steps}, so there is "
            f"nothing left to train (the run is finished): raise trainer.max_steps above {step} to train on, or score "
            f"the run with lmforge eval {ckpt.parent.parent}"
        )
    return str(ckpt)
