"""The explain view of ``lmforge serve``'s page: ``POST /lmforge/explain``.

The server's route (``plugins/deploy/_server.py``) applies the key, the body limit, the
concurrency limit and the timeout; this module validates the body, and computes the
attention and token saliency of the prompt's next token. The model decodes in the
engine's process, so the view loads its own copy here, on CPU, at its first request,
and runs on a thread of its own so that it never holds up the completion routes.

Request: ``{"model": <served name>, "prompt": TEXT, "target": TOKEN or null}``.
Response: ``tokens``, ``target`` and ``prediction`` (as ``explain.json``), ``attention``
(``rollout`` and ``last_layer``, the last layer's head average, T × T, or null for a model
without attention), ``saliency`` (``gradient`` and ``grad_x_input`` per token) and
``skipped`` (method: reason).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from pydantic import BaseModel, Field

from lmforge.errors import LmforgeError
from lmforge.plugins.deploy import _protocol as P

EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmforge-explain")
_models: dict[int, object] = {}
_lock = threading.Lock()


class ExplainRequest(BaseModel):
    model: str
    prompt: str = Field(min_length=1)
    target: Optional[str] = None  # one token of the vocabulary; None = the predicted one


def parse(raw: bytes, served: str) -> ExplainRequest:
    return P.parse_body(raw, ExplainRequest, served)


def _model(opened):
    with _lock:
        if id(opened) not in _models:
            _models[id(opened)] = opened.run.model(device="cpu")
        return _models[id(opened)]


def explain_prompt(opened, body: ExplainRequest) -> dict:
    """The view's numbers for ``body``; a bad prompt or target is a 400 naming it."""
    import torch

    from lmforge.plugins.explain import _methods
    from lmforge.plugins.explain._command import explain_ids, target_id

    tokenizer = opened.tokenizer
    try:
        ids = tokenizer.encode_batch([opened.clean(body.prompt)])[0]
        target = target_id(tokenizer, body.target) if body.target is not None else None
    except LmforgeError as exc:
        param = "target" if body.target is not None and "--target" in str(exc) else "prompt"
        raise P.ServerError(400, str(exc).replace("--target", "target"), param=param, code="invalid_value") from None
    if not ids:
        raise P.ServerError(400, "the prompt gives no tokens: give some other text", param="prompt", code="invalid_prompt")
    if len(ids) > opened.context:
        raise P.too_long(len(ids), None, opened.context)
    model = _model(opened)
    missing = _methods.unsupported(model, torch.tensor(ids))
    methods = [m for m in ("attention", "saliency") if m not in missing]
    result = explain_ids(model, ids, tokenizer=tokenizer, masked=False, methods=methods, target=target)
    attention = None
    if "attention" in result:
        attention = {"rollout": result["attention"]["rollout"], "last_layer": result["attention"]["mean"][-1]}
    return {
        "tokens": result["tokens"], "target": result["target"], "prediction": result["prediction"],
        "attention": attention, "saliency": result.get("saliency"),
        "skipped": {m: r for m, r in missing.items() if m in ("attention", "saliency")},
    }
