"""``lmforge serve <run dir>``: an OpenAI-compatible HTTP server for a run's model, with a
web chat page at ``/``.

Routes: ``POST /v1/completions``, ``POST /v1/chat/completions``, ``GET /v1/models``,
``GET /health`` (public: 503 while the model loads, 200 after), ``GET /`` (the page) and
``GET /lmforge/run`` (the run's figures). Concurrent requests decode as one batch.

Secure by default: the server binds 127.0.0.1; any other address needs an API key
(``--api-key`` or ``LMFORGE_API_KEY``), and with a key every route but ``/health`` and
the page answers 401 without ``Authorization: Bearer <key>``.

Importing this module is cheap: torch, FastAPI and uvicorn load inside ``serve``.
"""

from __future__ import annotations

import os
import sys

from lmforge import hookimpl

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
KEY_ENV = "LMFORGE_API_KEY"


def serve(argv: list[str]) -> int:
    import argparse
    from pathlib import Path

    from lmforge.errors import ConfigError
    from lmforge.plugins.deploy import _protocol as P

    parser = argparse.ArgumentParser(prog="lmforge serve", description=__doc__.split("\n\nImporting")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a directory written by lmforge train, or a checkpoint inside one")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; any other needs --api-key)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--api-key", default=None, help=f"require `Authorization: Bearer KEY` (default: ${KEY_ENV}, else none)")
    parser.add_argument("--model-name", default=None, help="the model id clients send (default: the run directory's name)")
    parser.add_argument("--max-concurrent", type=int, default=P.DEFAULT_MAX_CONCURRENT, help=f"requests in flight before 429 (default {P.DEFAULT_MAX_CONCURRENT})")
    parser.add_argument("--max-body-bytes", type=int, default=P.DEFAULT_MAX_BODY, help=f"request body limit, 413 above (default {P.DEFAULT_MAX_BODY:,})")
    parser.add_argument("--timeout", type=float, default=P.DEFAULT_TIMEOUT, help=f"seconds per request before 504 (default {P.DEFAULT_TIMEOUT:g})")
    parser.add_argument("--max-tokens", type=int, default=P.DEFAULT_MAX_TOKENS, help=f"new tokens when a request sets no max_tokens (default {P.DEFAULT_MAX_TOKENS})")
    parser.add_argument("--max-batch", type=int, default=64, help="rows decoded together at most; more wait their turn (default 64)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", help="allow browser requests from ORIGIN (repeatable; default: CORS off)")
    parser.add_argument("--chat-template", type=Path, metavar="FILE", help="a Jinja chat template (default: the run's own, else User:/Assistant:)")
    parser.add_argument("--checkpoint", help="a .ckpt file of the run (default: checkpoints/last.ckpt)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1... (default auto)")
    parser.add_argument("--log-level", default="warning", help="uvicorn's log level (default warning)")
    from lmforge.plugins.guards import _apply as guards

    guards.add_guard_flags(parser)
    args = parser.parse_args(argv)

    key = args.api_key or os.environ.get(KEY_ENV) or None
    if args.host not in LOCAL_HOSTS and not key:
        raise ConfigError(
            f"--host {args.host} would open the model to other machines without a key: pass --api-key KEY (or set "
            f"{KEY_ENV}) so that clients must send `Authorization: Bearer KEY`, or bind --host 127.0.0.1"
        )
    for flag, value, low in (("--max-concurrent", args.max_concurrent, 1), ("--max-body-bytes", args.max_body_bytes, 1024), ("--max-tokens", args.max_tokens, 1), ("--max-batch", args.max_batch, 1)):
        if value < low:
            raise ConfigError(f"{flag} {value}: must be {low} or more")
    if not args.timeout > 0:
        raise ConfigError(f"--timeout {args.timeout}: must be above 0 seconds")

    from lmforge.plugins.deploy._engine import Engine
    from lmforge.runs import Run

    run = Run.open(args.run_dir)
    run.checkpoint(args.checkpoint)  # a missing checkpoint fails before the server starts
    if run.spec.model.entry.cls.objective == "masked":
        raise ConfigError(f"{run.dir} trains model={run.spec.model.name}, a masked LM: it does not generate text, so `lmforge serve` cannot use it")
    if args.device not in ("auto", "cpu"):
        from lmforge.plugins.deploy._generation import resolve_device

        resolve_device(args.device)  # a device that is not there fails before the server starts
    from lmforge.plugins.deploy import _chat

    eos = run.tokenizer.special_ids.get("eos")
    template = _chat.load_template(run, args.chat_template, run.tokenizer.decode([eos]) if eos is not None else "")
    guarded = guards.from_args(args, args.run_dir)  # checks prompts and replies in this process; a bad guard fails now
    server: list = []

    def failed(exc: BaseException) -> None:
        print(f"lmforge serve: the model did not load: {exc}", file=sys.stderr)
        if server:
            server[0].should_exit = True

    def died(exc: BaseException) -> None:
        print(f"lmforge serve: {exc}; requests now answer 503 and GET /health 503: restart the server", file=sys.stderr, flush=True)

    # The model decodes in a process of its own, so that HTTP work never waits on it (see
    # _engine.py). It starts now: torch and the weights load there while this process starts the server.
    scheduler = Engine(args.run_dir.resolve(), checkpoint=args.checkpoint, device=args.device, max_batch=args.max_batch, on_error=failed, on_death=died).start()
    try:
        import uvicorn

        from lmforge.plugins.deploy import _generation
        from lmforge.plugins.deploy._server import Settings, create_app

        settings = Settings(api_key=key, max_body=args.max_body_bytes, max_concurrent=args.max_concurrent, timeout=args.timeout, max_tokens=args.max_tokens, cors_origins=tuple(args.cors_origin), guard=guarded)
        app = create_app(_generation.Opened(run, None), template, scheduler, settings, name=args.model_name or run.dir.name)
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=2)
        server.append(uvicorn.Server(config))
        print(f"lmforge serve: {run.name} on http://{args.host}:{args.port}/ (key {'required' if key else 'off'}); the model loads in the background, GET /health answers 200 once ready", file=sys.stderr, flush=True)
        server[0].run()
    finally:
        scheduler.stop()
    return 1 if scheduler.failed is not None else 0


@hookimpl
def register_commands(register):
    register("serve", serve, "an OpenAI-compatible HTTP server with a web chat page, batching concurrent requests")
