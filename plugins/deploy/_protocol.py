"""The wire format of ``lmforge serve``: OpenAI's request and response bodies as pydantic
models, and every limit and error of the server in one place.

Requests are validated at the edge: a bad field is a 422 naming it and its limit, before
any work. Errors take OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``,
so that the ``openai`` client raises its own exception classes with the message.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from lmforge.engine.sampling import MAX_TOP_LOGPROBS  # OpenAI's limit on top_logprobs

# Request limits (OpenAI's own where it has one)
MAX_N = 8  # choices per request
MAX_STOP = 4  # stop sequences per request
MAX_STOP_CHARS = 200  # characters per stop sequence
MAX_LOGPROBS = 5  # /v1/completions logprobs
MAX_MESSAGES = 256  # messages per chat request

# Server limits: each is a flag of `lmforge serve` with this default
DEFAULT_MAX_BODY = 2_000_000  # bytes, TGI's figure; --max-body-bytes
DEFAULT_MAX_CONCURRENT = 64  # requests in flight; --max-concurrent
DEFAULT_TIMEOUT = 300.0  # seconds per request; --timeout
DEFAULT_MAX_TOKENS = 128  # new tokens when a request gives no max_tokens; --max-tokens
RETRY_AFTER = 1  # seconds, in the 429's Retry-After header


class ServerError(Exception):
    """An error answered to the client as OpenAI's error object with ``status``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def unauthorized() -> ServerError:
    return ServerError(401, "missing or wrong API key: send the header `Authorization: Bearer <key>` with the key the server was started with (--api-key or LMFORGE_API_KEY)", type="authentication_error", code="invalid_api_key")


def too_large(limit: int) -> ServerError:
    return ServerError(413, f"the request body is over the server's limit of {limit:,} bytes (--max-body-bytes): send a shorter prompt", code="request_too_large")


def overloaded(limit: int) -> ServerError:
    return ServerError(429, f"the server already has {limit} requests in flight (--max-concurrent {limit}): retry after {RETRY_AFTER} s", type="overloaded_error", code="overloaded", headers={"Retry-After": str(RETRY_AFTER)})


def timed_out(seconds: float) -> ServerError:
    return ServerError(504, f"the request ran past the server's per-request limit of {seconds:g} s (--timeout): ask for fewer tokens (max_tokens)", type="timeout_error", code="timeout")


def loading() -> ServerError:
    return ServerError(503, "the model is still loading: retry when GET /health answers 200", type="unavailable_error", code="loading", headers={"Retry-After": str(RETRY_AFTER)})


def engine_down(reason: str) -> ServerError:
    return ServerError(503, f"the model is not available ({reason}): restart `lmforge serve`; GET /health answers 503 until then", type="unavailable_error", code="engine_failed")


def bad_json(detail: str) -> ServerError:
    return ServerError(400, f"the request body is not valid JSON ({detail}): send a JSON object", code="invalid_json")


def unknown_model(given: str, served: str) -> ServerError:
    return ServerError(400, f"model {given!r} is not served here: this server serves {served!r} (GET /v1/models)", param="model", code="model_not_found")


def too_long(prompt_tokens: int, max_tokens: int | None, context: int) -> ServerError:
    room = context - prompt_tokens
    if room <= 0 or max_tokens is None:
        return ServerError(
            400, f"the prompt is {prompt_tokens} tokens, but the model's context is {context} tokens, prompt and reply together: "
            f"shorten it to under {context} tokens (in a chat, drop the oldest messages)", param="prompt", code="context_length_exceeded",
        )
    fix = f"lower max_tokens to {room} or less" if room > 0 else f"shorten the prompt to under {context} tokens"
    return ServerError(
        400, f"the prompt is {prompt_tokens} tokens and max_tokens is {max_tokens}: together they must be <= the model's context of {context} tokens: {fix}",
        param="max_tokens" if room > 0 else "prompt", code="context_length_exceeded",
    )


def invalid(errors: list[dict]) -> ServerError:
    """Pydantic's validation errors as one 422, naming the first field and its limit."""
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    message = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}" for e in errors[:5])
    return ServerError(422, message, param=where, code="invalid_value")


def parse_body(raw: bytes, model_cls: type, served: str):
    """A request body as ``model_cls``: 400 for invalid JSON or a non-object, 422 for a bad
    field, 404 for a model other than the one ``served``."""
    import json

    from pydantic import ValidationError

    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_json(str(exc)) from None
    if not isinstance(data, dict):
        raise bad_json(f"got a JSON {type(data).__name__}")
    try:
        body = model_cls.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc.errors()) from None
    if body.model != served:
        raise unknown_model(body.model, served)
    return body


# Requests

class StreamOptions(BaseModel):
    include_usage: bool = False


class _Sampling(BaseModel):
    """The fields both completion endpoints share. Unknown fields (OpenAI's many others) are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(max_length=256)
    max_tokens: Optional[int] = Field(None, ge=0, description="new tokens at most; 0 only with echo")
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: Optional[int] = Field(None, ge=0, le=1000)  # vLLM's extension; None for the whole vocabulary
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = Field(None, ge=0, le=2**63 - 1)
    n: int = Field(1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = None

    def stops(self) -> tuple[str, ...]:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > MAX_STOP:
            raise ServerError(422, f"stop has {len(stop)} sequences: at most {MAX_STOP}", param="stop", code="invalid_value")
        for s in stop:
            if not s or len(s) > MAX_STOP_CHARS:
                raise ServerError(422, f"stop: each sequence must be 1 to {MAX_STOP_CHARS} characters, got {len(s)}", param="stop", code="invalid_value")
        return tuple(stop)


class CompletionRequest(_Sampling):
    prompt: Union[str, list[str]] = Field(description="one text (a list of exactly one is accepted too)")
    echo: bool = False
    logprobs: Optional[int] = Field(None, ge=0, le=MAX_LOGPROBS)

    def text(self) -> str:
        if isinstance(self.prompt, list):
            if len(self.prompt) != 1:
                raise ServerError(422, f"prompt: give one prompt per request (got a list of {len(self.prompt)}); use n for several choices", param="prompt", code="invalid_value")
            return self.prompt[0]
        return self.prompt


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: Union[str, list[dict]]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(None, ge=0, le=MAX_TOP_LOGPROBS)


# Responses: plain dicts built here, in OpenAI's shapes

def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


@dataclass
class Envelope:
    """What every response body of one request shares."""

    id: str
    object: str
    model: str
    created: int

    @classmethod
    def new(cls, kind: Literal["completion", "chat"], model: str, streaming: bool) -> "Envelope":
        obj = {"completion": "text_completion", "chat": "chat.completion.chunk" if streaming else "chat.completion"}[kind]
        return cls(new_id("cmpl" if kind == "completion" else "chatcmpl"), obj, model, int(time.time()))

    def body(self, choices: list[dict], **extra) -> dict:
        return {"id": self.id, "object": self.object, "created": self.created, "model": self.model, "choices": choices, **extra}


def completion_logprobs(tokens: list[str], logprobs: list[Optional[float]], tops: list[Optional[dict]], offset: int = 0) -> dict:
    offsets, at = [], offset
    for t in tokens:
        offsets.append(at)
        at += len(t)
    return {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": tops, "text_offset": offsets}


def chat_logprob(token: str, logprob: float, top: list[tuple[str, float]]) -> dict:
    def entry(t: str, lp: float) -> dict:
        return {"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))}

    return {**entry(token, logprob), "top_logprobs": [entry(t, lp) for t, lp in top]}


def model_card(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "lmforge"}
