"""The guard in ``lmforge serve``, through the real server and the official ``openai`` client:
a blocked prompt gets the refusal with ``content_filter``, and a reply that turns unsafe is
cut there with ``content_filter``, streamed and not."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from test_serve import make_run, server  # noqa: E402

from lmforge.plugins.preprocessors._lexicon import WORD  # noqa: E402

openai = pytest.importorskip("openai")

PROMPT = "def add(a, b):"
REFUSAL = "Sorry, I can't help with that."
GREEDY = dict(prompt=PROMPT, max_tokens=40, temperature=0)


def client(url: str):
    return openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("serve-guard"))


@pytest.fixture(scope="module")
def reference(run_dir) -> str:
    """The run's greedy reply to PROMPT from a server with no guard."""
    with server(run_dir) as url:
        return client(url).completions.create(model=run_dir.name, **GREEDY).choices[0].text


@pytest.fixture(scope="module")
def cut(reference) -> tuple[str, int]:
    """A word the model writes mid-reply, made a lexicon entry, and where it first starts."""
    for m in WORD.finditer(reference):
        if m.start() > 5 and len(m.group()) >= 2 and m.group().isalpha():
            word = m.group().casefold()
            return m.group(), next(w.start() for w in WORD.finditer(reference) if w.group().casefold() == word)
    pytest.skip(f"the tiny model wrote no usable word: {reference!r}")


@pytest.fixture(scope="module")
def guarded(run_dir, cut):
    flags = ["--guard", "lexicon", "--guard-option", f"lexicon=[{cut[0]}]"]
    with server(run_dir, *flags) as url:
        yield url, client(url)


def test_a_flagged_prompt_gets_the_refusal_with_content_filter(run_dir, guarded):
    _, c = guarded
    reply = c.chat.completions.create(model=run_dir.name, messages=[{"role": "user", "content": "shut up, you idiot"}], max_tokens=20)
    assert reply.choices[0].message.content == REFUSAL and reply.choices[0].finish_reason == "content_filter"
    assert reply.usage.completion_tokens == 0
    chunks = list(c.chat.completions.create(model=run_dir.name, messages=[{"role": "user", "content": "shut up"}], max_tokens=20, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == REFUSAL
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "content_filter"
    completion = c.completions.create(model=run_dir.name, prompt="what a moron", max_tokens=5)
    assert completion.choices[0].text == REFUSAL and completion.choices[0].finish_reason == "content_filter"


def test_a_reply_that_turns_unsafe_is_cut_with_content_filter(run_dir, guarded, reference, cut):
    _, c = guarded
    word, start = cut
    whole = c.completions.create(model=run_dir.name, **GREEDY).choices[0]
    assert whole.text == reference[:start] and whole.finish_reason == "content_filter"
    chunks = list(c.completions.create(model=run_dir.name, stream=True, **GREEDY))
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == reference[:start]
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "content_filter"


def test_a_safe_reply_is_unchanged(run_dir, guarded, reference):
    _, c = guarded
    reply = c.completions.create(model=run_dir.name, **{**GREEDY, "max_tokens": 3}).choices[0]
    assert reply.finish_reason == "length" and reference.startswith(reply.text) and reply.text


def test_every_block_is_logged_with_the_guards_provenance_and_redacted(run_dir, guarded):
    import httpx

    url, _ = guarded
    body = {"model": run_dir.name, "prompt": "stfu", "max_tokens": 5}
    assert httpx.post(url + "/v1/completions", json=body, timeout=30).json()["choices"][0]["finish_reason"] == "content_filter"
    logs = "\n".join(p.read_text() for p in run_dir.parent.glob("serve-*.log"))
    records = [json.loads(line.split("lmforge: guard: ", 1)[1]) for line in logs.splitlines() if "lmforge: guard: " in line]
    assert any(r["stage"] == "prompt" and r["categories"] == ["harassment"] and r["text"] == "[redacted: 4 characters]" for r in records)
    assert any(r["stage"] == "reply" and r["categories"] == ["custom"] for r in records)
    assert all(r["guard"] == "lexicon" and r["distribution"] == "lmforge" and r["version"] for r in records)
    assert "stfu" not in logs
