"""The LightningModule that trains any architecture meeting the contract."""

from __future__ import annotations

import contextlib
import logging
import math
from typing import NamedTuple

import lightning as L
import torch

from lmforge.contracts import Optimizer, Scheduler
from lmforge.engine.config import LossConfig
from lmforge.engine.losses import LossParts, lm_loss
from lmforge.engine.metrics import MacroPRF, bits_per_byte, topk_hits
from lmforge.engine.optim import build_optimizer, lr_lambda
from lmforge.errors import ConfigError, LmforgeError

log = logging.getLogger("lmforge")


class NonFiniteError(LmforgeError):
    """The loss or the gradient became NaN or infinite; the update of that step is never applied."""


class _Pending(NamedTuple):
    """One step's non-finite flags and values, on their way to the host without a sync."""

    step: int
    host: torch.Tensor  # (4,): bad loss, bad gradient norm, loss, gradient norm
    event: torch.cuda.Event | None  # recorded after the copy; None when the values are on the CPU

    @classmethod
    def record(cls, step: int, bad: torch.Tensor, values: torch.Tensor) -> _Pending:
        packed = torch.cat([bad.float(), values.detach()])
        if not packed.is_cuda:
            return cls(step, packed, None)
        host = torch.empty(4, pin_memory=True)
        host.copy_(packed, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return cls(step, host, event)

    def bad(self) -> bool:
        if self.event is not None:
            self.event.synchronize()  # waits only for this step's backward, not the work queued since
        return bool(self.host[:2].any())

    def read(self) -> tuple[list[bool], list[float]]:
        return [bool(x) for x in self.host[:2]], self.host[2:].tolist()


class LMModule(L.LightningModule):
    """Trains on ``(inputs, targets)`` batches, both (B, T), targets -100 where not predicted.

    The objective (causal or masked) lives in the batches the data module builds, so this
    module only computes ``lm_loss(model(inputs).logits, targets)``, unless the model
    defines its own ``training_loss(inputs, targets) -> LossParts`` (a wrapper training on
    preference pairs); validation always scores ``model(inputs).logits``. Under
    ``trainer.compile`` the loss is compiled together with the model, so the fp32 upcast and
    the cross-entropy fuse instead of writing an fp32 copy of the (B, T, V) logits. A fused
    ``trainer.kernels`` path (``lmforge.engine.kernels``) replaces that pair: the model hands
    over the input of its output layer, and the loss never holds the logits. Batches may
    carry a third tensor, each position's document id, which goes to the model as
    ``documents`` (``model.attention=document``).

    Gradient clipping happens here, in ``on_before_optimizer_step``, rather than through
    ``Trainer(gradient_clip_val=...)``: Lightning refuses that argument for a fused AdamW
    under mixed precision. The same global norm, computed even when clipping is off, is
    logged and checked for NaN/inf together with the loss.

    Where the check is acted on depends on the optimizer:

    - a fused optimizer (AdamW's default on CUDA) takes the flag as ``found_inf``, the input
      ``torch.amp.GradScaler`` uses, and its kernel skips the whole update on the device. The
      host reads the flag later, when it next syncs anyway: the next step's check (the
      previous flag by then sits in pinned memory), validation, a checkpoint, the end. So no
      step waits for the device, and no checkpoint is written before a bad step is known;
    - any other optimizer needs the flag on the host before its step: one device sync a
      step, on a large model hidden behind the step.

    Under fp16 with a GradScaler, overflowing gradients are the scaler's to skip and only
    the loss is checked.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        vocab_size: int,
        optimizer: Optimizer | None = None,
        scheduler: Scheduler | None = None,
        loss: LossConfig | None = None,
        max_steps: int = 0,
        grad_clip: float | None = None,
        nonfinite: str = "stop",
        compile: bool = False,
        bytes_per_token: float | None = None,
        kernels: str = "torch",
        sdpa_backend: str = "auto",
    ) -> None:
        """``optimizer`` and ``scheduler`` are components (or their ``Config``s); a module
        that only validates needs neither. ``max_steps`` sizes the schedule. ``kernels`` is
        ``trainer.kernels``: the training loss's path (``lmforge.engine.kernels``);
        ``sdpa_backend`` is ``trainer.sdpa_backend``, the attention kernel of training and
        validation steps."""
        super().__init__()
        self.model = model
        self.optimizer, self.scheduler, self.loss_cfg = optimizer, scheduler, loss or LossConfig()
        self.max_steps, self.grad_clip, self.nonfinite = max_steps, grad_clip, nonfinite
        self.compile_model, self.bytes_per_token = compile, bytes_per_token
        self.kernels, self.sdpa_backend = kernels, sdpa_backend
        self._fused = None  # the fused loss trainer.kernels chose, or None for the plain path
        self.prf = MacroPRF(vocab_size)
        self.register_buffer("skipped_steps", torch.zeros((), dtype=torch.long))  # saved with checkpoints
        self._compiled: torch.nn.Module | None = None
        self._compiled_loss = None  # model + loss in one graph, for training steps
        self._window_loss: torch.Tensor | None = None  # summed over the micro-batches of one step
        self._pending: _Pending | None = None  # a fused step's non-finite flag, not yet read on the host

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self._choose_kernels()
        # Only training and validation go through the compiled model: generation calls the plain
        # one with growing shapes and a KV cache, which would recompile again and again. Set past
        # nn.Module's __setattr__ so the compiled wrapper does not become a second submodule
        # (its parameters would appear twice in the state dict, under _orig_mod).
        if self.compile_model and self._compiled is None:
            object.__setattr__(self, "_compiled", torch.compile(self.model))
            object.__setattr__(self, "_compiled_loss", torch.compile(self._loss))

    def _choose_kernels(self) -> None:
        """``trainer.kernels`` and ``trainer.sdpa_backend`` for the device the run trains on."""
        from lmforge.engine import kernels

        # the module is not on its device yet: the strategy's root device is where it trains
        device = self.trainer.strategy.root_device if self._trainer is not None else self.device
        # a fused loss reads lm_head's weight outside the model's forward, where FSDP holds it sharded
        sharded = self._trainer is not None and "FSDP" in type(self.trainer.strategy).__name__
        if sharded and self.kernels not in ("auto", "torch"):
            raise ConfigError(f"trainer.kernels={self.kernels} does not run under trainer.strategy=fsdp: use trainer.kernels=auto or torch")
        path = kernels.choose("torch" if sharded else self.kernels, self.loss_cfg, device, self.model)
        self._fused = kernels.build(path, self.loss_cfg)
        if self.kernels == "auto" and device.type == "cuda":
            log.info("trainer.kernels=auto: the %s loss path", path)
        if self.sdpa_backend != "auto" and device.type != "cuda":
            raise ConfigError(
                f"trainer.sdpa_backend={self.sdpa_backend} picks a CUDA attention kernel, and this run trains on "
                f"{device.type}: use trainer.sdpa_backend=auto"
            )

    def forward(self, inputs: torch.Tensor, documents: torch.Tensor | None = None) -> torch.Tensor:
        model = self.model if self._compiled is None else self._compiled
        return model(inputs, **({} if documents is None else {"documents": documents})).logits  # (B, T) -> (B, T, V)

    def _loss(self, inputs: torch.Tensor, targets: torch.Tensor, documents: torch.Tensor | None = None) -> LossParts:
        if (own := getattr(self.model, "training_loss", None)) is not None:
            return own(inputs, targets)  # a model trained on something else than next tokens (preference pairs)
        extra = {} if documents is None else {"documents": documents}
        if self._fused is None:
            return lm_loss(self.model(inputs, **extra).logits, targets, self.loss_cfg)
        features = self.model(inputs, return_logits=False, **extra).features  # (B, T, C): no (B, T, V) logits
        return self._fused(features, self.model.lm_head.weight, targets)

    def _attention(self):
        """``trainer.sdpa_backend``: under ``torch.compile`` the kernel is fixed when the step is
        traced, in eager mode at each call; the backward pass follows the forward's choice."""
        if self.sdpa_backend == "auto":
            return contextlib.nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = {"flash": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "math": "MATH"}
        return sdpa_kernel([getattr(SDPBackend, backend[self.sdpa_backend])])

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        inputs, targets, *documents = batch  # (B, T), (B, T), and (B, T) document ids when the data has them
        with self._attention():
            parts = (self._compiled_loss or self._loss)(inputs, targets, *documents)
        loss = parts.loss.detach()
        self._window_loss = loss if self._window_loss is None else self._window_loss + loss
        count = parts.count.clamp(min=1)
        self.log("train/loss", parts.loss, prog_bar=True)
        self.log("train/ppl", torch.exp((parts.nll_sum / count).clamp(max=30)))
        if self.loss_cfg.z_loss:
            self.log("train/z_loss", parts.z_sum / count)
        return parts.loss

    def _grad_norm(self) -> torch.Tensor:
        """The global gradient norm, clipped to ``grad_clip`` when set."""
        wrapped = self.trainer.strategy.model
        if hasattr(wrapped, "clip_grad_norm_"):  # FSDP: each rank holds a shard, its method reduces over all
            return wrapped.clip_grad_norm_(self.grad_clip or math.inf)
        params = [p for p in self.parameters() if p.grad is not None]
        if self.grad_clip:
            return torch.nn.utils.clip_grad_norm_(params, self.grad_clip, foreach=True)
        return torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)

    def on_before_optimizer_step(self, optimizer) -> None:
        self.flush_nonfinite()  # the previous step's flag: long computed, so reading it waits for nothing
        optimizer.__dict__.pop("found_inf", None)
        norm = self._grad_norm()
        self.log("train/grad_norm", norm)
        loss, self._window_loss = self._window_loss, None
        if loss is None:  # Lightning skipped the closure: nothing was computed this step
            return
        values = torch.stack([loss.float(), norm.float()])  # (2,): loss, gradient norm
        bad = ~torch.isfinite(values)
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is not None:
            bad[1] = False  # the GradScaler skips overflowing steps itself
        if self.trainer.world_size > 1:  # every rank must take the same decision, or the others hang
            bad = self.trainer.strategy.reduce(bad.float(), reduce_op="sum") > 0
        if getattr(optimizer, "_step_supports_amp_scaling", False) and scaler is None:
            skip = bad.any().float()  # (), as torch.amp.GradScaler passes it
            optimizer.found_inf = skip  # the fused kernel applies nothing, not even its step count, when 1
            if self.nonfinite == "skip":
                self.skipped_steps += skip.long()
            self._pending = _Pending.record(self.trainer.global_step, bad, values)
        elif bool(bad.any()):  # the one host sync per step, see the class docstring
            if self.nonfinite == "skip":
                for p in self.parameters():  # no gradient, so the optimizer leaves the weights and its state alone
                    p.grad = None
                self.skipped_steps += 1
            self._on_nonfinite(self.trainer.global_step, bad.tolist(), values.tolist())
        if self.nonfinite == "skip":
            self.log("train/skipped_steps", self.skipped_steps.float())

    def flush_nonfinite(self) -> None:
        """Act on a fused step's deferred flag: raise under ``stop``, warn under ``skip``.

        Called before anything that would record the state after that step: the next step's
        check, validation, a checkpoint, the end of training.
        """
        pending, self._pending = self._pending, None
        if pending is not None and pending.bad():
            self._on_nonfinite(pending.step, *pending.read())

    def _on_nonfinite(self, step: int, bad: list[bool], values: list[float]) -> None:
        """``values`` are this rank's: under DDP another rank's may be the non-finite one."""
        what, value = ("loss", values[0]) if bad[0] else ("gradient norm", values[1])
        if self.nonfinite == "stop":
            raise NonFiniteError(
                f"non-finite {what} at global step {step} (here {value}): that update was not applied, so no "
                f"checkpoint holds this state and checkpoints/last.ckpt is the last good one. Lower optimizer.lr, "
                f"raise scheduler.warmup_steps, set trainer.gradient_clip_val, or set trainer.nonfinite=skip to "
                f"drop such steps and go on"
            )
        log.warning("non-finite %s at global step %d (here %s): optimizer step skipped (%d so far)", what, step, value, int(self.skipped_steps))

    def on_validation_start(self) -> None:
        self.flush_nonfinite()

    def on_train_end(self) -> None:
        self.flush_nonfinite()

    def on_validation_epoch_start(self) -> None:
        self._val_sum = torch.zeros(4, device=self.device)  # (nll, predicted positions, top-1 hits, top-5 hits)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        inputs, targets, *documents = batch  # (B, T), (B, T), and (B, T) document ids when the data has them
        with self._attention():
            logits = self(inputs, *documents)  # (B, T, V)
        parts = lm_loss(logits, targets, self.loss_cfg)
        flat_logits, flat_targets = logits.reshape(-1, logits.size(-1)), targets.reshape(-1)  # (N, V), (N,)
        preds, hits = topk_hits(flat_logits, flat_targets, (1, 5))
        self._val_sum += torch.stack([parts.nll_sum, parts.count.float(), *hits.float()])
        self.prf.update(preds, flat_targets)

    def on_validation_epoch_end(self) -> None:
        # token-weighted over the whole pass, so batches with few predicted positions weigh little
        total = self.trainer.strategy.reduce(self._val_sum, reduce_op="sum")
        count = total[1].clamp(min=1)
        loss = total[0] / count  # plain cross-entropy in nats: no label smoothing or z-loss
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/ppl", torch.exp(loss.clamp(max=30)))
        if self.bytes_per_token:
            self.log("val/bpb", bits_per_byte(loss, self.bytes_per_token))
        self.log("val/top1", total[2] / count)
        self.log("val/top5", total[3] / count)
        self.log_dict({f"val/{k}": v for k, v in self.prf.compute().items()})
        self.prf.reset()

    def configure_optimizers(self):
        on_cuda = self.device.type == "cuda"
        optimizer = build_optimizer(self.model, self.optimizer, on_cuda)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(self.scheduler, self.max_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
