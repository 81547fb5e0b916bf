"""The ``lmforge finetune`` config, checked before any work: ``FinetuneSpec``.

The groups it shares with ``lmforge train`` (optimizer, scheduler, trainer, logger,
tuner, loss) are checked by the same schemas; ``finetune`` has its own, and ``task`` is
a component like any other. ``as_run_spec`` turns it, with the base run's own spec,
into what the fine-tuned run's ``config.yaml`` records: a run config that
``lmforge.runs.Run`` opens like any other (the base's data, tokenizer and model, the
fine-tuning's optimizer, schedule and trainer).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, List, Optional

from omegaconf import DictConfig, OmegaConf

from lmforge.engine.config import LossConfig, TrainerConfig, bad_value, check_count
from lmforge.errors import ConfigError

METHODS = ("full", "lora")
PREFERENCE = ("dpo", "simpo", "orpo")  # lmforge.plugins.finetune._preference


@dataclass
class FinetuneConfig:
    method: str = "full"  # full | lora
    packing: bool = True  # several examples per window; false: one example per window, padded
    seq_len: Optional[int] = None  # window length; None: the base run's data.seq_len
    batch_size: int = 8
    val_batches: int = 0  # batches per validation pass, 0 for the whole validation split
    eval_examples: int = 64  # validation examples decoded for the task metrics, 0 for none
    max_new_tokens: int = 48
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: Optional[List[str]] = None  # None: every nn.Linear but the output head
    preference: str = "dpo"  # a preference task's objective: dpo | simpo | orpo
    beta: Optional[float] = None  # its beta (orpo: lambda); None: the objective's default
    simpo_gamma: float = 0.5  # simpo's target reward margin
    sft_weight: float = 0.0  # weight of the chosen reply's NLL added to the preference loss (RPO)
    reference: str = "cached"  # dpo's reference: cached log-probabilities of the base, or live (a frozen copy)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise bad_value("method", self.method, f"must be one of {', '.join(METHODS)}", "lora")
        check_count(self, "seq_len", 2, 256, optional=True)
        check_count(self, "batch_size", 1, 8)
        check_count(self, "val_batches", 0, 0)
        check_count(self, "eval_examples", 0, 64)
        check_count(self, "max_new_tokens", 1, 48)
        check_count(self, "lora_r", 1, 8)
        if not 0.0 <= self.lora_dropout < 1.0:
            raise bad_value("lora_dropout", self.lora_dropout, "must be at least 0 and below 1", 0.05)
        if self.preference not in PREFERENCE:
            raise bad_value("preference", self.preference, f"must be one of {', '.join(PREFERENCE)}", "simpo")
        if self.beta is not None and not (isinstance(self.beta, (int, float)) and 0 < self.beta < float("inf")):
            raise bad_value("beta", self.beta, "must be above 0, or null for the objective's default (dpo 0.1, simpo 2.0, orpo 0.1)", 0.1)
        if not self.sft_weight >= 0:
            raise bad_value("sft_weight", self.sft_weight, "must be 0 or more", 1.0)
        if self.reference not in ("cached", "live"):
            raise bad_value("reference", self.reference, "must be cached or live", "cached")
        if self.lora_targets is not None and not self.lora_targets:
            raise bad_value("lora_targets", self.lora_targets, "must name at least one module, or be null for every linear", ["qkv"])


@dataclass
class FinetuneSpec:
    """A fine-tuning config, checked: the base run named, the task chosen, every group typed."""

    base: str
    seed: int
    resume: Optional[str]
    resume_fallback: bool
    task: Any  # hydra_bridge.Selected
    optimizer: Any
    scheduler: Any
    logger: Any
    tuner: Any
    trainer: TrainerConfig
    loss: LossConfig
    finetune: FinetuneConfig

    def record(self) -> dict:
        """What ``finetune.yaml`` in the run records: the fine-tuning's own config, defaults filled in."""
        found: dict[str, Any] = {"base": self.base, "seed": self.seed, "resume": self.resume, "resume_fallback": self.resume_fallback}
        found.update({g: getattr(self, g).record() for g in ("task", "optimizer", "scheduler", "logger")})
        found["tuner"] = self.tuner.record() if self.tuner else None
        found.update({g: dataclasses.asdict(getattr(self, g)) for g in ("trainer", "loss", "finetune")})
        return found

    def as_run_spec(self, base_spec):
        """The run config the fine-tuned run records in ``config.yaml``: the base's data,
        tokenizer and model (the weights' shapes follow them), this run's training groups."""
        return dataclasses.replace(
            base_spec, seed=self.seed, resume=self.resume, resume_fallback=self.resume_fallback, optimizer=self.optimizer,
            scheduler=self.scheduler, logger=self.logger, tuner=None, trainer=self.trainer, loss=self.loss,
        )


KEYS = ("base", "seed", "resume", "resume_fallback", "task", "optimizer", "scheduler", "trainer", "logger", "tuner", "loss", "finetune")


def check(cfg: DictConfig) -> FinetuneSpec:
    from lmforge.hydra_bridge import Selected, component_config, structured

    if unknown := sorted(set(cfg) - set(KEYS)):
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown)}: lmforge finetune's config has {', '.join(KEYS)}")
    base = cfg.get("base")
    if not base or base == "???":
        raise ConfigError("base: not set; pass the run to fine-tune, base=<run dir> (a directory lmforge train wrote)")
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed}: must be an integer; e.g. seed=1337")
    if not isinstance(fallback := cfg.get("resume_fallback", False), bool):
        raise ConfigError(f"resume_fallback={fallback}: must be true or false")
    if cfg.get("task") is None:
        from lmforge.loader import load_plugins

        names = ", ".join(sorted(load_plugins()[1].components["task"])) or "none installed"
        raise ConfigError(f"task: not set; choose the task to fine-tune on, task=<name> (one of: {names})")
    chosen = {g: Selected(*component_config(g, cfg[g], g)) for g in ("task", "optimizer", "scheduler", "logger")}
    groups = {
        g: structured(schema, OmegaConf.to_container(cfg[g], resolve=True) if cfg.get(g) is not None else {}, g, g)
        for g, schema in {"trainer": TrainerConfig, "loss": LossConfig, "finetune": FinetuneConfig}.items()
    }
    tuner = Selected(*component_config("tuner", cfg.tuner, "tuner")) if cfg.get("tuner") is not None else None
    return FinetuneSpec(base=str(base), seed=seed, resume=cfg.get("resume"), resume_fallback=fallback, tuner=tuner, **chosen, **groups)
