"""``lmforge serve``: the real server in a subprocess on 127.0.0.1, through the official
``openai`` client and raw HTTP: the OpenAI wire format, streaming, batching, every limit
and its status code, disconnects, and the refusal to bind other addresses without a key."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

import support


openai = pytest.importorskip("openai")

KEY = "test-key-123"
CONTEXT = 512


def make_run(root: Path, *overrides: str) -> Path:
    """A run directory with random weights and a summary.json; replies run long."""
    run = support.make_run(root, f"data.seq_len={CONTEXT}", *overrides, noise=0.5, quiet_eos=True)
    (run / "summary.json").write_text(json.dumps({"val_loss": 3.21, "val_ppl": 24.8, "tokens": 123456}))
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(run: Path, *flags: str, env: dict | None = None):
    """``lmforge serve`` in a subprocess; yields its base URL once /health answers 200."""
    port = free_port()
    log = run.parent / f"serve-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lmforge.cli", "serve", str(run), "--port", str(port), *flags],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"lmforge serve exited with {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"lmforge serve not healthy within 90 s:\n{log.read_text()}"
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def url(run_dir):
    with server(run_dir, "--api-key", KEY) as url:
        yield url


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def auth() -> dict:
    return {"Authorization": f"Bearer {KEY}"}


def post(url: str, path: str, body, **kwargs) -> httpx.Response:
    return httpx.post(url + path, json=body, headers=auth(), timeout=60, **kwargs)


# the OpenAI client

def test_models_lists_the_run(client):
    assert [m.id for m in client.models.list()] == ["run"]


def test_completion_through_the_openai_client(client):
    reply = client.completions.create(model="run", prompt="def add(a, b):", max_tokens=12, temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "length" and choice.text
    assert reply.usage.completion_tokens == 12 and reply.usage.total_tokens == reply.usage.prompt_tokens + 12


def test_chat_through_the_openai_client(client):
    reply = client.chat.completions.create(model="run", messages=[{"role": "user", "content": "hello"}], max_tokens=8, temperature=0)
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 8


def test_streamed_chat_equals_the_whole_reply_and_ends_with_usage(client):
    kwargs = dict(model="run", messages=[{"role": "user", "content": "import os"}], max_tokens=20, temperature=0)
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20


def test_streamed_completion_ends_with_done(url):
    body = {"model": "run", "prompt": "class A:", "max_tokens": 6, "stream": True}
    with httpx.stream("POST", url + "/v1/completions", json=body, headers=auth(), timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"


def test_the_same_seed_gives_the_same_text_and_n_gives_n_choices(client):
    kwargs = dict(model="run", prompt="def", max_tokens=10, temperature=1.0, seed=7, n=3)
    first, second = client.completions.create(**kwargs), client.completions.create(**kwargs)
    assert [c.text for c in first.choices] == [c.text for c in second.choices]
    assert [c.index for c in first.choices] == [0, 1, 2] and first.usage.completion_tokens == 30


def test_stop_sequences_are_honoured(client):
    free = client.completions.create(model="run", prompt="def add(a, b):", max_tokens=30, temperature=0).choices[0].text
    stop = free[5:7]
    assert len(stop) == 2
    cut = client.completions.create(model="run", prompt="def add(a, b):", max_tokens=30, temperature=0, stop=[stop])
    assert cut.choices[0].text == free[: free.index(stop)] and cut.choices[0].finish_reason == "stop"


def test_logprobs_on_chat_and_completions_and_echo_scores_the_prompt(client):
    chat = client.chat.completions.create(model="run", messages=[{"role": "user", "content": "hi"}], max_tokens=3, temperature=0, logprobs=True, top_logprobs=2)
    content = chat.choices[0].logprobs.content
    assert len(content) == 3 and all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)
    assert content[0].logprob == pytest.approx(content[0].top_logprobs[0].logprob)  # greedy takes the likeliest
    scored = client.completions.create(model="run", prompt="def add(a, b):", max_tokens=0, echo=True, logprobs=1, temperature=0)
    lp = scored.choices[0].logprobs
    assert lp.token_logprobs[0] is None and all(v <= 0 for v in lp.token_logprobs[1:])
    assert len(lp.tokens) == scored.usage.prompt_tokens and scored.choices[0].text == "def add(a, b):"


def test_concurrent_greedy_requests_batch_without_changing_their_text(url):
    """Rows of different lengths decode as one padded batch and give what each gives alone."""
    prompts = ["def", "import os\nprint(", "class A:\n    pass\n\nclass B(A):", "x"]
    alone = [post(url, "/v1/completions", {"model": "run", "prompt": p, "max_tokens": 24, "temperature": 0}).json()["choices"][0]["text"] for p in prompts]
    together = [None] * len(prompts)

    def ask(i):
        together[i] = post(url, "/v1/completions", {"model": "run", "prompt": prompts[i], "max_tokens": 24, "temperature": 0}).json()["choices"][0]["text"]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert together == alone


def test_an_rnn_interleaves_its_rows_and_gives_each_its_own_text(tmp_path):
    """Without ``supports_padding`` the rows decode one after the other within each step."""
    run = make_run(tmp_path, "model=rnn")
    prompts = ["def", "import os\nprint(", "x"]
    with server(run) as url:
        ask = lambda p: httpx.post(url + "/v1/completions", json={"model": "run", "prompt": p, "max_tokens": 16, "temperature": 0}, timeout=60).json()["choices"][0]["text"]  # noqa: E731
        alone = [ask(p) for p in prompts]
        together = [None] * len(prompts)
        threads = [threading.Thread(target=lambda i=i: together.__setitem__(i, ask(prompts[i]))) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert together == alone and all(alone)


def test_a_request_arriving_mid_decode_does_not_wait_for_the_others(url):
    long = {"model": "run", "prompt": "def", "max_tokens": CONTEXT - 8, "temperature": 0, "stream": True}
    with httpx.stream("POST", url + "/v1/completions", json=long, headers=auth(), timeout=60) as r:
        lines = r.iter_lines()
        next(line for line in lines if line.startswith("data: "))  # the long one is decoding
        short = {"model": "run", "prompt": "x", "max_tokens": 1, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=short, headers=auth(), timeout=60) as r2:
            first = next(line for line in r2.iter_lines() if line.startswith("data: "))
        assert json.loads(first[6:])["choices"][0]["finish_reason"] == "length"
        rest = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert rest and rest[-1]["choices"][0]["finish_reason"] == "length"  # the short one finished while the long one still had tokens to send


# errors, each with its status and an OpenAI-style error naming the field

def test_health_is_public_and_every_other_route_needs_the_key(url):
    assert httpx.get(url + "/health").status_code == 200
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/completions"), ("POST", "/v1/chat/completions"), ("GET", "/lmforge/run")):
        r = httpx.request(method, url + path, json={}, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", path
    assert httpx.get(url + "/v1/models").status_code == 401


def test_a_body_over_the_limit_is_413(url):
    r = post(url, "/v1/completions", {"model": "run", "prompt": "x" * 2_100_000})
    assert r.status_code == 413 and "2,000,000 bytes" in r.json()["error"]["message"]

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(30):
            yield b"x" * 100_000

    r = httpx.post(url + "/v1/completions", content=chunks(), headers=auth(), timeout=60)
    assert r.status_code == 413


@pytest.mark.parametrize(
    "path, body, status, param",
    [
        ("/v1/completions", "{not json", 400, None),
        ("/v1/completions", {"model": "gpt-4", "prompt": "x"}, 400, "model"),
        ("/v1/completions", {"model": "run", "prompt": "x", "temperature": 5}, 422, "temperature"),
        ("/v1/completions", {"model": "run", "prompt": "x", "top_p": 0}, 422, "top_p"),
        ("/v1/completions", {"model": "run", "prompt": "x", "n": 99}, 422, "n"),
        ("/v1/completions", {"model": "run", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, 422, "stop"),
        ("/v1/completions", {"model": "run"}, 422, "prompt"),
        ("/v1/completions", {"model": "run", "prompt": "x", "max_tokens": CONTEXT}, 400, "max_tokens"),
        ("/v1/completions", {"model": "run", "prompt": "def add(a, b): " * 200}, 400, "prompt"),
        ("/v1/chat/completions", {"model": "run", "messages": []}, 422, "messages"),
        ("/v1/chat/completions", {"model": "run", "messages": [{"role": "robot", "content": "x"}]}, 422, "messages.0.role"),
    ],
)
def test_bad_requests_name_the_field_and_limit(url, path, body, status, param):
    kwargs = {"content": body} if isinstance(body, str) else {"json": body}
    r = httpx.post(url + path, headers={**auth(), "Content-Type": "application/json"}, timeout=60, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"] and error["type"]


def test_the_page_and_run_figures(url):
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "<script>" in page.text and "http://" not in page.text.replace("http://www.w3.org", "")
    info = httpx.get(url + "/lmforge/run", headers=auth()).json()
    assert info["model"] == "run" and info["context"] == CONTEXT and info["summary"]["val_ppl"] == 24.8


# a server with one slot and a deadline

@pytest.fixture(scope="module")
def one_slot(run_dir):
    with server(run_dir, "--max-concurrent", "1", "--timeout", "20", "--cors-origin", "http://app.test") as url:
        yield url


def test_more_than_max_concurrent_is_429_and_a_disconnect_frees_the_slot(one_slot):
    long = {"model": "run", "prompt": "def", "max_tokens": CONTEXT - 8, "temperature": 0, "stream": True}
    with httpx.stream("POST", one_slot + "/v1/completions", json=long, timeout=60) as r:
        lines = r.iter_lines()  # held: a dropped iterator closes the connection
        next(line for line in lines if line.startswith("data: "))
        busy = httpx.post(one_slot + "/v1/completions", json={"model": "run", "prompt": "x", "max_tokens": 1}, timeout=60)
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
        assert busy.json()["error"]["code"] == "overloaded"
    # the client left mid-stream: its slot comes back well before the long reply would have ended
    deadline, status = time.monotonic() + 10, None
    while time.monotonic() < deadline:
        status = httpx.post(one_slot + "/v1/completions", json={"model": "run", "prompt": "x", "max_tokens": 1}, timeout=60).status_code
        if status == 200:
            break
        time.sleep(0.1)
    assert status == 200


def test_cors_is_off_unless_an_origin_is_named(url, one_slot):
    preflight = {"Origin": "http://app.test", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    assert "access-control-allow-origin" not in httpx.options(url + "/v1/completions", headers=preflight).headers
    assert httpx.options(one_slot + "/v1/completions", headers=preflight).headers["access-control-allow-origin"] == "http://app.test"
    other = {**preflight, "Origin": "http://evil.test"}
    assert "access-control-allow-origin" not in httpx.options(one_slot + "/v1/completions", headers=other).headers


def test_a_request_past_the_timeout_is_504(run_dir):
    with server(run_dir, "--timeout", "0.05") as url:
        r = httpx.post(url + "/v1/completions", json={"model": "run", "prompt": "def", "max_tokens": CONTEXT - 8}, timeout=60)
        assert r.status_code == 504 and "--timeout" in r.json()["error"]["message"]
        assert httpx.get(url + "/health").status_code == 200


def test_a_streamed_event_from_its_template_equals_the_whole_body_encoded():
    """The per-token fast path (a template filled per chunk) writes the very bytes of json.dumps of the full body."""
    from lmforge.plugins.deploy import _protocol as P
    from lmforge.plugins.deploy._engine import Chunk
    from lmforge.plugins.deploy._server import _Reply, _sse

    chunks = [Chunk(0, ' a "quoted"\n\u00e9\U0001F600 100%s', 7, -0.5, [], None), Chunk(1, "", 8, -1.0, [], None), Chunk(1, " b", 9, -2.0, [], "stop"), Chunk(0, "c", 3, -0.1, [], "length")]
    for kind, body in (("completion", P.CompletionRequest(model="m", prompt="x", n=2)), ("chat", P.ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], n=2))):
        envelope = P.Envelope.new(kind, "100%s model", True)
        fast, whole = _Reply(kind, body, envelope, None, 3, "x"), _Reply(kind, body, envelope, None, 3, "x")
        for chunk in chunks:
            event = fast.event(chunk)
            assert event == _sse(whole.delta(chunk)) and json.loads(event[len("data: "):])["choices"][0]["index"] == chunk.row


# the engine process

def _children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


def engine_pid(url: str) -> int:
    """The pid of the engine process of the server at ``url`` (a spawned child of it)."""
    port = url.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and port.encode() in argv and proc.name.isdigit():
            engines = [c for c in _children(int(proc.name)) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
            assert len(engines) == 1, engines
            return engines[0]
    raise AssertionError(f"no lmforge serve process on port {port}")


def gone(pid: int, within: float) -> bool:
    """Whether process ``pid`` ended (or is a zombie) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the engine process through /proc")
def test_a_dead_engine_process_answers_503_and_fails_health(run_dir):
    """A stream in flight ends with a 503 error event, /health turns 503, new requests get 503: nothing hangs."""
    with server(run_dir) as url:
        engine = engine_pid(url)
        long = {"model": "run", "prompt": "def", "max_tokens": CONTEXT - 8, "temperature": 0, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=long, timeout=30) as r:
            lines = (line for line in r.iter_lines() if line.startswith("data: "))
            next(lines)
            os.kill(engine, signal.SIGKILL)
            events = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
        assert events[-1]["error"]["code"] == "engine_failed" and "exited with code -9" in events[-1]["error"]["message"]
        health = httpx.get(url + "/health", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "failed"
        r = httpx.post(url + "/v1/completions", json={"model": "run", "prompt": "x", "max_tokens": 1}, timeout=10)
        assert r.status_code == 503 and r.json()["error"]["code"] == "engine_failed"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the engine process through /proc")
def test_the_engine_process_ends_with_the_server_even_a_killed_one(run_dir):
    with server(run_dir) as url:
        engine = engine_pid(url)
    assert gone(engine, 10)  # stopped with the server (SIGTERM)
    with server(run_dir) as url:
        engine = engine_pid(url)
        port = url.rsplit(":", 1)[1]
        serve = next(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and engine in _children(int(p.name)))
        os.kill(serve, signal.SIGKILL)
        assert gone(engine, 10), f"the engine process outlived its server on port {port}"


def test_binding_another_address_without_a_key_is_refused(run_dir):
    env = {k: v for k, v in os.environ.items() if k != "LMFORGE_API_KEY"}
    proc = subprocess.run([sys.executable, "-m", "lmforge.cli", "serve", str(run_dir), "--host", "0.0.0.0", "--port", str(free_port())], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode != 0
    assert "--api-key" in proc.stderr and "0.0.0.0" in proc.stderr
