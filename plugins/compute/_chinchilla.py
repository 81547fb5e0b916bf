"""The numbers behind ``lmforge size``: Chinchilla's allocation and loss law, the transformer's
parameter count, and the fit of the law to a user's own runs.

Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models"):

- training compute C ≈ 6·N·D FLOPs for N parameters and D tokens (forward + backward);
- the compute-optimal allocation their three approaches agree on, N_opt ∝ C^0.5 and
  D_opt ∝ C^0.5, about 20 tokens per parameter (Approach 1, Table 3: 70B parameters and
  1.4T tokens at 5.76e23 FLOPs). With D = r·N and C = 6·N·D, N_opt = sqrt(C / 6r);
- the parametric loss L(N, D) = E + A/N^α + B/D^β (Approach 3), fitted with a Huber loss
  on log L from a grid of starting points.

The closed-form optimum of the *rounded* published law, N_opt = G·(C/6)^(β/(α+β)), gives
32B parameters at Chinchilla's budget, not 70B: Besiroglu et al. 2024 show that the
rounded fit is biased. That is why the allocation uses the tokens-per-parameter ratio and
the law only predicts a loss. numpy, scipy and matplotlib are imported inside the functions.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from lmforge.errors import ConfigError

TOKENS_PER_PARAM = 20.0  # Hoffmann et al. 2022, Approach 1


@dataclass(frozen=True)
class Law:
    """L(N, D) = E + A/N^alpha + B/D^beta, in nats per token."""

    E: float = 1.69
    A: float = 406.4
    B: float = 410.7
    alpha: float = 0.34
    beta: float = 0.28

    def loss(self, params: float, tokens: float) -> float:
        return self.E + self.A / params**self.alpha + self.B / tokens**self.beta

    def optimum(self, flops: float) -> tuple[float, float]:
        """The (N, D) minimising this law's loss at C = 6·N·D (Hoffmann et al., eq. 4)."""
        a, b = self.beta / (self.alpha + self.beta), self.alpha / (self.alpha + self.beta)
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))
        return g * (flops / 6) ** a, (flops / 6) ** b / g

    def as_dict(self) -> dict:
        return asdict(self)


CHINCHILLA = Law()

# ---------------------------------------------------------------------------------------
# Reading counts: 124M, 2.5B, 1e18, 5.76e23

SUFFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]?)\s*$")


def parse_count(text: str, flag: str) -> float:
    """A positive count with an optional K, M, B (or G) or T suffix, or in scientific notation."""
    found = _COUNT.match(str(text))
    suffix = found.group(2).upper() if found else None
    if not found or suffix not in SUFFIXES:
        raise ConfigError(
            f"{flag} {text}: not a count; write a number with an optional K, M, B or T suffix "
            f"(124M, 2.5B, 1.4T) or in scientific notation (1e18)"
        )
    value = float(found.group(1)) * SUFFIXES[suffix]
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{flag} {text}: must be a positive number, e.g. {flag} 1e18")
    return value


def human(value: float, unit: str = "") -> str:
    """124M, 2.48B, 1.40T: three significant figures."""
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}{unit}"
    return f"{value:.3g}{unit}"


# ---------------------------------------------------------------------------------------
# The allocation


@dataclass
class Allocation:
    params: float
    tokens: float
    flops: float
    asked: str  # flops | params | tokens | hours


def allocate(*, flops: float | None = None, params: float | None = None, tokens: float | None = None,
             ratio: float = TOKENS_PER_PARAM, asked: str = "flops") -> Allocation:
    """Chinchilla's compute-optimal (N, D, C) from any one of them, at ``ratio`` tokens per parameter."""
    if flops is not None:
        params = math.sqrt(flops / (6 * ratio))
        tokens = ratio * params
    elif params is not None:
        tokens = ratio * params
    elif tokens is not None:
        params = tokens / ratio
    else:
        raise ValueError("allocate() needs flops, params or tokens")
    return Allocation(params, tokens, 6 * params * tokens, asked)


# ---------------------------------------------------------------------------------------
# The transformer's parameter count, as GPT.num_params() counts it: every weight once (a
# tied output matrix once), learned position embeddings left out (nanoGPT's non-embedding).


def swiglu_hidden(n_embd: int, mlp_ratio: float) -> int:
    hidden = round(2 * mlp_ratio * n_embd / 3)  # plugins/models/_transformer.py: MLP
    return -(-hidden // 64) * 64


def transformer_params(model, n_layer: int, n_head: int, n_embd: int, vocab_size: int) -> int:
    """Parameters of ``model=transformer`` with the options of ``model`` (its config) at this shape."""
    bias = bool(model.bias)
    kv = model.n_kv_head if model.n_kv_head and n_head % model.n_kv_head == 0 else n_head
    kv_dim = kv * (n_embd // n_head)
    norm = n_embd * (2 if model.norm == "layernorm" and bias else 1)  # RMSNorm has no bias
    attention = n_embd * (n_embd + 2 * kv_dim) + n_embd * n_embd + bias * (n_embd + 2 * kv_dim + n_embd)
    if model.mlp == "swiglu":
        hidden = swiglu_hidden(n_embd, model.mlp_ratio)
        mlp = n_embd * 2 * hidden + hidden * n_embd + bias * (2 * hidden + n_embd)
    else:
        hidden = round(model.mlp_ratio * n_embd)
        mlp = n_embd * hidden + hidden * n_embd + bias * (hidden + n_embd)
    block = 2 * norm + attention + mlp
    embeddings = vocab_size * n_embd * (1 if model.tie_embeddings else 2)
    return n_layer * block + norm + embeddings


ASPECT = 64  # n_embd / n_layer: GPT-2 small and nanochat's depth x 64; Chinchilla 70B is ~100


def nearest_shape(model, vocab_size: int, target: float) -> dict:
    """The (n_layer, n_head, n_embd) whose count is nearest ``target``, preferring width ≈ 64·depth.

    Widths are multiples of 64 with 64-wide heads (32 below 256, for models small enough
    for a CPU); the score is |ln(P/target)| plus a small pull towards the aspect ratio.
    """
    best = None
    widths = [w for w in range(32, 256, 32)] + list(range(256, 32768 + 1, 64))
    for n_embd in widths:
        head = 64 if n_embd % 64 == 0 and n_embd >= 256 else 32
        n_head = n_embd // head
        for n_layer in range(max(1, n_embd // (4 * ASPECT)), min(200, 4 * n_embd // ASPECT) + 1):
            params = transformer_params(model, n_layer, n_head, n_embd, vocab_size)
            score = abs(math.log(params / target)) + 0.02 * abs(math.log(n_embd / (n_layer * ASPECT)))
            if best is None or score < best[0]:
                best = (score, dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, params=params))
    return best[1]


# ---------------------------------------------------------------------------------------
# Fitting the law to a user's runs (Approach 3) and the IsoFLOP minima (Approach 2)


@dataclass
class Point:
    params: float
    tokens: float
    loss: float
    run: str

    @property
    def flops(self) -> float:
        return 6 * self.params * self.tokens


HUBER_DELTA = 1e-3  # Hoffmann et al.: Huber loss on log L with delta 1e-3


def fit_law(points: list[Point]) -> tuple[Law, float]:
    """E, A, B, alpha, beta fitted to the points, as Hoffmann et al. fit theirs: L-BFGS on the
    Huber loss of ln L - LSE(a - alpha ln N, b - beta ln D, e). Their grid of starting
    points is cut to the few best of a cheaper one: for fixed exponents the law is linear
    in (E, A, B), so a grid over (alpha, beta) with non-negative least squares on the
    relative error ranks the starts. Returns the law and its Huber objective."""
    import numpy as np
    from scipy.optimize import minimize, nnls
    from scipy.special import logsumexp, softmax

    ln_n = np.log([p.params for p in points])
    ln_d = np.log([p.tokens for p in points])
    losses = np.array([p.loss for p in points])
    ln_l = np.log(losses)

    def objective(theta):
        a, b, e, alpha, beta = theta
        terms = np.stack([a - alpha * ln_n, b - beta * ln_d, np.full_like(ln_n, e)])  # (3, n)
        r = logsumexp(terms, axis=0) - ln_l
        small = np.abs(r) <= HUBER_DELTA
        value = np.where(small, 0.5 * r**2, HUBER_DELTA * (np.abs(r) - 0.5 * HUBER_DELTA)).sum()
        dr = np.where(small, r, HUBER_DELTA * np.sign(r))  # d huber / d r
        w = softmax(terms, axis=0) * dr  # d r / d term, times d huber / d r
        grad = np.array([w[0].sum(), w[1].sum(), w[2].sum(), -(w[0] * ln_n).sum(), -(w[1] * ln_d).sum()])
        return value, grad

    starts = []
    for alpha in np.linspace(0.05, 1.5, 30):
        for beta in np.linspace(0.05, 1.5, 30):
            design = np.stack([np.ones_like(ln_n), np.exp(-alpha * ln_n), np.exp(-beta * ln_d)], axis=1) / losses[:, None]
            (e, a, b), residual = nnls(design, np.ones_like(ln_n))
            starts.append((residual, [math.log(max(a, 1e-6)), math.log(max(b, 1e-6)), math.log(max(e, 1e-6)), alpha, beta]))
    starts.sort(key=lambda s: s[0])
    bounds = [(-20, 60), (-20, 60), (-20, 3), (0.01, 2.5), (0.01, 2.5)]
    best = None
    for _, theta in starts[:8]:
        found = minimize(objective, theta, jac=True, method="L-BFGS-B", bounds=bounds)
        if best is None or found.fun < best.fun:
            best = found
    a, b, e, alpha, beta = (float(v) for v in best.x)
    return Law(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=alpha, beta=beta), float(best.fun)


def isoflop_groups(points: list[Point], tolerance: float = 1.25) -> list[list[Point]]:
    """Runs whose 6·N·D lie within ``tolerance`` of each other: one group per compute budget."""
    groups: list[list[Point]] = []
    for p in sorted(points, key=lambda p: p.flops):
        if groups and p.flops <= groups[-1][0].flops * tolerance:
            groups[-1].append(p)
        else:
            groups.append([p])
    return groups


def isoflop_optimum(group: list[Point]) -> dict:
    """The loss-minimising size of one budget: a parabola in ln N through the runs
    (Hoffmann et al., Approach 2), or the best run when there is no interior minimum."""
    import numpy as np

    flops = float(np.exp(np.mean([math.log(p.flops) for p in group])))
    ln_n = np.array([math.log(p.params) for p in group])
    losses = np.array([p.loss for p in group])
    best = group[int(np.argmin(losses))]
    found = {"flops": flops, "runs": len(group), "params": best.params, "loss": best.loss, "from": "best run"}
    if len(set(ln_n.round(6))) >= 3:
        c2, c1, c0 = np.polyfit(ln_n, losses, 2)
        x = -c1 / (2 * c2) if c2 > 0 else None
        if x is not None and ln_n.min() <= x <= ln_n.max():
            found |= {"params": float(math.exp(x)), "loss": float(c0 + c1 * x + c2 * x * x), "from": "parabola",
                      "parabola": [float(c2), float(c1), float(c0)]}
    found["tokens"] = flops / (6 * found["params"])
    found["tokens_per_param"] = found["tokens"] / found["params"]
    return found


def fit(points: list[Point]) -> dict:
    """Everything ``lmforge size --fit`` reports: the fitted law, its allocation exponents,
    the IsoFLOP optimum per budget and the exponent those optima give."""
    import numpy as np

    law, objective = fit_law(points)
    budgets = [isoflop_optimum(g) for g in isoflop_groups(points) if len(g) >= 3]
    for b in budgets:  # the fitted law's own optimum at the budget, from all runs at once
        n, d = law.optimum(b["flops"])
        b["law_optimum"] = {"params": n, "tokens": d, "tokens_per_param": d / n, "loss": law.loss(n, d)}
    result = {
        "runs": len(points),
        "law": law.as_dict() | {"huber_objective": objective},
        "law_allocation": {"a": law.beta / (law.alpha + law.beta), "b": law.alpha / (law.alpha + law.beta)},
        "budgets": budgets,
        "isoflop_exponents": None,
        "points": [asdict(p) | {"flops": p.flops} for p in points],
    }
    usable = [b for b in budgets if b["from"] == "parabola"]
    if len(usable) >= 2:
        a, _ = np.polyfit([math.log(b["flops"]) for b in usable], [math.log(b["params"]) for b in usable], 1)
        result["isoflop_exponents"] = {"a": float(a), "b": float(1 - a), "budgets": len(usable)}  # N_opt ∝ C^a, D_opt ∝ C^b = C^(1-a)
    if budgets:
        result["tokens_per_param"] = float(np.exp(np.mean([math.log(b["tokens_per_param"]) for b in budgets])))
    return result


def plot(result: dict, path) -> None:
    """Two panels: loss against parameters per budget (runs, parabola, the fitted law) and
    the optimal size against compute with Chinchilla's 20 tokens per parameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from lmforge.files import atomic_path

    law = Law(**{k: result["law"][k] for k in ("E", "A", "B", "alpha", "beta")})
    points = [Point(p["params"], p["tokens"], p["loss"], p["run"]) for p in result["points"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    colors = plt.get_cmap("viridis")
    groups = isoflop_groups(points)
    for i, group in enumerate(groups):
        color = colors(i / max(1, len(groups) - 1) * 0.85)
        c = float(np.exp(np.mean([math.log(p.flops) for p in group])))
        n = np.array([p.params for p in group])
        left.scatter(n, [p.loss for p in group], color=color, zorder=3, label=f"C = {c:.2g} FLOPs")
        grid = np.geomspace(n.min() / 1.5, n.max() * 1.5, 100)
        left.plot(grid, [law.loss(x, c / (6 * x)) for x in grid], color=color, ls=":", lw=1)
        budget = next((b for b in result["budgets"] if abs(math.log(b["flops"] / c)) < 0.1), None)
        if budget and "parabola" in budget:
            x = np.geomspace(n.min(), n.max(), 100)
            left.plot(x, np.polyval(budget["parabola"], np.log(x)), color=color, lw=1.5)
        if budget:
            left.scatter([budget["params"]], [budget["loss"]], marker="*", s=160, color=color, edgecolor="black", zorder=4)
    left.set_xscale("log")
    left.set_xlabel("parameters N")
    left.set_ylabel("final validation loss (nats/token)")
    left.set_title("IsoFLOP curves: runs, parabola (—), fitted law (⋯), optimum (★)", fontsize=9)
    left.legend(fontsize=8)

    budgets = result["budgets"]
    if budgets:
        c = np.array([b["flops"] for b in budgets])
        right.scatter(c, [b["params"] for b in budgets], color="black", zorder=3, label="IsoFLOP optimum")
        grid = np.geomspace(c.min() / 3, c.max() * 3, 50)
        right.plot(grid, np.sqrt(grid / (6 * TOKENS_PER_PARAM)), color="gray", ls="--", label="Chinchilla, 20 tokens/param")
        right.plot(grid, [law.optimum(x)[0] for x in grid], color="tab:blue", ls=":", label="fitted law's optimum")
        if result.get("isoflop_exponents"):
            a = result["isoflop_exponents"]["a"]
            k = np.exp(np.mean(np.log([b["params"] for b in budgets]) - a * np.log(c)))
            right.plot(grid, k * grid**a, color="tab:red", label=f"fit: N_opt ∝ C^{a:.2f}")
        right.set_xscale("log")
        right.set_yscale("log")
        right.legend(fontsize=8)
    right.set_xlabel("compute C = 6·N·D (FLOPs)")
    right.set_ylabel("compute-optimal parameters")
    right.set_title(f"fitted law: α = {law.alpha:.2f}, β = {law.beta:.2f}, E = {law.E:.2f}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
