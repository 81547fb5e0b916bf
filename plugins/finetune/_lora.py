"""``finetune.method=lora``: low-rank adapters through ``peft``, merged into the weights on save.

- ``apply``: ``peft.inject_adapter_in_model`` wraps the chosen ``nn.Linear`` layers in
  place (the model keeps its class, so its ``forward``, ``flops_per_token`` and cache work
  as before) and freezes every other weight. By default every ``nn.Linear`` but the output
  head is adapted: the attention and MLP projections of the built-in transformer, and the
  linears of any architecture built from ``nn.Linear``.
- ``merged_state``: the plain state dict, each adapted weight ``W + (alpha / r) * B @ A``,
  under the names the architecture's own ``state_dict`` has: what a checkpoint holds.
- ``MergeOnSave``: a Lightning callback. Every checkpoint (``last.ckpt``, the best ones)
  holds the merged weights, so it loads like any other run's; the adapters go beside
  them under ``lora_state``, and on ``resume=`` they are put back into the adapted model
  (whose frozen base is the base run's weights again).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from lmforge.errors import ConfigError

log = logging.getLogger("lmforge")

ADAPTERS = "lora_state"  # the checkpoint key holding the adapter weights
PREFIX = "model."  # the LightningModule's attribute holding the architecture


def linear_names(model: torch.nn.Module, vocab_size: int) -> list[str]:
    """Every ``nn.Linear`` of ``model`` but the output head (the one with ``vocab_size`` outputs)."""
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m.out_features != vocab_size]


def apply(model: torch.nn.Module, *, r: int, alpha: float, dropout: float, targets: list[str] | None, vocab_size: int) -> list[str]:
    """Wrap ``targets`` (default: every linear but the head) in LoRA adapters, in place; returns their names."""
    from peft import LoraConfig, inject_adapter_in_model

    linears = linear_names(model, vocab_size)
    if targets:
        chosen = [n for n in linears if n in targets or n.rsplit(".", 1)[-1] in targets]
        if unknown := sorted(t for t in targets if not any(n == t or n.rsplit(".", 1)[-1] == t for n in linears)):
            sample = ", ".join(sorted({n.rsplit(".", 1)[-1] for n in linears})) or "none"
            raise ConfigError(f"finetune.lora_targets: {', '.join(unknown)} name no nn.Linear of the model (its linears end in: {sample})")
    else:
        chosen = linears
    if not chosen:
        raise ConfigError(
            f"finetune.method=lora: the model has no nn.Linear layer besides its output head to adapt "
            f"({type(model).__name__}); use finetune.method=full"
        )
    inject_adapter_in_model(LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=chosen), model)
    return chosen


def layers(model: torch.nn.Module) -> dict[str, Any]:
    from peft.tuners.lora import LoraLayer

    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer)}


@torch.no_grad()
def merged_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The architecture's plain state dict with every adapter merged in; the model is left as it is."""
    adapted = layers(model)
    state = {}
    for key, value in model.state_dict().items():
        owner = next((n for n in adapted if key.startswith(n + ".")), None)
        if owner is None:
            state[key] = value
            continue
        rest = key[len(owner) + 1:]
        if not rest.startswith("base_layer."):
            continue  # lora_A / lora_B: folded into the weight below
        layer = adapted[owner]
        if rest == "base_layer.weight":
            value = value + layer.get_delta_weight("default").to(value.dtype)
        state[f"{owner}.{rest[len('base_layer.'):]}"] = value
    return state


def adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if ".lora_" in k}


def merge(model: torch.nn.Module) -> torch.nn.Module:
    """Fold the adapters into the weights and put plain ``nn.Linear`` layers back, in place."""
    for name, layer in layers(model).items():
        layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer.get_base_layer())
    return model


def architecture(pl_module) -> torch.nn.Module:
    """The adapted architecture: the module's model, or the policy a preference wrapper trains."""
    return getattr(pl_module.model, "policy", pl_module.model)


class MergeOnSave(Callback):
    """Checkpoints hold the merged weights; the adapters ride along for ``resume=``. See the module docstring."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        pl_module.strict_loading = False  # a checkpoint's merged names are not the adapted model's; on_load_checkpoint restores

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        model = architecture(pl_module)
        state = checkpoint["state_dict"]
        others = {k: v for k, v in state.items() if not k.startswith(PREFIX)}  # the module's own buffers (skipped_steps)
        checkpoint["state_dict"] = {**{PREFIX + k: v for k, v in merged_state(model).items()}, **others}
        checkpoint[ADAPTERS] = adapter_state(model)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if ADAPTERS not in checkpoint:
            raise ConfigError("resume=: the checkpoint holds no LoRA adapters (it was not written by finetune.method=lora): resume with the run's own finetune.method")
        adapters = checkpoint[ADAPTERS]
        missing = set(adapter_state(architecture(pl_module))) - set(adapters)
        if missing:
            raise ConfigError(f"resume=: the checkpoint's LoRA adapters do not fit this run's ({len(missing)} missing, e.g. {sorted(missing)[0]}): resume with the run's finetune.lora_* settings")
        architecture(pl_module).load_state_dict(adapters, strict=False)
        others = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(PREFIX)}
        pl_module.load_state_dict(others, strict=False)
