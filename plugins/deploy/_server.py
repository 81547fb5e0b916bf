"""The ASGI app behind ``lmforge serve``: OpenAI's completion routes, the health check,
the web page, and the guard that applies the key and the body limit to every request.

The model lives in the engine process (``_engine.py``, which runs ``_scheduler.py``); a
request here validates its body (``_protocol.py``), renders and tokenizes its prompt on a
one-thread executor (the run's preprocessing steps are not known to be thread-safe),
submits a ``Job`` and relays the job's events, as one JSON body or as server-sent events.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from contextlib import asynccontextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from lmforge.errors import LmforgeError
from lmforge.plugins.deploy import _protocol as P
from lmforge.plugins.deploy._engine import Engine, Job

PUBLIC = ("/health", "/")  # the page holds no data: its data routes need the key, which the user types into it


@dataclass
class Settings:
    """The server's flags (see ``serve.py``)."""

    api_key: Optional[str] = None
    max_body: int = P.DEFAULT_MAX_BODY
    max_concurrent: int = P.DEFAULT_MAX_CONCURRENT
    timeout: float = P.DEFAULT_TIMEOUT
    max_tokens: int = P.DEFAULT_MAX_TOKENS
    cors_origins: tuple[str, ...] = ()
    guard: Optional[object] = None  # lmforge.plugins.guards._apply.Guarded: checks prompts and replies


class _Guard:
    """ASGI middleware: the API key on every route but ``PUBLIC``, and the body limit, on the
    Content-Length and while reading (a chunked body has none)."""

    def __init__(self, app, settings: Settings):
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        key = self.settings.api_key
        if key and scope["path"] not in PUBLIC and scope["method"] != "OPTIONS":
            given = headers.get(b"authorization", b"").decode("latin-1")
            if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
                return await _send_error(send, P.unauthorized())
        limit = self.settings.max_body
        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            return await _send_error(send, P.too_large(limit))
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise P.too_large(limit)
            return message

        await self.app(scope, counted, send)


async def _send_error(send, error: P.ServerError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error_response(error: P.ServerError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def create_app(opened, template, scheduler: Engine, settings: Settings, *, name: str) -> FastAPI:
    """The app for ``opened`` (a run opened for generation; its model loads on ``scheduler``)."""

    @asynccontextmanager
    async def lifespan(app):
        scheduler.attach(asyncio.get_running_loop())  # the engine's events arrive on this loop: jobs emit here
        yield

    app = FastAPI(title="lmforge serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(_Guard, settings=settings)
    if settings.cors_origins:  # outermost, so that a 401 or 413 carries the CORS headers too
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    created = int(time.time())
    prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmforge-prep")
    state = {"in_flight": 0}
    tokenizer = opened.tokenizer
    context = opened.context

    @app.exception_handler(P.ServerError)
    async def _server_error(request, exc: P.ServerError):
        return _error_response(exc)

    @app.get("/health")
    async def health():
        if scheduler.failed is not None:
            return JSONResponse({"status": "failed", "error": str(scheduler.failed)}, status_code=503)
        if not scheduler.ready.is_set():
            return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": str(P.RETRY_AFTER)})
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(resources.files("lmforge.plugins.deploy").joinpath("_page.html").read_text(encoding="utf-8"))

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [P.model_card(name, created)]}

    @app.get("/lmforge/run")
    async def run_info():
        run = opened.run
        return {
            "model": name, "architecture": run.spec.model.name, "tokenizer": run.spec.tokenizer.name, "context": context,
            "summary": run.summary or {}, "limits": {"max_tokens": settings.max_tokens, "max_concurrent": settings.max_concurrent, "timeout": settings.timeout},
        }

    @app.post("/lmforge/explain")
    async def explain(request: Request):
        """The page's explain view: attention and token saliency of a prompt's next token
        (``lmforge.plugins.explain._serve``), under the same key, body, concurrency and time limits."""
        from lmforge.plugins.explain import _serve

        if state["in_flight"] >= settings.max_concurrent:
            raise P.overloaded(settings.max_concurrent)
        state["in_flight"] += 1
        try:
            body = _serve.parse(await request.body(), name)
            work = asyncio.get_running_loop().run_in_executor(_serve.EXECUTOR, _serve.explain_prompt, opened, body)
            return await asyncio.wait_for(work, settings.timeout)
        except asyncio.TimeoutError:
            raise P.timed_out(settings.timeout) from None
        finally:
            state["in_flight"] -= 1

    async def parse(request: Request, model_cls):
        if scheduler.failed is not None:
            raise P.engine_down(str(scheduler.failed))
        if not scheduler.ready.is_set():
            raise P.loading()
        body = P.parse_body(await request.body(), model_cls, name)
        if body.max_tokens == 0 and not getattr(body, "echo", False):
            raise P.ServerError(422, "max_tokens: 0 is allowed only with echo=true (scoring a prompt); ask for 1 or more", param="max_tokens", code="invalid_value")
        return body

    def prompt_of(body) -> tuple[list[int], str, tuple[str, ...]]:
        """(ids, the prompt text as the model sees it, extra stop sequences); on the prep thread."""
        try:
            if isinstance(body, P.ChatRequest):
                messages = [{"role": m.role, "content": opened.clean(m.text(), f"messages[{i}].content") if m.role == "user" else m.text()} for i, m in enumerate(body.messages)]
                text, stops = template.render(messages), template.stop
            else:
                text, stops = opened.clean(body.text()), ()
            ids = tokenizer.encode_batch([text])[0]
        except LmforgeError as exc:
            raise P.ServerError(400, str(exc), param="messages" if isinstance(body, P.ChatRequest) else "prompt", code="invalid_prompt") from None
        if not ids:
            raise P.ServerError(400, "the prompt gives no tokens: give some other text", param="prompt", code="invalid_prompt")
        return ids, text, stops

    def refused(body) -> bool:
        """Whether the guard blocks the request's prompt (a chat's user messages); on the prep thread."""
        if isinstance(body, P.ChatRequest):
            return settings.guard.check_prompt("\n".join(m.text() for m in body.messages if m.role == "user"), "messages").blocked
        return settings.guard.check_prompt(body.text(), "prompt").blocked

    async def answer(request: Request, body, kind: str):
        if state["in_flight"] >= settings.max_concurrent:
            raise P.overloaded(settings.max_concurrent)
        state["in_flight"] += 1
        released = False

        def release():
            nonlocal released
            if not released:
                released, state["in_flight"] = True, state["in_flight"] - 1

        try:
            deadline = time.monotonic() + settings.timeout
            loop = asyncio.get_running_loop()
            ids, text, template_stops = await loop.run_in_executor(prep, prompt_of, body)
            if settings.guard is not None and await loop.run_in_executor(prep, refused, body):
                release()
                return _refusal(kind, body, P.Envelope.new(kind, name, body.stream), tokenizer, len(ids), text, settings.guard.refusal)
            if len(ids) >= context:
                raise P.too_long(len(ids), None, context)
            max_tokens = body.max_tokens if body.max_tokens is not None else min(settings.max_tokens, context - len(ids))
            if len(ids) + max_tokens > context:
                raise P.too_long(len(ids), max_tokens, context)
            events: asyncio.Queue = asyncio.Queue()
            chat = kind == "chat"
            top = (body.top_logprobs or 0) if chat else (body.logprobs or 0)
            job = Job(
                ids, events.put_nowait, max_tokens=max_tokens,
                temperature=body.temperature, top_k=body.top_k, top_p=body.top_p, stop=(*body.stops(), *template_stops),
                seed=body.seed, n=body.n, logprobs=top, prompt_logprobs=not chat and body.echo and body.logprobs is not None,
            )
            scheduler.submit(job)
            relay = _Relay(job, events, deadline, settings.timeout, request)
            reply = _Reply(kind, body, P.Envelope.new(kind, name, body.stream), tokenizer, len(ids), text, settings.guard)
            reply.job = job
            if not body.stream:
                try:
                    async for chunk in relay:
                        reply.add(chunk)
                finally:
                    job.cancel()
                return JSONResponse(reply.whole())
        except BaseException:
            release()
            raise
        if not body.stream:
            release()

        async def sse():
            try:
                for event in reply.opening():
                    yield _sse(event)
                async for chunk in relay:  # chunks that queued up meanwhile go out in the same write
                    yield "".join(map(reply.event, [chunk, *relay.ready()]))
                if body.stream_options and body.stream_options.include_usage:
                    yield _sse(reply.envelope.body([], usage=reply.usage()))
                yield "data: [DONE]\n\n"
            except P.ServerError as exc:  # the deadline, after the 200 went out: an error event ends the stream
                yield _sse(exc.body())
            finally:
                job.cancel()
                relay.close()
                release()

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(sse(), media_type="text/event-stream", headers=headers)

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await parse(request, P.CompletionRequest)
        body.text()
        return await answer(request, body, "completion")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await answer(request, await parse(request, P.ChatRequest), "chat")

    app.state.in_flight = state
    return app


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


class _Relay:
    """The job's chunks as an async iterator, ending when every choice ended; the deadline
    (504) and a client that left (the job is cancelled) end it too."""

    def __init__(self, job: Job, events: asyncio.Queue, deadline: float, timeout: float, request: Request):
        self.job, self.events, self.timeout = job, events, timeout
        self.watcher = asyncio.ensure_future(self._watch(request.receive))
        # one timer for the request's deadline, not one per chunk awaited (asyncio.timeout's cost, every token)
        self.timer = asyncio.get_running_loop().call_later(max(deadline - time.monotonic(), 0), self._expire)
        self.backlog = _NOTHING  # an end event that ready() took off the queue

    async def _watch(self, receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.job.cancel()
                self.events.put_nowait(_GONE)
                return

    def _expire(self) -> None:
        """The deadline passed: decoding stops, and the reply ends in a 504 after the chunks already queued."""
        self.job.cancel()
        self.events.put_nowait(P.timed_out(self.timeout))

    def close(self) -> None:
        self.watcher.cancel()
        self.timer.cancel()

    def ready(self) -> list:
        """The chunks already queued, without waiting; an end or an error stays for ``__anext__``."""
        chunks = []
        while self.backlog is _NOTHING and not self.events.empty():
            event = self.events.get_nowait()
            if event is None or event is _GONE or isinstance(event, BaseException):
                self.backlog = event
            else:
                chunks.append(event)
        return chunks

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.backlog is not _NOTHING:
            event = self.backlog
        elif self.events.empty():
            event = await self.events.get()
        else:
            event = self.events.get_nowait()
        if event is None or event is _GONE:
            self.close()
            raise StopAsyncIteration
        if isinstance(event, BaseException):
            self.close()
            if isinstance(event, P.ServerError):  # the deadline (504), or the engine process died (503)
                raise event
            if isinstance(event, LmforgeError):
                raise P.ServerError(400, str(event), code="invalid_prompt")
            raise P.ServerError(500, f"generation failed: {type(event).__name__}: {event}", type="server_error", code="internal_error")
        return event


_GONE, _NOTHING = object(), object()


def _refusal(kind: str, body, envelope: P.Envelope, tokenizer, prompt_tokens: int, prompt_text: str, refusal: str):
    """The answer to a prompt the guard blocked: the refusal, ``finish_reason: "content_filter"``, no model call."""
    reply = _Reply(kind, body, envelope, tokenizer, prompt_tokens, prompt_text)
    reply.texts, reply.reasons = [refusal] * body.n, ["content_filter"] * body.n
    if not body.stream:
        return JSONResponse(reply.whole())
    key = "delta" if kind == "chat" else "text"
    value = {"content": refusal} if kind == "chat" else refusal

    def sse():
        for event in reply.opening():
            yield _sse(event)
        yield _sse(envelope.body([{"index": i, key: value, "finish_reason": "content_filter", "logprobs": None} for i in range(body.n)]))
        if body.stream_options and body.stream_options.include_usage:
            yield _sse(envelope.body([], usage=reply.usage()))
        yield "data: [DONE]\n\n"

    return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class _Reply:
    """The chunks of one request, as OpenAI's completion or chat bodies. With a guard, each
    choice's text goes through a scanner as it is assembled: text is released once checked,
    and a choice the guard blocks ends there with ``content_filter`` (its later chunks dropped)."""

    def __init__(self, kind: str, body, envelope: P.Envelope, tokenizer, prompt_tokens: int, prompt_text: str, guard=None):
        self.kind, self.body, self.envelope, self.tokenizer = kind, body, envelope, tokenizer
        self.prompt_tokens, self.prompt_text = prompt_tokens, prompt_text
        n = body.n
        self.texts, self.reasons, self.counts = [""] * n, [None] * n, [0] * n
        self.guard, self.scanners = guard, [guard.scanner() for _ in range(n)] if guard is not None else None
        self.raw = [""] * n  # each choice's text as the model wrote it, for the scanner and the log
        self.tokens: list[list] = [[] for _ in range(n)]  # (token, logprob, top) per choice
        self.job: Optional[Job] = None
        self.template: Optional[str] = None  # see ``event``

    def _token(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def add(self, chunk) -> tuple[str, Optional[str]] | None:
        """(the text released, the finish reason) of a chunk; None for a choice the guard already ended."""
        i = chunk.row
        if self.reasons[i] == "content_filter":
            return None
        begun = self.raw[i] if self.scanners is not None else self.texts[i]
        text = chunk.text if (begun or self.kind != "chat") else chunk.text.lstrip()
        reason = chunk.finish_reason
        if self.scanners is not None:
            self.raw[i] += text
            text, verdict = self.scanners[i].feed(text)
            if reason and not verdict.blocked:
                more, verdict = self.scanners[i].finish()
                text += more
            if verdict.blocked:
                reason = "content_filter"
                if self.job is not None and all(r is not None for j, r in enumerate(self.reasons) if j != i):
                    self.job.cancel()  # no choice goes on: stop decoding, and end the relay
                    self.job.emit(None)
            if verdict.decision != "allow" and (reason or verdict.blocked):
                self.guard.log("reply", verdict, self.raw[i])
        self.texts[i] += text
        self.counts[i] += 1
        self.tokens[i].append((chunk.token_id, chunk.logprob, chunk.top_logprobs))
        if reason:
            self.reasons[i] = reason
        return text, reason

    def usage(self) -> dict:
        return P.usage(self.prompt_tokens, sum(self.counts))

    def _completion_logprobs(self, i: int, tokens: list, prompt: bool) -> dict:
        words, lps, tops = [], [], []
        if prompt and self.job is not None:
            for token_id, (lp, top) in zip(self.job.prompt, self.job.prompt_scores):
                words.append(self._token(token_id))
                lps.append(lp)
                tops.append({self._token(t): v for t, v in top} if lp is not None else None)
        for token_id, lp, top in tokens:
            words.append(self._token(token_id))
            lps.append(lp)
            tops.append({self._token(t): v for t, v in top})
        return P.completion_logprobs(words, lps, tops)

    def _chat_logprobs(self, tokens: list) -> dict:
        return {"content": [P.chat_logprob(self._token(t), lp, [(self._token(a), v) for a, v in top]) for t, lp, top in tokens]}

    def whole(self) -> dict:
        choices = []
        for i in range(self.body.n):
            if self.kind == "chat":
                choice = {"index": i, "message": {"role": "assistant", "content": self.texts[i]}, "finish_reason": self.reasons[i] or "length",
                          "logprobs": self._chat_logprobs(self.tokens[i]) if self.body.logprobs else None}
            else:
                echo = self.body.echo
                choice = {"index": i, "text": (self.prompt_text if echo else "") + self.texts[i], "finish_reason": self.reasons[i] or "length",
                          "logprobs": self._completion_logprobs(i, self.tokens[i], echo) if self.body.logprobs is not None else None}
            choices.append(choice)
        return self.envelope.body(choices, usage=self.usage())

    def opening(self) -> list[dict]:
        if self.kind == "chat":
            return [self.envelope.body([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None} for i in range(self.body.n)])]
        if self.body.echo:
            return [self.envelope.body([{"index": i, "text": self.prompt_text, "logprobs": None, "finish_reason": None} for i in range(self.body.n)])]
        return []

    def event(self, chunk) -> str:
        """The server-sent event of one chunk. Without log-probabilities it is filled into a
        template made once per request: no dict and no whole-body ``json.dumps`` per token."""
        if (self.body.logprobs if self.kind == "chat" else self.body.logprobs is not None):
            delta = self.delta(chunk)
            return _sse(delta) if delta is not None else ""
        if self.template is None:
            head = json.dumps(self.envelope.body([]), ensure_ascii=False)[: -len("]}")].replace("%", "%%")  # ... "choices": [
            key = "delta" if self.kind == "chat" else "text"
            self.template = "data: " + head + '{"index": %d, "' + key + '": %s, "finish_reason": %s, "logprobs": null}]}\n\n'
        added = self.add(chunk)
        if added is None:
            return ""
        text, reason = added
        reason = "null" if reason is None else f'"{reason}"'
        if self.kind == "chat":
            return self.template % (chunk.row, '{"content": ' + json.dumps(text, ensure_ascii=False) + "}" if text else "{}", reason)
        return self.template % (chunk.row, json.dumps(text, ensure_ascii=False), reason)

    def delta(self, chunk) -> dict | None:
        added = self.add(chunk)
        if added is None:
            return None
        text, reason = added
        i, token = chunk.row, (chunk.token_id, chunk.logprob, chunk.top_logprobs)
        if self.kind == "chat":
            choice = {"index": i, "delta": {"content": text} if text else {}, "finish_reason": reason,
                      "logprobs": self._chat_logprobs([token]) if self.body.logprobs else None}
        else:
            choice = {"index": i, "text": text, "finish_reason": reason,
                      "logprobs": self._completion_logprobs(i, [token], False) if self.body.logprobs is not None else None}
        return self.envelope.body([choice])
