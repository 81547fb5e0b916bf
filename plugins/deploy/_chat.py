"""The chat REPL behind ``lmforge chat``: a template, a history that fits the context, the loop.

- ``Template``: a Jinja chat template (the format of ``transformers``'
  ``apply_chat_template``: ``messages``, ``add_generation_prompt``, ``eos_token``),
  rendered in Jinja's sandbox since a run directory may come from anyone; the stop
  sequences of the assistant's turn are read off the template itself.
- ``Conversation``: the messages, rendered into prompt ids that fit a token budget by
  dropping the oldest turns first.
- ``repl``: the terminal loop, with ``/reset``, ``/temp``, ``/max``, ``/save`` and ``/quit``.
"""

from __future__ import annotations

import importlib.resources as resources
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from lmforge.errors import ConfigError, DataError, LmforgeError

# A plain transcript, for a run never fine-tuned for chat: the same as `lmforge export`
# writes beside an exported tokenizer. A config file shipped with the package, not code.
DEFAULT_TEMPLATE_FILE = "plain_chat_template.jinja"
DEFAULT_TEMPLATE = resources.files(__package__).joinpath(DEFAULT_TEMPLATE_FILE).read_text(encoding="utf-8")
TEMPLATE_FILE = "chat_template"  # in a run directory: the template the run was fine-tuned with
HELP = "/reset clears the history, /temp X sets the temperature, /max N the reply length, /save FILE writes the conversation, /quit (or Ctrl-D) leaves; Ctrl-C stops a reply"


class Template:
    """A Jinja chat template and the stop sequences that end an assistant's turn."""

    def __init__(self, source: str, *, eos_token: str = "", origin: str = "the chat template"):
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        self.origin, self.eos_token = origin, eos_token
        try:
            self.template = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(source)
            self.stop = self._stop_sequences()
        except TemplateError as exc:
            raise ConfigError(f"{origin} is not a usable Jinja chat template ({exc}): fix it, or remove it to use the plain User:/Assistant: template") from None

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt, eos_token=self.eos_token)

    def _stop_sequences(self) -> tuple[str, ...]:
        """What the template puts between an assistant's reply and the next user message (``\\nUser:``),
        without the eos token (the stream stops at its id) and trailing whitespace."""
        reply, question = "\x00reply\x00", "\x00question\x00"
        text = self.render([{"role": "user", "content": "q"}, {"role": "assistant", "content": reply}, {"role": "user", "content": question}], False)
        if reply not in text or question not in text:
            return ()
        between = text[text.index(reply) + len(reply) : text.index(question)]
        if self.eos_token:
            between = between.replace(self.eos_token, "")
        between = between.rstrip()
        return (between,) if between.strip() else ()


def load_template(run, given: Path | None, eos_token: str) -> Template:
    """``given``, else the run's own (``run_template``), else the plain transcript."""
    if given is not None:
        if not given.is_file():
            raise ConfigError(f"--chat-template {given}: no such file")
        return Template(given.read_text(encoding="utf-8"), eos_token=eos_token, origin=str(given))
    if own := run_template(run):
        return Template(own[0], eos_token=eos_token, origin=own[1])
    return Template(DEFAULT_TEMPLATE, eos_token=eos_token, origin="the plain User:/Assistant: template")


def run_template(run) -> tuple[str, str] | None:
    """The chat template a run was fine-tuned with and where it was found: the ``chat_template``
    file that ``lmforge finetune`` leaves in the run (and ``lmforge export`` copies), or
    ``chat_template`` in its config.yaml; None for a run never fine-tuned for chat."""
    own = run.dir / TEMPLATE_FILE
    if own.is_file():
        return own.read_text(encoding="utf-8"), str(own)
    if (config := run.dir / "config.yaml").is_file():
        from omegaconf import OmegaConf

        if configured := OmegaConf.load(config).get("chat_template"):
            return str(configured), f"{config}: chat_template"
    return None


@dataclass
class Conversation:
    """The messages so far, and the prompt that fits the context."""

    template: Template
    messages: list[dict] = field(default_factory=list)

    def add(self, role: str, content: str) -> None:
        self.messages.append({"role": role, "content": content})

    def reset(self) -> None:
        self.messages = [m for m in self.messages if m["role"] == "system"]

    def prompt(self, encode: Callable[[str], list[int]], budget: int) -> tuple[list[int], int]:
        """The rendered conversation's ids, at most ``budget`` tokens, and how many messages
        were dropped from the history for it: the oldest first, a system message kept.
        The last message alone over the budget is a ``DataError``, and it leaves the history."""
        dropped = 0
        while True:
            ids = encode(self.template.render(self.messages))
            if len(ids) <= budget:
                return ids, dropped
            older = [i for i, m in enumerate(self.messages[:-1]) if m["role"] != "system"]
            if not older:
                self.messages.pop()
                raise DataError(
                    f"the message makes a prompt of {len(ids)} tokens, but the context leaves {budget} for it: write "
                    f"a shorter one (or lower /max to leave more room)"
                )
            del self.messages[older[0]]
            dropped += 1


def repl(opened, sampling, template: Template, *, read: Callable[[str], str] = input, out: TextIO = sys.stdout, guarded=None) -> int:
    """Read a message, stream the reply, until /quit or end of input; returns the exit status.
    With a guard (``lmforge.plugins.guards._apply.Guarded``) a blocked message gets the
    refusal and leaves no trace in the history, and a reply blocked as it streams stops there."""
    from lmforge.engine.generate import stream
    from lmforge.plugins.guards._apply import guard_stream
    from lmforge.files import atomic_write_json
    from lmforge.plugins.deploy._generation import replace

    conversation = Conversation(template)
    encode = lambda text: opened.tokenizer.encode_batch([text])[0]  # noqa: E731
    say = lambda text: print(text, file=out, flush=True)  # noqa: E731
    say(f"Chatting with {opened.run.name} (model={opened.run.spec.model.name}, context {opened.context} tokens).")
    say(HELP)
    while True:
        try:
            line = read(">> ")
        except EOFError:
            say("")
            return 0
        except KeyboardInterrupt:
            say("")
            continue
        if not line.strip():
            continue
        if line.startswith("/"):
            command, _, value = line.strip().partition(" ")
            try:
                if command == "/quit":
                    return 0
                elif command == "/reset":
                    conversation.reset()
                    say("(history cleared)")
                elif command == "/temp":
                    sampling = replace(sampling, temperature=_number(value, float, "/temp", "0.8"))
                    say(f"(temperature {sampling.temperature})")
                elif command == "/max":
                    sampling = replace(sampling, max_tokens=_number(value, int, "/max", "128"))
                    say(f"(replies of at most {sampling.max_tokens} tokens)")
                elif command == "/save":
                    if not value.strip():
                        raise ConfigError("/save needs a file name, e.g. /save chat.json")
                    path = Path(value.strip()).expanduser()
                    atomic_write_json(path, {"run": str(opened.run.dir), "template": template.origin, "messages": conversation.messages})
                    say(f"(saved {len(conversation.messages)} messages to {path})")
                else:
                    say(f"unknown command {command}: {HELP}")
            except LmforgeError as exc:
                say(f"error: {exc}")
            continue

        if guarded is not None and guarded.check_prompt(line, "message").blocked:
            say(guarded.refusal)
            continue
        try:
            conversation.add("user", opened.clean(line, "the message"))
            budget = opened.context - min(sampling.max_tokens, opened.context // 2)  # room left for the reply
            ids, dropped = conversation.prompt(encode, budget)
        except DataError as exc:
            say(f"error: {exc}")
            continue
        if dropped:
            say(f"(dropped the {dropped} oldest message{'s' * (dropped > 1)} to keep the conversation within the context of {opened.context} tokens)")
        settings = replace(sampling, stop=(*sampling.stop, *template.stop))
        reply, chunks = "", stream(opened.model, opened.tokenizer, [ids], settings)
        try:
            for text, _, verdict in guard_stream(guarded, chunks):
                text = text if reply else text.lstrip()  # the template's "Assistant:" leaves a space
                reply += text
                out.write(text)
                out.flush()
                if verdict is not None and verdict.blocked:
                    out.write(" [stopped by the guard]")
        except KeyboardInterrupt:
            chunks.close()
            out.write(" [stopped]")
        say("")
        conversation.add("assistant", reply.strip())


def _number(value: str, kind: type, command: str, example: str):
    try:
        return kind(value.strip())
    except ValueError:
        raise ConfigError(f"{command} needs a number, got {value.strip()!r}: e.g. {command} {example}") from None
