"""``lmforge chat <run dir>``: talk to a run's model in the terminal, the reply streaming.

The conversation is rendered with a Jinja chat template: ``--chat-template FILE``, else
the run's own (the ``chat_template`` file ``lmforge finetune task=chat`` leaves in the run,
or ``chat_template`` in its config.yaml), else a plain ``User:``/``Assistant:``
transcript. The assistant's turn ends at the eos token or where the template would start
the next user message (``\\nUser:``). The history is kept within the context window,
dropping the oldest messages first, with a notice.

Commands: ``/reset``, ``/temp X``, ``/max N``, ``/save FILE``, ``/quit``. Ctrl-C stops the
reply and keeps the session; Ctrl-D quits.

Importing this module is cheap: torch loads inside ``chat``.
"""

from __future__ import annotations

from lmforge import hookimpl


def chat(argv: list[str]) -> int:
    import argparse
    from pathlib import Path

    from lmforge.plugins.deploy import _chat, _generation
    from lmforge.plugins.guards import _apply as guards

    parser = argparse.ArgumentParser(prog="lmforge chat", description=__doc__.split("\n\nImporting")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a directory written by lmforge train, or a checkpoint inside one")
    parser.add_argument("--chat-template", type=Path, metavar="FILE", help="a Jinja chat template (default: the run's own, else User:/Assistant:)")
    _generation.add_sampling_flags(parser)
    guards.add_guard_flags(parser)
    args = parser.parse_args(argv)
    sampling = _generation.sampling_from(args)
    guarded = guards.from_args(args, args.run_dir)
    opened = _generation.open_run(args.run_dir, args.checkpoint, args.device, command="chat")
    eos = opened.tokenizer.special_ids.get("eos")
    template = _chat.load_template(opened.run, args.chat_template, opened.tokenizer.decode([eos]) if eos is not None else "")
    try:
        import readline  # noqa: F401  line editing and history for input()
    except ImportError:
        pass
    return _chat.repl(opened, sampling, template, guarded=guarded)


@hookimpl
def register_commands(register):
    register("chat", chat, "talk to a run's model in the terminal: a streamed reply, history within the context")
