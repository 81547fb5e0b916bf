"""``lmforge size``: how big a model, for how many tokens, for a compute budget.

Asked with one of ``--flops``, ``--params``, ``--tokens`` or ``--hours`` (with ``--from RUN``
for the device's throughput), it answers with Chinchilla's compute-optimal parameters and
tokens, the loss the published fit predicts, the transformer shape nearest that size and
the overrides to paste. ``--fit SWEEP_DIR`` fits the law to the user's own runs instead.

Also here: the ``compute.max_steps`` config resolver (``trainer.max_steps:
${compute.max_steps:1e13}``: the steps that spend that many FLOPs with the config's model
and batch), which ``experiment=scaling`` uses. Importing this module imports neither numpy, scipy,
matplotlib nor torch.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from lmforge.errors import ConfigError, DataError

log = logging.getLogger("lmforge")

RESOLVER = "compute.max_steps"
FIT_JSON, FIT_PNG = "scaling_fit.json", "scaling_fit.png"
FITTED_PARAMS = (44e6, 16e9)  # the model sizes Hoffmann et al. trained
CAVEAT = (
    "the law was fitted to Chinchilla's tokenizer and data (MassiveText): its absolute loss does not "
    "carry over to another corpus or tokenizer; use it to compare sizes, and --fit for your own"
)


# ---------------------------------------------------------------------------------------
# The config in use: a run's (--from), or lmforge train's with the overrides given


def vocab_size(tokenizer: dict, key: str = "tokenizer") -> int:
    """The vocabulary a tokenizer config asks for (the byte tokenizer: 256 plus its specials)."""
    if tokenizer.get("vocab_size"):
        return int(tokenizer["vocab_size"])
    if tokenizer.get("name") == "byte":
        return 256 + len(tokenizer.get("special_tokens") or {})
    raise ConfigError(f"{key}={tokenizer.get('name')} has no vocab_size: set {key}.vocab_size")


def transformer_config(model: dict, key: str = "model"):
    """The checked ``model=transformer`` config with every dimension filled in."""
    from lmforge.plugins.models.transformer import TransformerConfig

    if model.get("name") != "transformer":
        raise ConfigError(
            f"{key}={model.get('name')}: lmforge size counts the parameters of model=transformer only; "
            f"choose model=transformer"
        )
    try:
        return TransformerConfig(**{k: v for k, v in model.items() if k != "name"}).resolved()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {exc}") from None


def composed(overrides: list[str]) -> dict:
    """``lmforge train``'s config with ``overrides``, checked, as plain data."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException

    from lmforge import hydra_bridge

    hydra_bridge.install()
    try:
        with initialize_config_module(config_module="lmforge.conf", version_base="1.3"):
            cfg = compose("train", overrides=overrides)
    except HydraException as exc:
        raise ConfigError(f"the overrides {' '.join(overrides)}: {exc}") from None
    return hydra_bridge.check(cfg).record() | {"overrides": overrides}


def from_run(path: Path) -> tuple[dict, dict]:
    """A finished run's checked config (with its real vocabulary size and the overrides it was
    started with) and its summary.json."""
    import yaml

    from lmforge.runs import Run

    run = Run.open(path)
    config = run.spec.record()
    config["tokenizer"]["vocab_size"] = run.tokenizer.vocab_size
    given = run.dir / ".hydra" / "overrides.yaml"
    config["overrides"] = [str(o) for o in yaml.safe_load(given.read_text(encoding="utf-8")) or []] if given.is_file() else []
    return config, run.summary or {}


def merged(given: list[str], ours: list[str]) -> list[str]:
    """``given`` without the keys ``ours`` sets, then ``ours``: one value per key to paste."""
    keys = {o.split("=", 1)[0] for o in ours}
    return [o for o in given if o.split("=", 1)[0].lstrip("+~") not in keys] + ours


def throughput(summary: dict, run: Path) -> dict:
    """The FLOP/s a run reached: 6 x its parameters x its training tokens/s (C = 6·N·D per second)."""
    rate, params = summary.get("tokens_per_s"), summary.get("params")
    if not summary:
        raise DataError(f"{run}: no summary.json, so no measured throughput (the run did not finish): pass a finished run to --from")
    if not isinstance(rate, (int, float)) or not rate > 0 or not isinstance(params, (int, float)) or not params > 0:
        raise DataError(
            f"{run / 'summary.json'} holds no throughput (tokens_per_s={rate!r}, params={params!r}): "
            f"pass a run that lmforge train finished on the device you plan for"
        )
    return {"run": str(run), "tokens_per_s": float(rate), "params": float(params),
            "flops_per_s": 6 * float(params) * float(rate), "device": summary.get("device")}


# ---------------------------------------------------------------------------------------
# The answer


def answer(allocation, config: dict, measured: dict | None, ratio: float) -> dict:
    from lmforge.plugins.compute._chinchilla import CHINCHILLA, human, nearest_shape

    model = transformer_config(config["model"])
    vocab = vocab_size(config["tokenizer"])
    shape = nearest_shape(model, vocab, allocation.params)
    data, trainer = config["data"], config["trainer"]
    step_tokens = data["batch_size"] * data["seq_len"] * trainer.get("accumulate_grad_batches", 1)
    steps = max(1, round(allocation.tokens / step_tokens))
    overrides = [f"model.n_layer={shape['n_layer']}", f"model.n_head={shape['n_head']}", f"model.n_embd={shape['n_embd']}"]
    if model.n_kv_head and shape["n_head"] % model.n_kv_head:
        overrides.append("model.n_kv_head=null")
    overrides.append(f"trainer.max_steps={steps}")
    found = {
        "asked": allocation.asked,
        "flops": allocation.flops,
        "params": allocation.params,
        "tokens": allocation.tokens,
        "tokens_per_param": ratio,
        "predicted_loss": CHINCHILLA.loss(allocation.params, allocation.tokens),
        "law": CHINCHILLA.as_dict(),
        "caveat": CAVEAT + ("" if FITTED_PARAMS[0] <= allocation.params <= FITTED_PARAMS[1] else
                            f"; and {human(allocation.params)} parameters lies outside the 44M to 16B the law was fitted on"),
        "shape": shape | {"vocab_size": vocab, "mlp": model.mlp, "norm": model.norm, "tie_embeddings": model.tie_embeddings},
        "tokens_per_step": step_tokens,
        "max_steps": steps,
        "overrides": merged(config.get("overrides", []), overrides),
        "seconds": None,
        "measured": measured,
    }
    if measured:
        found["seconds"] = allocation.flops / measured["flops_per_s"]
    return found


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def show(found: dict) -> str:
    from lmforge.plugins.compute._chinchilla import human

    shape = found["shape"]
    law = found["law"]
    lines = [
        f"compute-optimal (Chinchilla, Hoffmann et al. 2022: C = 6·N·D, {found['tokens_per_param']:g} tokens per parameter)",
        f"  compute          {found['flops']:.3g} FLOPs",
        f"  parameters       {human(found['params'])}",
        f"  tokens           {human(found['tokens'])}",
        f"  predicted loss   {found['predicted_loss']:.3f} nats/token, from L = {law['E']} + {law['A']}/N^{law['alpha']} + {law['B']}/D^{law['beta']}",
        f"                   ({found['caveat']})",
        f"nearest transformer shape (vocab {shape['vocab_size']:,}, {shape['mlp']}, {shape['norm']}"
        f"{', tied embeddings' if shape['tie_embeddings'] else ''})",
        f"  n_layer={shape['n_layer']} n_head={shape['n_head']} n_embd={shape['n_embd']}: {shape['params']:,} parameters",
        f"  {human(found['tokens'])} tokens / {found['tokens_per_step']:,} tokens a step = {found['max_steps']:,} steps",
        "overrides:",
        "  lmforge train " + " ".join(found["overrides"]),
    ]
    measured = found["measured"]
    if measured:
        lines.append(
            f"wall time: {duration(found['seconds'])} at {measured['flops_per_s']:.3g} FLOP/s, the rate of {measured['run']} "
            f"({measured['tokens_per_s']:,.0f} tokens/s at {human(measured['params'])} parameters on {measured['device'] or 'its device'})"
        )
    else:
        lines.append("wall time: pass --from RUN (a finished run on your device) to estimate it from its throughput")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# --fit: the law fitted to a sweep's runs


def sweep_points(sweep_dir: Path) -> tuple[list, list[str]]:
    """Each finished run under ``sweep_dir``: its parameters, tokens seen and final val_loss."""
    from lmforge.plugins.compute._chinchilla import Point

    points, skipped = [], []
    for summary_file in sorted(sweep_dir.rglob("summary.json")):
        try:
            summary = json.loads(summary_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            skipped.append(f"{summary_file}: unreadable ({exc})")
            continue
        values = [summary.get(k) for k in ("params", "tokens_seen", "val_loss")]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values):
            skipped.append(f"{summary_file}: no positive params, tokens_seen and val_loss")
            continue
        points.append(Point(*map(float, values), run=str(summary_file.parent)))
    return points, skipped


MIN_RUNS = 5  # the law has five parameters


def fit_sweep(sweep_dir: Path, out: Path | None = None) -> dict:
    """Fit the law to the runs of ``sweep_dir``; write scaling_fit.json and scaling_fit.png to ``out``."""
    from lmforge.files import atomic_write_json
    from lmforge.plugins.compute import _chinchilla

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError(f"--fit {sweep_dir}: not a directory; pass the sweep directory of lmforge train -m (multirun/<date>/<time>)")
    points, skipped = sweep_points(sweep_dir)
    if len(points) < MIN_RUNS:
        raise DataError(
            f"--fit {sweep_dir}: {len(points)} finished run(s) with a summary.json, and the law's five parameters need at "
            f"least {MIN_RUNS}: run more sizes or budgets (lmforge train -m experiment=scaling)"
        )
    result = _chinchilla.fit(points) | {"sweep_dir": str(sweep_dir), "skipped": skipped}
    out = Path(out or sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / FIT_JSON, result)
    _chinchilla.plot(result, out / FIT_PNG)
    result["files"] = [str(out / FIT_JSON), str(out / FIT_PNG)]
    return result


def show_fit(result: dict) -> str:
    from lmforge.plugins.compute._chinchilla import human

    law = result["law"]
    lines = [
        f"fitted to {result['runs']} runs: L(N, D) = {law['E']:.3f} + {law['A']:.4g}/N^{law['alpha']:.3f} + {law['B']:.4g}/D^{law['beta']:.3f}"
        f"  (Chinchilla: 1.69 + 406.4/N^0.34 + 410.7/D^0.28)",
        f"  the law's optimum: N_opt ∝ C^{result['law_allocation']['a']:.2f}, D_opt ∝ C^{result['law_allocation']['b']:.2f}",
    ]
    for b in result["budgets"]:
        where = "parabola minimum" if b["from"] == "parabola" else "best run: no interior minimum, extend the sizes"
        lines.append(
            f"  C = {b['flops']:.3g} FLOPs ({b['runs']} runs): optimum {human(b['params'])} parameters, {human(b['tokens'])} tokens, "
            f"{b['tokens_per_param']:.1f} tokens/param, loss {b['loss']:.3f} ({where}); the fitted law's optimum: "
            f"{human(b['law_optimum']['params'])} parameters, {b['law_optimum']['tokens_per_param']:.1f} tokens/param"
        )
    if result["isoflop_exponents"]:
        e = result["isoflop_exponents"]
        lines.append(f"  IsoFLOP optima of {e['budgets']} budgets: N_opt ∝ C^{e['a']:.2f}, D_opt ∝ C^{e['b']:.2f}  (Chinchilla: 0.50, 0.50)")
    if "tokens_per_param" in result:
        lines.append(f"  tokens per parameter at the optimum: {result['tokens_per_param']:.1f} (Chinchilla: 20)")
    for s in result["skipped"]:
        lines.append(f"  skipped {s}")
    lines.append("wrote " + " and ".join(result["files"]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The command


def size(argv: list[str]) -> int:
    import argparse

    from lmforge.plugins.compute._chinchilla import TOKENS_PER_PARAM, allocate, parse_count

    parser = argparse.ArgumentParser(
        prog="lmforge size",
        description="compute-optimal model size and tokens for a budget (Chinchilla), or --fit the scaling law to your sweep",
    )
    ask = parser.add_mutually_exclusive_group()
    ask.add_argument("--flops", metavar="C", help="training compute in FLOPs, e.g. 1e18")
    ask.add_argument("--params", metavar="N", help="model parameters, e.g. 124M")
    ask.add_argument("--tokens", metavar="D", help="training tokens, e.g. 2.5B")
    ask.add_argument("--hours", metavar="H", help="hours of training on the device of --from RUN")
    ask.add_argument("--fit", metavar="SWEEP_DIR", type=Path, help="fit E, A, B, alpha, beta to the finished runs under SWEEP_DIR")
    parser.add_argument("--from", dest="run", metavar="RUN", type=Path, help="a finished run: its config, and its throughput for the wall time")
    parser.add_argument("--tokens-per-param", metavar="R", default=str(TOKENS_PER_PARAM), help="tokens per parameter at the optimum (default 20)")
    parser.add_argument("--out", metavar="DIR", type=Path, help="with --fit: where to write scaling_fit.json and .png (default: SWEEP_DIR)")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.add_argument("overrides", nargs="*", help="lmforge train overrides for the config in use (experiment=gpt2_small); not with --from")
    args = parser.parse_args(argv)

    if args.fit is not None:
        result = fit_sweep(args.fit, args.out)
        print(json.dumps(result, indent=2) if args.json else show_fit(result))
        return 0
    asked = next((k for k in ("flops", "params", "tokens", "hours") if getattr(args, k) is not None), None)
    if asked is None:
        parser.error("ask with one of --flops C, --params N, --tokens D or --hours H (with --from RUN), or --fit SWEEP_DIR")
    if asked == "hours" and args.run is None:
        raise ConfigError(
            "--hours needs the device's throughput: add --from RUN, a run lmforge train finished on that device "
            "(its summary.json holds tokens_per_s)"
        )
    if args.run is not None and args.overrides:
        raise ConfigError(f"--from {args.run} takes the run's own config: drop the overrides {' '.join(args.overrides)}, or drop --from")
    ratio = parse_count(args.tokens_per_param, "--tokens-per-param")
    value = parse_count(getattr(args, asked), f"--{asked}")

    measured = None
    if args.run is not None:
        config, summary = from_run(args.run)
        if asked == "hours" or summary:
            measured = throughput(summary, Path(args.run).expanduser().resolve())
    else:
        config = composed(list(args.overrides))
    if asked == "hours":
        allocation = allocate(flops=value * 3600 * measured["flops_per_s"], ratio=ratio, asked="hours")
    else:
        allocation = allocate(**{asked: value}, ratio=ratio, asked=asked)
    found = answer(allocation, config, measured, ratio)
    print(json.dumps(found, indent=2) if args.json else show(found))
    return 0


# ---------------------------------------------------------------------------------------
# ${compute.max_steps:C}


def max_steps_for(flops: Any, *, _root_) -> int:
    """``${compute.max_steps:1e13}``: the optimizer steps that spend ``flops`` = 6·N·D with the
    config's transformer (N) and batch (D = steps x batch_size x seq_len x accumulation)."""
    from omegaconf import OmegaConf

    from lmforge.plugins.compute._chinchilla import parse_count, transformer_params

    try:
        budget = parse_count(str(flops), "C")
    except ConfigError:
        raise ConfigError(f"${{{RESOLVER}:{flops}}}: the budget {flops!r} is not a FLOP count; write e.g. ${{{RESOLVER}:1e13}}") from None
    model = transformer_config(OmegaConf.to_container(_root_.model, resolve=True))
    vocab = vocab_size(OmegaConf.to_container(_root_.tokenizer, resolve=True))
    params = transformer_params(model, model.n_layer, model.n_head, model.n_embd, vocab)
    data = _root_.data
    step_tokens = data.batch_size * data.seq_len * _root_.trainer.get("accumulate_grad_batches", 1)
    return max(1, round(budget / (6 * params * step_tokens)))

