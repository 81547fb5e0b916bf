"""``trainer.kernels``: how the training loss gets from the last hidden states to a number.

- ``torch``: the model computes its (B, T, V) logits and ``lm_loss`` takes the
  cross-entropy of them, the reference every other path is checked against;
- ``chunked``: a fused linear + cross-entropy in plain PyTorch. It takes the input of the
  output layer and the layer's weight, and goes through the B·T rows a chunk at a time:
  each chunk's logits, their softmax and at once their gradient (as Liger does), so only
  one chunk's logits ever exist and the backward pass is a scaling of stored gradients.
  Exact in fp32 (label smoothing and z-loss included), and runs on any device;
- ``liger``: Liger-Kernel's ``LigerFusedLinearCrossEntropyLoss`` (Triton, so CUDA only).
  Supports z-loss; refuses label smoothing, whose plain likelihood it cannot report;
- ``cce``: Apple's Cut Cross-Entropy (Wijmans et al. 2024), whose Triton kernels never
  write the logits to memory at all (CUDA only). Refuses z-loss and label smoothing;
- ``auto``: the plain path on a CPU, and on CUDA the first of ``AUTO_ORDER`` that is
  installed and supports the loss options.

A fused path needs a model with ``supports_features`` (see ``Architecture``); the plain
path needs nothing. Torch, Liger and CCE are imported on first use.
"""

from __future__ import annotations

import importlib.util
from typing import Callable

import torch

from lmforge.engine.config import LossConfig
from lmforge.engine.losses import IGNORE_INDEX, LossParts
from lmforge.errors import ConfigError

KERNELS = ("auto", "torch", "chunked", "liger", "cce")
# what auto tries on CUDA, fastest first: set from tests/benchmarks/bench_gpu.py's figures
AUTO_ORDER = ("cce", "liger", "chunked")
CHUNK_BYTES = 1 << 29  # fp32 logits of one chunk at most: 512 MiB, 2,048 rows of GPT-2's 50,304 columns

FusedLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], LossParts]
_INSTALL = {"liger": "pip install liger-kernel", "cce": "pip install cut-cross-entropy"}
_MODULE = {"liger": "liger_kernel", "cce": "cut_cross_entropy"}
_IMPORT = {"liger": "liger_kernel.transformers.fused_linear_cross_entropy", "cce": "cut_cross_entropy"}


def refusal(name: str, cfg: LossConfig) -> str | None:
    """Why path ``name`` cannot compute the loss ``cfg`` asks for, or None."""
    if name == "liger" and cfg.label_smoothing:
        return f"with loss.label_smoothing={cfg.label_smoothing} Liger reports only the smoothed loss, not the plain likelihood train/ppl needs"
    if name == "cce" and (cfg.label_smoothing or cfg.z_loss):
        key = "loss.z_loss" if cfg.z_loss else "loss.label_smoothing"
        return f"Cut Cross-Entropy has neither label smoothing nor z-loss, and {key}={cfg.z_loss or cfg.label_smoothing}"
    return None


def available(name: str) -> str | None:
    """Why path ``name`` cannot run here, or None."""
    if name in ("liger", "cce"):
        if not torch.cuda.is_available():
            return "it runs Triton kernels on a CUDA device, and none is available"
        if importlib.util.find_spec(_MODULE[name]) is None:
            return f"{_MODULE[name]} is not installed ({_INSTALL[name]}, or pip install 'lmforge[gpu]')"
        if importlib.util.find_spec("triton") is None:
            return "Triton is not installed (it comes with torch's CUDA wheels)"
        try:  # a library built against another Triton can fail on import: auto then goes on to the next path
            importlib.import_module(_IMPORT[name])
        except Exception as e:  # noqa: BLE001 - any failure means the path cannot run; the message says which
            return f"{_IMPORT[name]} does not import here ({type(e).__name__}: {e}); try another version of it"
    return None


def choose(name: str, cfg: LossConfig, device: torch.device, model: torch.nn.Module) -> str:
    """The path that ``trainer.kernels=name`` runs on ``device``; a named path that cannot run
    raises ``ConfigError`` saying why and what to do."""
    if name not in KERNELS:
        raise ConfigError(f"trainer.kernels={name}: must be one of {', '.join(KERNELS)}; e.g. trainer.kernels=auto")
    fused_ok = getattr(model, "supports_features", False)
    if name == "auto":
        if device.type != "cuda" or not fused_ok:
            return "torch"
        return next((k for k in AUTO_ORDER if available(k) is None and refusal(k, cfg) is None), "torch")
    if name == "torch":
        return name
    if not fused_ok:
        raise ConfigError(
            f"trainer.kernels={name}: the model ({type(model).__name__}) does not expose the input of its output "
            f"layer (supports_features), which a fused loss needs: use trainer.kernels=torch or auto"
        )
    why = refusal(name, cfg)
    if not why and name in ("liger", "cce"):
        why = available(name) if device.type == "cuda" else f"it runs Triton kernels on a CUDA device, and this run trains on {device.type}"
    if why:
        raise ConfigError(f"trainer.kernels={name} cannot run: {why}. Use trainer.kernels=auto, or chunked (any device, every loss option)")
    return name


def build(name: str, cfg: LossConfig, chunk_rows: int | None = None) -> FusedLoss | None:
    """The fused loss for path ``name`` (after ``choose``), or None for the plain path.

    The loss takes ``features`` (B, T, C), the output layer's ``weight`` (V, C) and
    ``targets`` (B, T), and returns ``LossParts`` as ``lm_loss`` does.
    """
    if name == "torch":
        return None
    if name == "chunked":
        return _Chunked(cfg, chunk_rows)
    if name == "liger":
        return _Liger(cfg)
    return _CCE(cfg)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The matmul dtype autocast would pick for ``x``'s device (bf16 under bf16-mixed), else its own."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


def _flat(features, weight, targets):
    dtype = _compute_dtype(features)
    x = features.reshape(-1, features.size(-1)).to(dtype)  # (N, C)
    return x, weight.to(dtype), targets.reshape(-1)  # (V, C), (N,)


class _Chunked:
    def __init__(self, cfg: LossConfig, chunk_rows: int | None) -> None:
        self.cfg, self.chunk_rows = cfg, chunk_rows

    @torch.compiler.disable  # a Python loop over chunks: the compiled model hands over its features here
    def __call__(self, features, weight, targets) -> LossParts:
        x, w, t = _flat(features, weight, targets)
        rows = self.chunk_rows or 1 << max(0, (CHUNK_BYTES // (4 * w.size(0))).bit_length() - 1)  # a power of two
        with torch.autocast(x.device.type, enabled=False):
            loss, nll, z, count = _ChunkedCE.apply(x, w, t, self.cfg.label_smoothing, self.cfg.z_loss, rows, torch.is_grad_enabled())
        return LossParts(loss, nll, z if self.cfg.z_loss else torch.zeros_like(z), count)  # as lm_loss: 0 without z-loss


def _chunk_terms(logits, targets, keep, scale, smoothing: float, z_weight: float):
    """One chunk: (n, V) logits -> their gradient in their dtype (scaled by ``scale``,
    1/predicted positions) and the summed nll, lse^2 and uniform cross-entropy of the kept
    rows, all computed in fp32."""
    dtype, logits = logits.dtype, logits.float()
    keepf = keep.float()
    lse = torch.logsumexp(logits, dim=-1)  # (n,)
    safe = torch.where(keep, targets, 0)
    nll = ((lse - logits.gather(1, safe[:, None]).squeeze(1)) * keepf).sum()
    z = (lse.square() * keepf).sum()
    uniform = ((lse - logits.mean(dim=-1)) * keepf).sum()
    # d/dlogits of (1-s)·nll + s·uniform + w·lse^2 = softmax·(1 + 2w·lse) - (1-s)·onehot - s/V
    grad = torch.exp(logits - lse[:, None]) * (1.0 + 2.0 * z_weight * lse)[:, None] - smoothing / logits.size(1)
    grad = grad.scatter_add(1, safe[:, None], torch.full_like(lse, smoothing - 1.0)[:, None])
    return (grad * (keepf * scale)[:, None]).to(dtype), nll, z, uniform


_compiled_terms: dict[str, Callable] = {}


def _terms_for(device: torch.device) -> Callable:
    """On CUDA the chunk's elementwise work is compiled into a few kernels (one read of the
    logits, one write of their gradient); elsewhere it runs eagerly."""
    if device.type != "cuda":
        return _chunk_terms
    if "cuda" not in _compiled_terms:
        _compiled_terms["cuda"] = torch.compile(_chunk_terms, dynamic=False)
    return _compiled_terms["cuda"]


def _accumulate(total: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``total + a @ b`` with ``total`` fp32: on CUDA one GEMM with bf16 inputs and fp32
    output (``out_dtype``), so no (V, C) low-precision partial sum is written and re-read."""
    if a.dtype != torch.float32 and a.is_cuda:
        try:
            return torch.addmm(total, a, b, out_dtype=torch.float32)
        except (TypeError, RuntimeError):  # a torch without addmm(out_dtype=)
            pass
    return total.add_((a @ b).float())


class _ChunkedCE(torch.autograd.Function):
    """Linear + cross-entropy over row chunks, the gradient computed in the forward pass."""

    @staticmethod
    def forward(ctx, x, w, targets, smoothing: float, z_weight: float, rows: int, grads: bool):
        # x (N, C), w (V, C) in the compute dtype, targets (N,); grads: the caller's grad mode
        keep = targets != IGNORE_INDEX
        count = keep.sum()
        scale = 1.0 / count.clamp(min=1).float()  # (): the mean over predicted positions
        grad_x = torch.empty_like(x) if grads and ctx.needs_input_grad[0] else None
        grad_w = torch.zeros(w.shape, dtype=torch.float32, device=w.device) if grads and ctx.needs_input_grad[1] else None
        sums = torch.zeros(3, dtype=torch.float32, device=x.device)  # nll, lse^2, uniform
        terms = _terms_for(x.device)
        for start in range(0, x.size(0), rows):
            xc = x[start : start + rows]  # (n, C)
            logits = xc @ w.t()  # (n, V) in the compute dtype; fp32 only inside the compiled terms on CUDA
            grad, nll, z, uniform = terms(logits, targets[start : start + rows], keep[start : start + rows], scale, smoothing, z_weight)
            sums += torch.stack([nll, z, uniform])
            if grad_x is not None:
                grad_x[start : start + rows] = grad @ w
            if grad_w is not None:
                grad_w = _accumulate(grad_w, grad.t(), xc)
        nll, z, uniform = sums.unbind()
        loss = ((1.0 - smoothing) * nll + smoothing * uniform + z_weight * z) * scale
        ctx.save_for_backward(grad_x, grad_w)
        ctx.weight_dtype = w.dtype
        ctx.mark_non_differentiable(nll, z, count)
        return loss, nll, z, count

    @staticmethod
    def backward(ctx, grad_loss, *_):
        grad_x, grad_w = ctx.saved_tensors
        dx = grad_x * grad_loss.to(grad_x.dtype) if grad_x is not None else None
        dw = (grad_w * grad_loss).to(ctx.weight_dtype) if grad_w is not None else None
        return dx, dw, None, None, None, None, None


class _Liger:
    def __init__(self, cfg: LossConfig) -> None:
        from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss

        self.z_loss = cfg.z_loss
        # the weight's gradient summed over chunks in fp32, the master weights' dtype
        self.fn = LigerFusedLinearCrossEntropyLoss(
            ignore_index=IGNORE_INDEX, lse_square_scale=cfg.z_loss, return_z_loss=True, accum_dtype=torch.float32
        )

    @torch.compiler.disable
    def __call__(self, features, weight, targets) -> LossParts:
        x, w, t = _flat(features, weight, targets)
        count = (t != IGNORE_INDEX).sum()
        with torch.autocast(x.device.type, enabled=False):
            out = self.fn(w, x, t)
        loss, z_mean = out.loss, out.z_loss.float()  # both means over predicted positions; loss includes z
        nll_sum = ((loss - z_mean) * count).detach()
        z_sum = (z_mean / self.z_loss * count).detach() if self.z_loss else loss.new_zeros(())
        return LossParts(loss, nll_sum, z_sum, count)


class _CCE:
    def __init__(self, cfg: LossConfig) -> None:
        from cut_cross_entropy import linear_cross_entropy

        self.fn = linear_cross_entropy

    @torch.compiler.disable
    def __call__(self, features, weight, targets) -> LossParts:
        x, w, t = _flat(features, weight, targets)
        count = (t != IGNORE_INDEX).sum()
        with torch.autocast(x.device.type, enabled=False):
            # filter_eps=None: exact gradients. CCE's default skips blocks whose softmax values are all
            # below 2.4e-4 in bf16, and at initialisation every value is about 1/V (2e-5 for GPT-2)
            loss = self.fn(x, w, t, ignore_index=IGNORE_INDEX, reduction="mean", filter_eps=None)
        loss = torch.where(count > 0, loss, loss.new_zeros(()))  # no predicted position: 0, as lm_loss
        return LossParts(loss, (loss * count).detach(), loss.new_zeros(()), count)
