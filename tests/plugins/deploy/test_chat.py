"""``lmforge chat``: the template, the history within the context, and the REPL in a pseudo-terminal."""

from __future__ import annotations

import json
import os
import sys

import pytest
from test_generate import make_run

from lmforge.errors import DataError
from lmforge.plugins.deploy._chat import DEFAULT_TEMPLATE, Conversation, Template

pexpect = pytest.importorskip("pexpect")


def test_the_plain_template_renders_a_transcript_and_stops_at_the_next_user_turn():
    template = Template(DEFAULT_TEMPLATE, eos_token="<eos>")
    text = template.render([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}])
    assert text == "User: hi\nAssistant: hello<eos>\nUser: bye\nAssistant:"
    assert template.stop == ("\nUser:",)


def test_a_broken_template_is_a_config_error_naming_it():
    from lmforge.errors import ConfigError

    with pytest.raises(ConfigError, match="my.jinja is not a usable Jinja chat template"):
        Template("{% for m in messages %}", origin="my.jinja")


def words(text: str) -> list[str]:
    return text.split()


def test_history_is_truncated_oldest_first_to_fit_the_budget():
    conversation = Conversation(Template(DEFAULT_TEMPLATE))
    conversation.add("system", "be brief")
    for i in range(4):
        conversation.add("user", f"question {i} " + "x " * 5)
        conversation.add("assistant", f"answer {i}")
    conversation.add("user", "last one")
    ids, dropped = conversation.prompt(words, budget=30)
    assert len(ids) <= 30 and dropped > 0
    kept = conversation.messages
    assert kept[0]["role"] == "system" and kept[-1]["content"] == "last one"
    assert len(kept) == 10 - dropped  # dropped from the front, after the system message
    assert "question 3 " + "x " * 5 in [m["content"] for m in kept]
    assert conversation.prompt(words, budget=30) == (ids, 0)  # nothing more to drop


def test_a_message_over_the_budget_alone_is_refused_and_leaves_the_history():
    conversation = Conversation(Template(DEFAULT_TEMPLATE))
    conversation.add("user", "short")
    conversation.add("assistant", "ok")
    conversation.add("user", "long " * 50)
    with pytest.raises(DataError, match=r"a prompt of \d+ tokens, but the context leaves 20"):
        conversation.prompt(words, budget=20)
    assert conversation.messages == [] or conversation.messages[-1]["content"] != "long " * 50


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    """A random model with a long context: its greedy replies run long enough to interrupt."""
    return make_run(tmp_path_factory.mktemp("chat"), "data.seq_len=2048", "model.n_embd=64", "model.n_layer=2")


def spawn(run, *flags):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "LMFORGE_DISABLE_PLUGIN_AUTOLOAD": "1", "TERM": "dumb"}
    child = pexpect.spawn(sys.executable, ["-m", "lmforge.cli", "chat", str(run), "--device", "cpu", *flags], env=env, encoding="utf-8", timeout=120)
    child.expect_exact(">> ")
    return child


def test_chat_in_a_terminal(chat_run, tmp_path):
    """Type a message and see a reply stream; /temp 0 and /max; /reset; /save; Ctrl-C stops a long
    reply and keeps the session; Ctrl-D exits 0."""
    child = spawn(chat_run, "--max-tokens", "16", "--temperature", "0")

    def command(line: str, answer: str) -> None:
        child.sendline(line)
        child.expect_exact(answer)
        child.expect_exact(">> ")

    child.sendline("def add(a, b):")
    child.expect_exact(">> ")
    assert len(child.before.strip().splitlines()) >= 2  # the echoed message, then the reply
    command("/temp 0", "(temperature 0.0)")
    command("/save " + str(tmp_path / "first.json"), "(saved 2 messages to")
    first = json.loads((tmp_path / "first.json").read_text())
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"] and first["messages"][1]["content"]
    command("/reset", "(history cleared)")
    child.sendline("def add(a, b):")
    child.expect_exact(">> ")
    command("/save " + str(tmp_path / "again.json"), "(saved 2 messages to")
    assert json.loads((tmp_path / "again.json").read_text()) == first  # after /reset, the same greedy reply

    command("/max 1500", "(replies of at most 1500 tokens)")
    child.sendline("import os")
    child.expect(r"import os\r\n.{20}")  # the reply has begun streaming
    child.sendintr()
    child.expect_exact("[stopped]")
    child.expect_exact(">> ")
    command("/temp nope", "error: /temp needs a number")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_quit_ends_the_session(chat_run):
    child = spawn(chat_run)
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
