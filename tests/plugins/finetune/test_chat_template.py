"""The chat template a fine-tune trained with travels with its run: ``lmforge chat`` and
``serve`` render with it, ``lmforge export`` puts it in the tokenizer and the folder."""

from __future__ import annotations

import json

from support import make_run

from lmforge.plugins.deploy import _card, _chat
from lmforge.runs import Run

CHAT = "{%- for m in messages -%}{{ '<|' + m['role'] + '|>' + m['content'] + '<|end|>' }}{%- endfor -%}" \
       "{%- if add_generation_prompt -%}{{ '<|assistant|>' }}{%- endif -%}"


def test_the_plain_template_is_a_shipped_file():
    template = _chat.Template(_chat.DEFAULT_TEMPLATE, eos_token="<eos>")
    text = template.render([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], add_generation_prompt=False)
    assert text == "User: hi\nAssistant: yo<eos>\n" and template.stop == ("\nUser:",)
    assert "def " not in _chat.DEFAULT_TEMPLATE and "{%" in _chat.DEFAULT_TEMPLATE


def test_chat_and_serve_use_the_runs_template(tmp_path):
    run = make_run(tmp_path)
    assert _chat.load_template(Run.open(run), None, "").origin == "the plain User:/Assistant: template"
    (run / _chat.TEMPLATE_FILE).write_text(CHAT)
    template = _chat.load_template(Run.open(run), None, "")
    assert template.origin == str(run / _chat.TEMPLATE_FILE)
    assert template.render([{"role": "user", "content": "q"}]) == "<|user|>q<|end|><|assistant|>"
    assert template.stop == ("<|end|><|user|>",)


def test_export_carries_the_runs_template(tmp_path):
    run = make_run(tmp_path)
    (run / _chat.TEMPLATE_FILE).write_text(CHAT)
    out = tmp_path / "hf"
    out.mkdir()
    _card.write_tokenizer(Run.open(run), out)
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == CHAT
    assert (out / _chat.TEMPLATE_FILE).read_text() == CHAT
    assert "the one the model was fine-tuned with" in _card.model_card(Run.open(run), Run.open(run).read_checkpoint(), "hf")


def test_a_safetensors_export_chats_with_the_runs_template(tmp_path):
    from lmforge.plugins.deploy._export import export

    run = make_run(tmp_path)
    (run / _chat.TEMPLATE_FILE).write_text(CHAT)
    folder = export(run, tmp_path / "exported", fmt="safetensors", checkpoint=None, force=False)
    assert _chat.load_template(Run.open(folder), None, "").render([]) == "<|assistant|>"
