"""A guard as the generating commands use it: the flags, the guard chosen for a run, the log.

``lmforge generate``, ``chat`` and ``serve`` add ``--guard NAME``, ``--guard-option
KEY=VALUE`` (repeatable) and ``--guard-log-text``; ``from_args`` builds the guard they
name, else the one recorded under ``guard`` in the run's ``config.yaml``, else none.
Every block and flag is one JSON line on stderr, ``lmforge: guard: {...}``, with the
guard's name, distribution and version, and the text redacted to its length unless
``--guard-log-text``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from lmforge.contracts import Guard, Scanner, Verdict


STAGES = ("prompt", "reply")  # what a guard may check (GuardConfig.check)


class _Unchecked(Scanner):
    """A reply the guard does not check (``check=[prompt]``): released as it comes, allowed."""

    def feed(self, chunk: str) -> tuple[str, Verdict]:
        return chunk, Verdict()

    def finish(self) -> tuple[str, Verdict]:
        return "", Verdict()


def add_guard_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--guard", metavar="NAME", help="check the prompt and the reply with this guard: none, lexicon, classifier... (default: the run's config `guard`, else none)")
    parser.add_argument("--guard-option", action="append", default=[], metavar="KEY=VALUE", help="an option of the guard, e.g. action=flag, lexicon=[word] (repeatable)")
    parser.add_argument("--guard-log-text", action="store_true", help="log the text of a blocked or flagged prompt or reply (default: redacted to its length)")


@dataclass
class Guarded:
    """A built guard, where it comes from, and how its decisions are logged."""

    guard: Guard
    provenance: Any  # lmforge.registry.Provenance
    log_text: bool = False
    out: TextIO | None = None  # the log's stream; None = stderr at the time of logging
    logged: list[dict] = field(default_factory=list)

    @property
    def refusal(self) -> str:
        return self.guard.config.refusal

    def __post_init__(self) -> None:
        from lmforge.errors import ConfigError

        check = list(getattr(self.guard.config, "check", STAGES))
        if not check or set(check) - set(STAGES):
            raise ConfigError(f"guard check={check}: name what the guard checks, prompt, reply or both; e.g. --guard-option check=[prompt]")
        self.stages = frozenset(check)

    def check_prompt(self, text: str, where: str = "prompt") -> Verdict:
        """The guard's verdict on a prompt (allow when it checks replies only), logged."""
        if "prompt" not in self.stages:
            return Verdict()
        verdict = self.guard.check(text)
        self.log(where, verdict, text)
        return verdict

    def check_reply(self, text: str) -> Verdict:
        """The guard's verdict on a whole reply (allow when it checks prompts only), not logged."""
        return self.guard.check(text) if "reply" in self.stages else Verdict()

    def scanner(self) -> Scanner:
        """A scanner of one streamed reply; one that lets everything through when the guard checks prompts only."""
        return self.guard.scanner() if "reply" in self.stages else _Unchecked(self.guard)

    def log(self, stage: str, verdict: Verdict, text: str) -> None:
        """One JSON line for a block or a flag; an allow is not logged."""
        if verdict.decision == "allow":
            return
        record = {
            "stage": stage, "decision": verdict.decision, "categories": list(verdict.categories), "scores": verdict.scores,
            "guard": self.guard.name, "distribution": self.provenance.distribution, "version": self.provenance.version,
            "text": text if self.log_text else f"[redacted: {len(text)} characters]",
        }
        self.logged.append(record)
        print(f"lmforge: guard: {json.dumps(record, ensure_ascii=False)}", file=self.out or sys.stderr, flush=True)


def parse_options(options: list[str]) -> dict:
    """``["key=value", ...]`` as a dict, each value read as YAML (``[a,b]``, ``0.5``, ``true``)."""
    from omegaconf import OmegaConf

    from lmforge.errors import ConfigError

    for option in options:
        if "=" not in option or not option.split("=", 1)[0].strip():
            raise ConfigError(f"--guard-option {option!r}: write KEY=VALUE, e.g. --guard-option action=flag")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(options)))
    except Exception as exc:
        raise ConfigError(f"--guard-option {' '.join(options)}: {str(exc).splitlines()[0]}; write KEY=VALUE") from None


def recorded(run_dir: Path) -> dict | None:
    """The ``guard`` node of a run's config.yaml (a fine-tuned run may record one), or None."""
    config = Path(run_dir) / "config.yaml"
    if not config.is_file():
        return None
    from omegaconf import OmegaConf

    node = OmegaConf.load(config).get("guard")
    if node is None:
        return None
    return {"name": node} if isinstance(node, str) else OmegaConf.to_container(node, resolve=True)


def build(node: dict, *, log_text: bool = False, key: str = "guard") -> Guarded:
    """The guard ``node`` names (``{"name": ..., **options}``), checked and set up."""
    from lmforge.hydra_bridge import component_config

    entry, config = component_config("guard", node, key)
    guard = entry.cls(config)
    guard.setup()
    return Guarded(guard, entry.provenance, log_text)


def from_args(args: argparse.Namespace, run_dir: Path) -> Guarded | None:
    """The guard of ``--guard``/``--guard-option``, else the run's recorded one; None for none."""
    from lmforge.errors import ConfigError

    options = parse_options(args.guard_option)
    if args.guard is not None:
        node, key = {**options, "name": args.guard}, "guard"
    elif (node := recorded(run_dir)) is not None:
        node, key = {**node, **options}, f"{Path(run_dir) / 'config.yaml'}: guard"
    elif options:
        raise ConfigError(f"--guard-option {' '.join(args.guard_option)} without --guard: name the guard, e.g. --guard lexicon")
    else:
        return None
    if node.get("name") == "none":
        return None
    return build(node, log_text=args.guard_log_text, key=key)


def guard_stream(guarded: Guarded | None, chunks, text_of: Callable = lambda c: c.text, where: str = "reply"):
    """``(released text, chunk, verdict)`` for each chunk of one streamed reply; stops after a block.

    ``chunk`` is the engine's chunk (with its ``finish_reason``): on the last one the
    scanner's held-back text is released too. A block or a flag is logged once, with the
    reply so far. Without a guard the text passes as it is, with a verdict of None.
    """
    if guarded is None:
        for chunk in chunks:
            yield text_of(chunk), chunk, None
        return
    scanner, reply, verdict = guarded.scanner(), "", Verdict()
    for chunk in chunks:
        piece = text_of(chunk)
        reply += piece
        released, verdict = scanner.feed(piece)
        if getattr(chunk, "finish_reason", None) is not None and not verdict.blocked:
            more, verdict = scanner.finish()
            released += more
        if verdict.blocked:
            if hasattr(chunks, "close"):
                chunks.close()  # the model stops generating
            guarded.log(where, verdict, reply)
            yield released, chunk, verdict
            return
        yield released, chunk, verdict
    more, verdict = scanner.finish()
    if more or verdict.blocked:
        yield more, None, verdict
    guarded.log(where, verdict, reply)
