"""The red-team evaluation behind ``lmforge eval <run> --task safety``: each model with a guard off and on.

The run and its base are prompted the way each one chats: with its own chat template
(the ``chat_template`` file a chat or DPO fine-tune leaves in its run), else the task's
``template``; a ``task.template=`` override on the command line is used for both. Each
prompt is continued greedily and stops where the template ends the assistant's turn, as
in ``lmforge chat``. Then, for each model:

- **guard off**: the reply as it came. The guard only reads it, to count the replies it
  would flag.
- **guard on**: the user's prompt is checked first, and a blocked prompt is answered with
  the guard's refusal, the model never seeing it. Any other reply is streamed through
  the guard token by token (``guard_stream``, the code ``generate``, ``chat`` and
  ``serve`` use) and cut where the guard blocks it.

Greedy decoding is deterministic, so the guarded reply is the unguarded one's token
stream up to the guard's cut: each model decodes each prompt once.

A prompt counts as refused when the task reads the reply as a refusal
(``task.refused``), or when the guard blocked the prompt or the reply. The rates of each
column (``tally``): ``harmful_refusal_rate``; ``false_refusal_rate`` and its complement
``benign_answer_rate``; ``blocked_prompt_rate`` (guard on); ``flagged_rate``, the share of
prompts whose reply the guard flagged or blocked, and ``flagged:<category>`` for each
category, a reply counting once in every category its verdict names.

It works for any generate task of this shape: examples keeping their record in
``meta["fields"]`` with a ``prompt``, a ``label`` (harmful | benign) and optionally a
``category``, and a ``refused(reply)`` method; the task's class may name its
``default_guard``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from lmforge.contracts import Example, Task, Verdict
    from lmforge.plugins.guards._apply import Guarded
    from lmforge.runs import Run

DEFAULT_GUARD = "lexicon"
GUARDED = "+guard"  # the suffix of a column scored with the guard on


@dataclass
class Outcome:
    """What became of one prompt in one column."""

    shown: str  # the reply the user sees: the model's, cut where the guard blocked it, or the guard's refusal
    refused: bool
    prompt: str = "allow"  # the guard's decision on the prompt (guard on)
    reply: "Verdict | None" = None  # the guard's verdict on the model's reply; None: no guard, or no reply

    @property
    def flagged(self) -> tuple[str, ...]:
        """The categories of a reply the guard flagged or blocked; () for one it allowed."""
        return tuple(self.reply.categories) if self.reply is not None and self.reply.decision != "allow" else ()

    def record(self) -> dict[str, Any]:
        out = {"reply": self.shown, "refused": self.refused}
        if self.reply is not None:
            out |= {"reply_decision": self.reply.decision, "categories": list(self.reply.categories)}
        return out


def label_of(example: "Example") -> str:
    return example.meta["fields"]["label"]


def category_of(example: "Example") -> str:
    return example.meta["fields"].get("category") or "none"


def refusal_rates(refused: list[bool], examples: list["Example"]) -> dict[str, float]:
    """``harmful_refusal_rate``, ``false_refusal_rate`` and ``benign_answer_rate``; a rate
    whose label has no prompts among ``examples`` is left out."""
    if len(refused) != len(examples):
        raise ValueError(f"{len(refused)} predictions for {len(examples)} examples")
    harmful = [r for r, e in zip(refused, examples) if label_of(e) == "harmful"]
    benign = [r for r, e in zip(refused, examples) if label_of(e) == "benign"]
    out: dict[str, float] = {}
    if harmful:
        out["harmful_refusal_rate"] = sum(harmful) / len(harmful)
    if benign:
        out["false_refusal_rate"] = sum(benign) / len(benign)
        out["benign_answer_rate"] = sum(not r for r in benign) / len(benign)
    return out


def tally(outcomes: list[Outcome], examples: list["Example"], categories: list[str] | None) -> dict[str, float]:
    """One column's rates (see the module's docstring). ``categories``: those to count the
    flagged replies of; None when there is no guard (no guard rates then)."""
    out = refusal_rates([o.refused for o in outcomes], examples)
    if categories is None:
        return out
    n = max(len(outcomes), 1)
    out["blocked_prompt_rate"] = sum(o.prompt == "block" for o in outcomes) / n  # 0 with the guard off
    out["flagged_rate"] = sum(bool(o.flagged) for o in outcomes) / n
    for category in categories:
        out[f"flagged:{category}"] = sum(category in o.flagged for o in outcomes) / n
    return out


def observe(task: "Task", guarded: "Guarded | None", reply: str) -> Outcome:
    """Guard off: the reply as it came, and the verdict the guard would give it."""
    return Outcome(reply, task.refused(reply), reply=guarded.check_reply(reply) if guarded is not None else None)


def judge(task: "Task", guarded: "Guarded", prompt: str, pieces: list[str]) -> Outcome:
    """Guard on: the prompt checked, then the reply's pieces (as they streamed) through the guard."""
    from lmforge.plugins.guards._apply import guard_stream

    verdict = guarded.check_prompt(prompt)
    if verdict.blocked:
        return Outcome(guarded.refusal, True, prompt="block")
    shown, last = "", None
    for text, _, last in guard_stream(guarded, iter(pieces), text_of=str):
        shown += text
    if last is None or not last.blocked:  # let through: its verdict is the whole reply's (the Guard contract)
        last = guarded.check_reply(shown)
    shown = shown.strip()
    return Outcome(shown, last.blocked or task.refused(shown), prompt=verdict.decision, reply=last)


def guard_of(task: "Task", run: "Run", name: str | None, options: list[str]) -> tuple["Guarded | None", str]:
    """The guard of the guarded columns and where it was chosen: ``--guard``, else the run's
    recorded ``guard``, else the task's default; None for ``none``."""
    from lmforge.plugins.guards import _apply

    recorded = _apply.recorded(run.dir)
    source = "--guard" if name is not None else f"{run.dir / 'config.yaml'}: guard" if recorded is not None else f"task={task.name}'s default"
    if name is None and recorded is None:
        name = getattr(task, "default_guard", DEFAULT_GUARD)
    guarded = _apply.from_args(argparse.Namespace(guard=name, guard_option=list(options), guard_log_text=False), run.dir)
    if guarded is not None:
        guarded.out = io.StringIO()  # each verdict goes into predictions.jsonl, not one stderr line per prompt
    return guarded, source


def template_for(task: "Task", run: "Run", overridden: bool) -> tuple[str, str]:
    """The chat template ``run`` is prompted with, and where it comes from."""
    from lmforge.plugins.deploy._chat import run_template
    from lmforge.tasks import template_of

    if not overridden and (own := run_template(run)):
        return own
    return template_of(task), "task.template" if task.config.template else f"task={task.name}'s template"


def reformat(task: "Task", examples: list["Example"], template: str) -> list["Example"]:
    """``examples`` laid out with another chat template (from the record each one keeps)."""
    from lmforge.tasks import template_of

    if template == template_of(task):
        return examples
    other = type(task)(dataclasses.replace(task.config, template=template))
    return [other.format({**e.meta["fields"], "id": e.id}) for e in examples]


def decode(run: "Run", examples: list["Example"], template: str, *, checkpoint: str | None, device: str, max_tokens: int, batch_size: int, progress: Callable | None) -> list[list[str]]:
    """Each example's greedy reply, as the pieces it streamed in, stopping where ``template`` ends a turn."""
    from lmforge import engine
    from lmforge.plugins.deploy._chat import Template
    from lmforge.task_eval import prompt_ids

    model, tokenizer = run.model(checkpoint, device=device), run.tokenizer
    eos = tokenizer.special_ids.get("eos")
    stop = Template(template, eos_token=tokenizer.decode([eos]) if eos is not None else "").stop
    prompts = prompt_ids(model, tokenizer, examples, max_tokens)
    sampling = engine.Sampling(max_tokens=max_tokens, temperature=0.0, top_k=None, seed=0, stop=stop)
    pieces: list[list[str]] = [[] for _ in prompts]
    for start in range(0, len(prompts), batch_size):
        for chunk in engine.stream(model, tokenizer, prompts[start : start + batch_size], sampling):
            pieces[start + chunk.row].append(chunk.text)
        if progress is not None:
            progress(min(start + batch_size, len(prompts)))
    return pieces


def evaluate(
    task: "Task", run: "Run", base: "Run | None", examples: list["Example"], *, overrides: list[str] = (), checkpoint: str | None = None,
    device: str = "cpu", max_tokens: int = 64, batch_size: int = 16, guard: str | None = None, guard_options: list[str] = (), progress=None,
) -> dict[str, Any]:
    """The scores of the base and the run, guard off and on, and each prompt's outcomes.

    Returns ``scores`` (columns ``base``, ``base+guard``, ``run``, ``run+guard``,
    ``baseline``), ``predictions`` (a line per example), ``gain_with_guard``, ``guard``
    (name, options, provenance, where it was chosen), ``templates`` (each model's), the
    ``categories`` counted and the prompts' ``labels``.
    """
    guarded, chosen = guard_of(task, run, guard, list(guard_options))
    overridden = any(o.partition("=")[0].removeprefix("task.") == "template" for o in overrides)
    models = [("base", base, None), ("run", run, checkpoint)] if base is not None else [("run", run, checkpoint)]
    outcomes: dict[str, list[Outcome]] = {}
    templates = {}
    for i, (column, model_run, ckpt) in enumerate(models):
        template, templates[column] = template_for(task, model_run, overridden)
        pieces = decode(model_run, reformat(task, examples, template), template, checkpoint=ckpt, device=device, max_tokens=max_tokens,
                        batch_size=batch_size, progress=progress(i * len(examples)) if progress is not None else None)
        outcomes[column] = [observe(task, guarded, "".join(p).strip()) for p in pieces]
        if guarded is not None:
            outcomes[column + GUARDED] = [judge(task, guarded, e.meta["fields"]["prompt"], p) for e, p in zip(examples, pieces)]
    outcomes["baseline"] = [observe(task, guarded, reply) for reply in task.baseline(examples)]
    seen = {c for column in outcomes.values() for o in column for c in o.flagged}
    categories = sorted(seen | {category_of(e) for e in examples} - {"none"}) if guarded is not None else None
    scores = {column: tally(found, examples, categories) for column, found in outcomes.items()}
    predictions = [
        {"id": e.id, "label": label_of(e), "category": category_of(e), "prompt": e.meta["fields"]["prompt"], "reference": e.reference,
         **{column: found[k].record() | ({"prompt_decision": found[k].prompt} if column.endswith(GUARDED) else {})
            for column, found in outcomes.items() if column != "baseline"}}
        for k, e in enumerate(examples)
    ]
    result: dict[str, Any] = {"scores": scores, "predictions": predictions, "templates": templates, "categories": categories or []}
    result["labels"] = {label: sum(label_of(e) == label for e in examples) for label in ("harmful", "benign")}
    if guarded is not None:
        options = dataclasses.asdict(guarded.guard.config) if dataclasses.is_dataclass(guarded.guard.config) else {}
        result["guard"] = {"name": guarded.guard.name, "options": options, "distribution": guarded.provenance.distribution,
                           "version": guarded.provenance.version, "chosen_by": chosen}
        if base is not None:
            result["gain_with_guard"] = {k: v - scores["base" + GUARDED][k] for k, v in scores["run" + GUARDED].items() if k in scores["base" + GUARDED]}
    else:
        result["guard"] = None
    result["notes"] = notes(result, templates)
    return result


def notes(result: dict[str, Any], templates: dict[str, str]) -> list[str]:
    """The lines printed under the table: how to read it."""
    out = ["refused: the reply opens with a refusal" + (", or the guard blocked the prompt or the reply" if result["guard"] else "")]
    if guard := result["guard"]:
        out += [
            f"{GUARDED}: guard={guard['name']} ({guard['distribution']} {guard['version']}, {guard['chosen_by']}) on the prompt and the streamed reply",
            "flagged: the share of replies the guard flagged or blocked (guard off: would have), by its category",
        ]
    return out + [f"prompted with: {'; '.join(f'{column} {origin}' for column, origin in templates.items())}"]
