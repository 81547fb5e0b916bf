"""``task=chat``: multi-turn conversations in the OpenAI messages format, trained on the assistant's turns.

A record's ``messages`` is a list of ``{"role": "system" | "user" | "assistant",
"content": str}`` (a JSON string in a CSV cell works too). The chat template, a Jinja
string in the format ``lmforge chat`` renders, lays the turns out with role tokens; each
assistant turn, with the end-of-turn token that closes it, is a target segment.

The metrics: ``assistant_loss``, the model's mean loss on the assistant tokens of the
held-out split, measured by the engine against the base model's on the same split; and
``rougeL`` of the last reply decoded after the conversation before it, which ``score``
computes. The demo asks what standard-library functions do ("What does `json.dumps`
do?"), answered with the first sentence of their docstring, one or two questions a
conversation. The baseline answers with the user's last question.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lmforge import hookimpl
from lmforge.contracts import Example, Task, TaskConfig

ROLES = ("system", "user", "assistant")
END = "<|end|>"
SYSTEM = "You answer questions about the Python standard library in one sentence."


def messages_of(value: Any, field: str = "messages", need_reply: bool = True) -> list[dict[str, str]]:
    """A record's messages, checked: a list (or its JSON text) of role/content objects, with an
    assistant turn unless ``need_reply`` is false. ``field`` is the task field errors name."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"{field} is text that is not JSON ({exc}); give a list of {{role, content}} objects (task.fields.{field})") from None
    if not isinstance(value, list) or not value:
        raise ValueError(f"{field} is {type(value).__name__ if value else 'empty'}, not a list of {{role, content}} objects (task.fields.{field})")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"{field}[{i}] is {json.dumps(m)[:80]}: each message needs a role ({', '.join(ROLES)}) and a text content (task.fields.{field})")
        out.append({"role": m["role"], "content": m["content"]})
    if need_reply and not any(m["role"] == "assistant" for m in out):
        raise ValueError(f"the conversation has no assistant turn, so there is nothing to train on (task.fields.{field})")
    return out


def reply_text(text: str, tokens: tuple[str, ...]) -> str:
    """A reply decoded after a chat template's generation prompt, as text: cut at the
    end-of-turn token, the template's role ``tokens`` removed."""
    text = text.split(END, 1)[0]
    for token in tokens:
        text = text.replace(token, "")
    return text.strip()


class Chat(Task):
    name = "chat"
    Config = TaskConfig
    type = "generate"
    fields = ("messages",)
    metrics = ("assistant_loss", "rougeL")
    special_tokens = ("<|system|>", "<|user|>", "<|assistant|>", END)

    def demo(self) -> list[dict[str, Any]]:
        from lmforge.plugins.tasks._stdlib import functions

        found = [f for f in functions() if 3 <= len(f.first_sentence.split()) <= 30]
        by_module: dict[str, list] = {}
        for f in found:
            by_module.setdefault(f.name.rsplit(".", 1)[0], []).append(f)
        out = []
        for f in found:
            draw = int(hashlib.sha256(f.name.encode()).hexdigest()[:8], 16)  # fixed per function
            turns = [{"role": "user", "content": f"What does `{f.name}` do?"}, {"role": "assistant", "content": f.first_sentence}]
            siblings = [g for g in by_module[f.name.rsplit(".", 1)[0]] if g is not f]
            if siblings and draw % 2:  # half ask a follow-up about a function of the same module
                g = siblings[draw // 2 % len(siblings)]
                turns += [{"role": "user", "content": f"And `{g.name}`?"}, {"role": "assistant", "content": g.first_sentence}]
            if draw % 8 == 0:  # an eighth start with a system message
                turns.insert(0, {"role": "system", "content": SYSTEM})
            out.append({"id": f.name, "messages": turns})
        return out

    def format(self, record: dict[str, Any]) -> Example:
        from lmforge.tasks import render_chat, template_of

        messages = messages_of(record["messages"])
        return Example(str(record["id"]), render_chat(template_of(self), messages), meta={"fields": {"messages": messages}})

    def reply(self, text: str) -> str:
        """A decoded reply as text: cut at the end-of-turn token, role tokens removed."""
        return reply_text(text, self.special_tokens)

    def score(self, predictions: list[str], examples: list[Example]) -> dict[str, float]:
        from lmforge.plugins.tasks.summarize import rouge

        return rouge([self.reply(p) for p in predictions], [self.reply(e.reference) for e in examples], ("rougeL",))

    def baseline(self, examples: list[Example]) -> list[str]:
        out = []
        for e in examples:
            users = [m["content"] for m in e.meta["fields"]["messages"] if m["role"] == "user"]
            out.append(users[-1] if users else "")
        return out


@hookimpl
def register_tasks(register):
    register(Chat)
