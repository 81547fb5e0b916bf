"""The guard on ``lmforge generate`` and ``lmforge chat``: a blocked prompt, a reply cut as it streams, the log."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import support

from lmforge.cli import main
from lmforge.plugins.preprocessors._lexicon import WORD

GREEDY = ["--max-tokens", "40", "--temperature", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A random model whose greedy replies run long."""
    return support.make_run(tmp_path_factory.mktemp("guard"), "data.seq_len=64", noise=0.5, quiet_eos=True)


def generate(capsys, *args) -> tuple[int, str, str]:
    code = main(["generate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def logged(err: str) -> list[dict]:
    return [json.loads(line.split("lmforge: guard: ", 1)[1]) for line in err.splitlines() if line.startswith("lmforge: guard: ")]


def a_word_of(reply: str) -> tuple[str, int]:
    """A word the model writes in the middle of ``reply``, and where it first starts."""
    for m in WORD.finditer(reply):
        if m.start() > 5 and len(m.group()) >= 2 and m.group().isalpha():
            first = next(w for w in WORD.finditer(reply) if w.group().casefold() == m.group().casefold())
            return m.group(), first.start()
    pytest.skip(f"the tiny model wrote no usable word: {reply!r}")


def test_a_blocked_prompt_gets_the_refusal_and_a_redacted_log(run_dir, capsys):
    code, out, err = generate(capsys, run_dir, "--prompt", "you idiot", "--guard", "lexicon", "--no-echo", *GREEDY)
    assert code == 0 and out == "Sorry, I can't help with that.\n"
    (record,) = logged(err)
    assert record["stage"] == "prompt" and record["decision"] == "block" and record["categories"] == ["insult"]
    assert record["guard"] == "lexicon" and record["distribution"] == "lmforge" and record["version"]
    assert record["text"] == "[redacted: 9 characters]" and "idiot" not in err


def test_the_refusal_is_configurable_and_the_text_logged_on_request(run_dir, capsys):
    code, out, err = generate(
        capsys, run_dir, "--prompt", "you idiot", "--guard", "lexicon", "--guard-option", "refusal=No.", "--guard-log-text", "--no-echo", *GREEDY
    )
    assert out == "No.\n" and logged(err)[0]["text"] == "you idiot"


def test_a_reply_that_turns_unsafe_is_cut_before_the_word(run_dir, capsys):
    """The model's own greedy reply, with one of its words made a lexicon entry: the reply stops just before it."""
    full = generate(capsys, run_dir, "--prompt", "def add", "--no-echo", *GREEDY)[1].rstrip("\n")
    word, start = a_word_of(full)
    guard = ["--guard", "lexicon", "--guard-option", "builtin=false", "--guard-option", f"lexicon=[{word}]"]
    code, out, err = generate(capsys, run_dir, "--prompt", "def add", "--no-echo", *guard, *GREEDY)
    assert code == 0 and out == full[:start] + "\n"
    (record,) = logged(err)
    assert record["stage"] == "reply" and record["categories"] == ["custom"] and "cut the reply (content_filter)" in err
    allowed = generate(capsys, run_dir, "--prompt", "def add", "--no-echo", "--guard", "lexicon", *GREEDY)
    assert allowed[1].rstrip("\n") == full and not logged(allowed[2])


def test_several_prompts_each_get_their_own_verdict(run_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("def add\nshut up\nimport os\n")
    code, out, err = generate(capsys, run_dir, "--file", prompts, "--guard", "lexicon", *GREEDY)
    assert code == 0 and out.count("=== prompt ") == 3
    assert "=== prompt 2/3: 'shut up' (content_filter, 0 tokens)\nshut upSorry, I can't help with that.\n" in out
    assert [r["stage"] for r in logged(err)] == ["prompt 2"]


def test_the_guard_recorded_in_the_runs_config_applies(run_dir, tmp_path, capsys):
    import shutil

    from omegaconf import OmegaConf

    run = tmp_path / "guarded"
    shutil.copytree(run_dir, run)
    config = OmegaConf.load(run / "config.yaml")
    config.guard = {"name": "lexicon", "refusal": "Not here."}
    (run / "config.yaml").write_text(OmegaConf.to_yaml(config))
    assert generate(capsys, run, "--prompt", "stfu", "--no-echo", *GREEDY)[1] == "Not here.\n"
    assert generate(capsys, run, "--prompt", "stfu", "--no-echo", "--guard", "none", *GREEDY)[1] != "Not here.\n"


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--guard", "nosuch"], r"guard=nosuch: no guard named 'nosuch' is registered. Available: classifier, lexicon, none"),
        (["--guard", "lexicon", "--guard-option", "action=stop"], r"guard.action='stop': use block"),
        (["--guard", "lexicon", "--guard-option", "colour=red"], r"guard.colour: .*The options of guard=lexicon are: refusal, check, builtin"),
        (["--guard-option", "action=flag"], r"without --guard: name the guard"),
        (["--guard", "lexicon", "--guard-option", "action"], r"--guard-option 'action': write KEY=VALUE"),
    ],
)
def test_bad_guard_flags_are_one_clear_error(run_dir, capsys, flags, message):
    code, out, err = generate(capsys, run_dir, "--prompt", "hi", *flags, *GREEDY)
    assert code != 0 and re.search(message, err), err


def test_chat_refuses_a_blocked_message_and_cuts_a_reply(run_dir):
    import io

    from lmforge.plugins.deploy import _chat, _generation
    from lmforge.plugins.guards._apply import build

    opened = _generation.open_run(run_dir, None, "cpu", command="chat")
    template = _chat.load_template(opened.run, None, "")
    sampling = _generation.Sampling(max_tokens=30, temperature=0.0)

    def chat(lines: list[str], guarded) -> str:
        feed, out = iter(lines), io.StringIO()

        def read(_):
            try:
                return next(feed)
            except StopIteration:
                raise EOFError from None

        assert _chat.repl(opened, sampling, template, read=read, out=out, guarded=guarded) == 0
        return out.getvalue().split("\n", 2)[2]  # after the greeting and the help line

    reply = chat(["hello"], None).strip()
    word, start = a_word_of(reply)
    guarded = build({"name": "lexicon", "builtin": False, "lexicon": ["moron", word]})
    guarded.out = io.StringIO()
    text = chat(["you moron", "hello"], guarded)
    assert text.startswith("Sorry, I can't help with that.\n")
    assert text.split("\n")[1] == reply[:start] + " [stopped by the guard]", (text, reply, word)
    assert [r["stage"] for r in guarded.logged] == ["message", "reply"]


@pytest.mark.parametrize("check, prompt_blocked, reply_blocked", [
    (["prompt", "reply"], True, True), (["prompt"], True, False), (["reply"], False, True),
])
def test_a_guard_checks_only_what_check_names(check, prompt_blocked, reply_blocked):
    from lmforge.plugins.guards._apply import build

    guarded = build({"name": "lexicon", "check": check})
    assert guarded.check_prompt("you idiot").blocked is prompt_blocked
    assert guarded.check_reply("you idiot").blocked is reply_blocked
    scanner = guarded.scanner()
    shown, verdict = scanner.feed("you idi")
    more, verdict = scanner.feed("ot, go")
    if not verdict.blocked:
        more2, verdict = scanner.finish()
        more += more2
    assert verdict.blocked is reply_blocked
    assert ("idiot" in shown + more) is not reply_blocked  # a reply checked never shows the word that blocked it


def test_a_guard_check_naming_nothing_known_is_refused():
    from lmforge.errors import ConfigError
    from lmforge.plugins.guards._apply import build

    with pytest.raises(ConfigError, match=r"guard check=\['answer'\]: name what the guard checks, prompt, reply or both"):
        build({"name": "lexicon", "check": ["answer"]})
