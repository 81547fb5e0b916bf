"""What ``lmforge explain`` does: open the run, read the text as the run reads its corpus,
pick the target, run the methods the model supports, and write the folder atomically.

``explain_ids`` is the whole computation on token ids, without files, for tests and the
server; ``run`` adds the run, the text and the output folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lmforge.errors import ConfigError, DataError
from lmforge.plugins.explain import _methods
from lmforge.plugins.explain._methods import METHODS, Target
from lmforge.runs import Run

TOP_K = 5  # alternatives listed for the prediction and per logit-lens cell


def label(tokenizer, token_id: int) -> str:
    """A token as it reads on an axis: whitespace made visible, never empty."""
    text = tokenizer.decode([token_id])
    text = text.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return text if text.strip() else text.replace(" ", "\u2423") or f"<{token_id}>"


def _round(values: Any, digits: int = 6) -> Any:
    """Nested lists of floats rounded to ``digits`` significant digits, for a JSON of sane size."""
    if isinstance(values, float):
        return float(f"{values:.{digits}g}")
    if isinstance(values, list):
        return [_round(v, digits) for v in values]
    return values


def encode(run: Run, text: str, masked: bool, overlong: str) -> tuple[list[int], list[str]]:
    """The text's token ids, after the run's preprocessing steps, cut to the context; and the
    notices to print. For a masked LM the mask tokens stay as typed around the cleaned text."""
    from lmforge.plugins.deploy._generation import Opened

    if not text.strip():
        raise DataError('--text is empty: pass the text to explain, e.g. --text "def add(a, b):"')
    opened, tokenizer, notices = Opened(run, None), run.tokenizer, []
    context = run.spec.data.seq_len
    if masked:
        ids = opened.encode_masked(text, "--text")
    else:
        ids = tokenizer.encode_batch([opened.clean(text, "--text")])[0]
    if not ids:
        raise DataError("--text gives no tokens after the run's preprocessing: pass some other text")
    if len(ids) > context:
        if overlong == "error":
            raise DataError(f"--text is {len(ids)} tokens long, over the run's context of data.seq_len={context}: shorten it, or pass --overlong truncate")
        if masked:  # keep a window around the first mask
            first = ids.index(tokenizer.special_ids["mask"])
            start = max(0, min(first - context // 2, len(ids) - context))
            what = f"tokens {start}..{start + context - 1}, around the first mask"
        else:  # the prediction depends on the end
            start = len(ids) - context
            what = f"its last {context} tokens"
        notices.append(f"--text is {len(ids)} tokens long, over the run's context of data.seq_len={context}: explaining {what} (--overlong error refuses instead)")
        ids = ids[start : start + context]
    return ids, notices


def target_id(tokenizer, target: str) -> int:
    """The id of ``--target``, which must be one token; the error shows how it tokenizes."""
    if target == "":
        raise ConfigError("--target is empty: pass one token of the vocabulary, or leave it out to explain the predicted token")
    ids = tokenizer.encode_batch([target])[0]
    if len(ids) != 1:
        pieces = " + ".join(repr(tokenizer.decode([i])) for i in ids) or "nothing"
        hint = f", e.g. --target {tokenizer.decode([ids[0]])!r}" if ids else ""
        raise ConfigError(
            f"--target {target!r} is {len(ids)} tokens of the run's tokenizer ({pieces}; ids {ids}), not one: "
            f"pass a single token of the vocabulary{hint}"
        )
    return ids[0]


def check_methods(requested: str, missing: dict[str, str], model_name: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """The methods to run, and those ``all`` skips with the reason; a requested method the
    model cannot run is an error naming what it can run."""
    if requested != "all":
        if requested in missing:
            can = ", ".join(m for m in METHODS if m not in missing) or "none"
            raise ConfigError(f"--method {requested}: model={model_name} cannot explain that way, {missing[requested]}; it supports --method {can}")
        return (requested,), {}
    return tuple(m for m in METHODS if m not in missing), dict(missing)


def explain_ids(
    model: torch.nn.Module, ids: list[int], *, tokenizer, masked: bool, methods=METHODS,
    target: int | None = None, baseline: str = "pad", n_steps: int = 50, log=None,
) -> dict[str, Any]:
    """Every number of an explanation of ``ids``: the target, then one entry per method.

    The target position is the last (a causal LM predicts the next token) or, for a masked
    LM, the first mask; the target token is ``target`` or the model's likeliest token there.
    """
    device = next(model.parameters()).device
    row = torch.tensor(ids, device=device)
    mask = tokenizer.special_ids.get("mask")
    position = ids.index(mask) if masked else len(ids) - 1
    predicted, probs = _methods.predict(model, row, position)
    chosen = predicted if target is None else target
    goal = Target(position, chosen)
    top = probs.topk(min(TOP_K, probs.numel()))
    result: dict[str, Any] = {
        "masked": masked,
        "ids": ids,
        "tokens": [label(tokenizer, i) for i in ids],
        "target": {
            "position": position, "id": chosen, "token": label(tokenizer, chosen), "prob": float(probs[chosen]),
            "how": "given" if target is not None else ("mask" if masked else "predicted"),
        },
        "prediction": [{"id": i, "token": label(tokenizer, i), "prob": p} for i, p in zip(top.indices.tolist(), top.values.tolist())],
    }
    log = log or (lambda line: None)
    for method in methods:
        start = time.perf_counter()
        if method == "attention":
            maps = _methods.attention(model, row)  # (L, H, T, T)
            result["attention"] = {"maps": maps.tolist(), "mean": maps.mean(1).tolist(), "rollout": _methods.rollout(maps).tolist()}
            log(f"attention: {maps.size(0)} layers x {maps.size(1)} heads, head average and rollout")
        elif method == "saliency":
            result["saliency"] = _methods.saliency(model, row, goal)
            log("saliency: gradient and gradient x input")
        elif method == "ig":
            base = _methods.baseline_embeddings(model, row, baseline, tokenizer.special_ids.get("pad"))
            ig = _methods.integrated_gradients(model, row, goal, baseline=base, n_steps=n_steps)
            result["ig"] = ig | {"baseline": baseline}
            gap = ig["f_input"] - ig["f_baseline"]
            log(f"integrated gradients: {n_steps} steps in {ig['passes']} pass{'es' if ig['passes'] > 1 else ''}, convergence delta {ig['delta']:+.4f} (f(x) - f(baseline) = {gap:+.4f})")
        elif method == "logit-lens":
            lens = _methods.logit_lens(model, row, goal, k=TOP_K)
            lens.pop("probs")
            lens["top_tokens"] = [[[label(tokenizer, i) for i in cell] for cell in layer] for layer in lens["top_ids"]]
            result["logit_lens"] = lens
            log(f"logit lens: {len(lens['top_ids'])} layers, the embeddings first")
        result.setdefault("seconds", {})[method] = round(time.perf_counter() - start, 3)
    return result


def converged(ig: dict, tolerance: float = 0.05) -> bool:
    """Whether the convergence delta is within ``tolerance`` of f(x) - f(baseline)."""
    return abs(ig["delta"]) <= tolerance * max(abs(ig["f_input"] - ig["f_baseline"]), 1e-6)


def slug(text: str, request: str) -> str:
    """A folder name: the text's first words, and a hash of the whole request."""
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-") or "text"
    return f"{words}-{hashlib.sha1(request.encode()).hexdigest()[:8]}"


def publish(staging: Path, out: Path) -> None:
    """Rename the finished ``staging`` folder to ``out``, replacing what was there."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def run(args) -> Path:
    """The command: returns the folder written."""
    from lmforge.files import atomic_write_json
    from lmforge.plugins.deploy._generation import resolve_device
    from lmforge.plugins.explain import _figures, _page

    if args.n_steps < 2:
        raise ConfigError(f"--n-steps {args.n_steps}: integrated gradients needs 2 or more (the two ends of the path); the default is 50")
    if not args.text.strip():
        raise DataError('--text is empty: pass the text to explain, e.g. --text "def add(a, b):"')
    run_ = Run.open(args.run_dir)
    checkpoint = run_.read_checkpoint(args.checkpoint, use=lambda p: f"lmforge explain {run_.dir} --checkpoint {p} --text ...")
    masked = run_.spec.model.entry.cls.objective == "masked"
    ids, notices = encode(run_, args.text, masked, args.overlong)
    target = target_id(run_.tokenizer, args.target) if args.target is not None else None
    model = run_.model(checkpoint, device=resolve_device(args.device))
    missing = _methods.unsupported(model, torch.tensor(ids, device=next(model.parameters()).device))
    methods, skipped = check_methods(args.method, missing, run_.spec.model.name)
    for method, reason in skipped.items():
        notices.append(f"no {method} for model={run_.spec.model.name}: {reason}")
    for line in notices:
        print(f"lmforge: note: {line}", file=sys.stderr)
    if args.baseline == "pad" and "ig" in methods and run_.tokenizer.special_ids.get("pad") is None:
        raise ConfigError(f"--baseline pad: the run's tokenizer ({run_.spec.tokenizer.name}) has no pad token; pass --baseline zero")

    def log(line: str) -> None:
        print(f"explain: {line}", file=sys.stderr, flush=True)

    result = explain_ids(
        model, ids, tokenizer=run_.tokenizer, masked=masked, methods=methods, target=target,
        baseline=args.baseline, n_steps=args.n_steps, log=log,
    )
    if "ig" in result and not converged(result["ig"]):
        ig = result["ig"]
        line = (
            f"integrated gradients have not converged: the attributions sum to {sum(ig['attribution']):+.3f} but "
            f"f(x) - f(baseline) = {ig['f_input'] - ig['f_baseline']:+.3f}; raise --n-steps (e.g. --n-steps {4 * args.n_steps})"
        )
        notices.append(line)
        print(f"lmforge: note: {line}", file=sys.stderr)
    result = {
        "run": str(run_.dir), "checkpoint": str(checkpoint.path), "step": checkpoint.step, "model": run_.spec.model.name,
        "text": args.text, "method": args.method, "skipped": skipped, "notices": notices,
    } | result
    request = "\0".join(map(str, (args.text, args.target, args.method, args.baseline, args.n_steps, checkpoint.path)))
    out = Path(args.out) if args.out else run_.dir / "explain" / slug(args.text, request)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        figures = _figures.draw(result, staging)
        (staging / "explain.html").write_text(_page.render(result, {name: staging / name for name in figures}), encoding="utf-8")
        atomic_write_json(staging / "explain.json", _round(result) | {"figures": figures})
        publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
