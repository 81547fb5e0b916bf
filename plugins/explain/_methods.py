"""The explanation methods, as functions of a model, a (T,) row of token ids and a target.

Each works on any architecture through the optional parts of the ``Architecture``
contract (``lmforge.contracts``): attention maps from ``return_attention``, attributions
through ``get_input_embeddings()``, the logit lens through ``unembed`` and
``return_hidden``. ``unsupported`` says which methods a model lacks the part for.

The scalar explained is the log-probability of the target token at the target position,
as Captum's ``LLMAttribution`` explains a generated token. Shapes: T tokens, L layers,
H heads, C width, V vocabulary.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch

METHODS = ("attention", "saliency", "ig", "logit-lens")
IG_MAX_PASSES = 11  # IG batches its steps: n_steps points in at most this many forward+backward passes


@dataclass
class Target:
    """What is explained: the log-probability of ``token`` in the logits at ``position``."""

    position: int
    token: int


def unsupported(model: torch.nn.Module, ids: torch.Tensor) -> dict[str, str]:
    """The methods ``model`` cannot run, each with the reason in words."""
    missing = {}
    with torch.no_grad():
        maps = model(ids[None, :1], return_attention=True).attention
    if not maps:
        missing["attention"] = "it has no attention layers (return_attention=True gives no maps)"
    if not callable(getattr(model, "get_input_embeddings", None)):
        for method in ("saliency", "ig"):
            missing[method] = "it exposes no token embedding layer (get_input_embeddings)"
    if not callable(getattr(model, "unembed", None)):
        missing["logit-lens"] = "it exposes no residual stream (unembed and return_hidden)"
    return missing


def predict(model: torch.nn.Module, ids: torch.Tensor, position: int) -> tuple[int, torch.Tensor]:
    """The likeliest token at ``position``, and that position's probabilities (V,)."""
    with torch.no_grad():
        probs = model(ids[None]).logits[0, position].float().softmax(-1)
    return int(probs.argmax()), probs


def attention(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Every layer's attention maps, (L, H, T, T): row i is where position i looks."""
    with torch.no_grad():
        maps = model(ids[None], return_attention=True).attention
    return torch.stack([m[0].float() for m in maps])


def rollout(maps: torch.Tensor) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020), (T, T): how much each position draws on each
    input token through every layer. The residual connection is modelled as half of each
    layer's mixing: Â = (mean over heads + I) / 2, rows renormalised; R = Â_L ··· Â_1."""
    T = maps.size(-1)
    eye = torch.eye(T, dtype=maps.dtype, device=maps.device)
    result = eye
    for layer in maps:  # (H, T, T), first layer first
        mixed = 0.5 * layer.mean(0) + 0.5 * eye
        result = (mixed / mixed.sum(-1, keepdim=True)) @ result
    return result


@contextmanager
def _embeddings_replaced(model: torch.nn.Module):
    """Inside the block, ``holder[0]`` (N, T, C), when set, replaces the token embeddings'
    output: attributions perturb the embedding, and the model runs unchanged around it."""
    holder: list = [None]
    handle = model.get_input_embeddings().register_forward_hook(lambda module, args, out: holder[0])
    try:
        yield holder
    finally:
        handle.remove()


def embed(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The token embeddings of ``ids``, (T, C), detached."""
    with torch.no_grad():
        return model.get_input_embeddings()(ids).detach()


def _scorer(model: torch.nn.Module, ids: torch.Tensor, target: Target, holder: list):
    """f(embeddings (N, T, C)) -> (N,): the target's log-probability for each row.

    A model with ``supports_features`` sends only the target position through its head:
    the (N, T, V) logits, their backward and the head's matmul at every other position
    would cost IG about a tenth of its time for nothing. Others give their logits."""
    features = getattr(model, "supports_features", False)

    def f(embeds: torch.Tensor) -> torch.Tensor:
        holder[0] = embeds
        rows = ids[None].expand(embeds.size(0), -1)  # (N, T)
        if features:
            logits = model.lm_head(model(rows, return_logits=False).features[:, target.position]).float()  # (N, V)
        else:
            logits = model(rows).logits[:, target.position].float()  # (N, V)
        return logits.log_softmax(-1)[:, target.token]

    return f


def saliency(model: torch.nn.Module, ids: torch.Tensor, target: Target) -> dict[str, list[float]]:
    """One forward and backward: the gradient of the target's log-probability with respect to
    each token's embedding. ``gradient`` is its L2 norm per token (Simonyan et al. 2014's
    saliency, as Captum's ``Saliency`` before the norm); ``grad_x_input`` the dot product of
    gradient and embedding per token (Captum's ``InputXGradient`` summed over the width)."""
    emb = embed(model, ids)[None].requires_grad_(True)  # (1, T, C)
    with _embeddings_replaced(model) as holder:
        score = _scorer(model, ids, target, holder)(emb)
        (grad,) = torch.autograd.grad(score.sum(), emb)
    grad = grad[0].float()  # (T, C)
    return {
        "gradient": grad.norm(dim=-1).tolist(),
        "grad_x_input": (grad * emb[0].detach().float()).sum(-1).tolist(),
        "score": float(score.detach()),
    }


def ig_schedule(n_steps: int) -> tuple[int, int]:
    """IG's points: how many the first, uniform pass takes (the ends included), and how many
    each later pass adds, so that ``n_steps`` points take at most ``IG_MAX_PASSES`` passes."""
    first = min(n_steps, max(3, math.ceil(0.3 * n_steps)))
    return first, max(1, math.ceil((n_steps - first) / (IG_MAX_PASSES - 1)))


def baseline_embeddings(model: torch.nn.Module, ids: torch.Tensor, baseline: str, pad_id: int | None) -> torch.Tensor:
    """The IG baseline, (T, C): every token's embedding replaced by the pad token's, or zeros."""
    emb = embed(model, ids)
    if baseline == "zero":
        return torch.zeros_like(emb)
    if pad_id is None:
        raise ValueError("the run's tokenizer has no pad token, so there is no pad baseline: pass --baseline zero")
    return embed(model, torch.full_like(ids, pad_id))


def integrated_gradients(
    model: torch.nn.Module, ids: torch.Tensor, target: Target, *, baseline: torch.Tensor, n_steps: int = 50
) -> dict:
    """Integrated gradients (Sundararajan et al. 2017) on the token embeddings, with the steps
    placed where the integral needs them.

    IG integrates the gradient of f along the straight path from ``baseline`` (T, C) to the
    text's embeddings x, and by the completeness axiom the attributions sum to
    f(x) − f(baseline). A trained model's f often changes in a sharp step somewhere on the
    path (attention flipping from one token to another), which a fixed grid of 50 points
    misses. So the path is sampled adaptively: a uniform first pass (the two ends included),
    then in each later pass the intervals whose trapezoid estimate ∫ ∇f·dx disagrees most
    with the change of f across them (known exactly from the forward passes) are halved.
    Every point costs one forward and one backward, batched: ``n_steps`` points in at most
    ``IG_MAX_PASSES`` passes. Returns the attribution per token (∇f·(x − baseline) summed
    over the width, integrated), f(x), f(baseline) and the convergence delta: the sum of
    the attributions minus f(x) − f(baseline), 0 for an exact integral.
    """
    if n_steps < 2:
        raise ValueError(f"--n-steps {n_steps}: integrated gradients needs 2 or more (the two ends of the path); the default is 50")
    x = embed(model, ids)  # (T, C)
    step = x - baseline  # (T, C)
    passes = 0

    def evaluate(alphas: list[float]) -> list[tuple[float, float, torch.Tensor]]:
        nonlocal passes
        passes += 1
        points = (baseline[None] + torch.tensor(alphas, dtype=x.dtype, device=x.device)[:, None, None] * step[None]).requires_grad_(True)
        with _embeddings_replaced(model) as holder:
            f = _scorer(model, ids, target, holder)(points)  # (N,)
            (grad,) = torch.autograd.grad(f.sum(), points)
        along = (grad.float() * step[None].float()).sum(-1)  # (N, T): each token's share of df/dα
        return list(zip(alphas, f.detach().float().tolist(), along))

    first, per_pass = ig_schedule(n_steps)
    points = evaluate(torch.linspace(0, 1, first).tolist())
    while len(points) < n_steps:
        errors = []
        for (a0, f0, g0), (a1, f1, g1) in zip(points, points[1:]):
            estimate = (a1 - a0) * float((g0 + g1).sum()) / 2
            errors.append((abs(estimate - (f1 - f0)), (a0 + a1) / 2))
        errors.sort(reverse=True)
        points = sorted(points + evaluate([mid for _, mid in errors[: min(per_pass, n_steps - len(points))]]), key=lambda p: p[0])
    attribution = sum((a1 - a0) * (g0 + g1) / 2 for (a0, _, g0), (a1, _, g1) in zip(points, points[1:]))  # (T,)
    f_input, f_baseline = points[-1][1], points[0][1]
    return {
        "attribution": attribution.tolist(),
        "f_input": f_input,
        "f_baseline": f_baseline,
        "delta": float(attribution.sum()) - (f_input - f_baseline),
        "n_steps": len(points),
        "passes": passes,
        "alphas": [p[0] for p in points],
    }


def logit_lens(model: torch.nn.Module, ids: torch.Tensor, target: Target, k: int = 5) -> dict:
    """The logit lens (nostalgebraist 2020): each layer's residual stream read through the final
    norm and the head. For every layer (0 = the embeddings) and position: the top ``k`` tokens
    and their probabilities, and the target token's probability at the target position."""
    with torch.no_grad():
        hidden = model(ids[None], return_hidden=True).hidden
        probs = torch.stack([model.unembed(h)[0].float().softmax(-1) for h in hidden])  # (L+1, T, V)
    top = probs.topk(min(k, probs.size(-1)), dim=-1)
    return {
        "top_ids": top.indices.tolist(),  # (L+1, T, k)
        "top_probs": top.values.tolist(),
        "target_prob": probs[:, target.position, target.token].tolist(),  # (L+1,)
        "probs": probs,  # the whole distributions, for tests; not written out
    }
