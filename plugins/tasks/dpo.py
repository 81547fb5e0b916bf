"""``task=dpo``: preference pairs (a prompt, a preferred and a rejected reply), for preference optimization.

A record's ``prompt`` is a text (the user's turn) or OpenAI messages (the conversation so
far); ``chosen`` and ``rejected`` are texts, or a list holding the one assistant message
of each (TRL's conversational form). Both are laid out with the chat template, so the
aligned run chats as it was trained (``lmforge chat``, ``serve``), and only the final
reply of each carries the loss. A pair with an empty reply, or with the same reply
twice, teaches nothing: it is counted and skipped (``empty_reply``,
``identical_replies``).

``lmforge finetune task=dpo`` trains on the pairs with ``finetune.preference`` (``dpo``,
``simpo`` or ``orpo``; see ``lmforge.plugins.finetune._preference``), which logs reward
accuracy, reward margin and the log-ratio to the reference. The task's own metric is
``win_rate``: a reply decoded greedily after the prompt wins when it is closer (ROUGE-L)
to the preferred reply than to the rejected one, half a win on a tie. The baseline gives
every prompt the training split's most common preferred reply.

The demo (``plugins/tasks/_safety.py``) is safety alignment: abusive requests, whose
preferred reply is a refusal and rejected one compliance (placeholders only), and
benign questions, whose preferred reply is the answer and rejected one an unwarranted
refusal, so that over-refusal is penalised as well.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from lmforge import hookimpl
from lmforge.contracts import Example, Segment, Task, TaskConfig
from lmforge.plugins.tasks.chat import END, messages_of, reply_text


def prompt_messages(value: Any) -> list[dict[str, str]]:
    """A pair's prompt as messages: a text is the user's turn; a conversation (a list, or its
    JSON text) must end with the user's turn the replies answer."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list):
            return [{"role": "user", "content": value}]
    messages = messages_of(value, "prompt", need_reply=False)
    if messages[-1]["role"] != "user":
        raise ValueError(f"the prompt's conversation ends with a {messages[-1]['role']} turn; it must end with the user's turn the replies answer (task.fields.prompt)")
    return messages


def reply_of(value: Any, field: str) -> str:
    """A reply as text: a text, or a list holding one assistant message (or its JSON text)."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if not (isinstance(parsed, list) and parsed and isinstance(parsed[0], dict)):
            return value  # a text that happens to be JSON ("[1, 2]")
        value = parsed
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict) and value[0].get("role") == "assistant" and isinstance(value[0].get("content"), str):
        return value[0]["content"]
    raise ValueError(f"{field} is {json.dumps(value)[:80]}: give the reply as a text, or as [{{role: assistant, content: ...}}] (task.fields.{field})")


class Preference(Task):
    name = "dpo"
    Config = TaskConfig
    type = "preference"
    fields = ("prompt", "chosen", "rejected")
    may_be_empty = ("chosen", "rejected")
    metrics = ("win_rate",)
    special_tokens = ("<|user|>", "<|assistant|>", END)
    common_reply = ""  # the training split's most common preferred reply: the baseline

    def demo(self) -> list[dict[str, Any]]:
        from lmforge.plugins.tasks._safety import prompts

        return prompts()

    def format(self, record: dict[str, Any]) -> Example:
        from lmforge.tasks import render_chat, template_of

        template = template_of(self)
        messages = prompt_messages(record["prompt"])
        chosen, rejected = (reply_of(record[f], f) for f in ("chosen", "rejected"))
        sequences = [_last_target(render_chat(template, [*messages, {"role": "assistant", "content": reply}])) for reply in (chosen, rejected)]
        fields = {"prompt": record["prompt"], "chosen": chosen, "rejected": rejected}
        meta = {"fields": fields, **{k: record[k] for k in ("label", "category") if k in record}}
        return Example(str(record["id"]), sequences[0], meta=meta, rejected=sequences[1])

    def skip_reason(self, example: Example) -> str | None:
        chosen, rejected = example.meta["fields"]["chosen"], example.meta["fields"]["rejected"]
        if not chosen.strip() or not rejected.strip():
            return "empty_reply"
        if chosen.strip() == rejected.strip():
            return "identical_replies"
        return None

    def prepare(self, train: list[Example]) -> None:
        counts = Counter(e.meta["fields"]["chosen"].strip() for e in train)
        self.common_reply = counts.most_common(1)[0][0] if counts else ""

    def reply(self, text: str) -> str:
        """A decoded reply as text: cut at the end-of-turn token, role tokens removed."""
        return reply_text(text, self.special_tokens)

    def score(self, predictions: list[str], examples: list[Example]) -> dict[str, float]:
        import logging

        from rouge_score import rouge_scorer

        logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score logs "Using default tokenizer." on each scorer

        if len(predictions) != len(examples):
            raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples")
        if not examples:
            return {"win_rate": 0.0}
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        wins = 0.0
        for prediction, example in zip(predictions, examples):
            reply, fields = self.reply(prediction), example.meta["fields"]
            chosen = scorer.score(fields["chosen"].strip(), reply)["rougeL"].fmeasure
            rejected = scorer.score(fields["rejected"].strip(), reply)["rougeL"].fmeasure
            wins += 1.0 if chosen > rejected else 0.5 if chosen == rejected else 0.0
        return {"win_rate": wins / len(examples)}

    def baseline(self, examples: list[Example]) -> list[str]:
        return [self.common_reply] * len(examples)


def _last_target(segments: list[Segment]) -> list[Segment]:
    """Only the final reply is trained on: earlier assistant turns belong to the prompt."""
    last = max(i for i, s in enumerate(segments) if s.target)
    return [Segment(s.text, target=s.target and i == last) for i, s in enumerate(segments)]


@hookimpl
def register_tasks(register):
    register(Preference)
