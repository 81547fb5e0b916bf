"""``lmforge finetune base=<run dir> task=<name> [overrides]``: a finished run, fine-tuned on a task.

A Hydra app of its own (primary config ``conf/finetune.yaml``) that reuses the
``optimizer``, ``scheduler``, ``trainer``, ``logger`` and ``tuner`` groups of
``lmforge train``, so ``-m`` sweeps and ``tuner=...`` work the same way.

==================  ==============================================================
``_config.py``      the config's schema and check: ``FinetuneSpec``
``_run.py``         the wiring: base run -> tokenizer -> examples -> windows -> model
                    -> fit -> task metrics -> records
``_data.py``        examples as windows: target-only labels, packing, overlong ones
``_lora.py``        ``finetune.method=lora`` through peft, merged on save
``_classify.py``    the head, data and scores of a ``classify`` task
==================  ==============================================================

It plugs in through ``register_commands``, like any third-party plugin. Importing this
module imports neither torch nor peft.
"""

from __future__ import annotations

from pathlib import Path

from lmforge import hookimpl


def finetune(argv: list[str]) -> int:
    from lmforge.cli import hydra_app

    def run(cfg, run_dir: Path, launch_dir: Path) -> float:
        from lmforge.plugins.finetune._run import finetune as run_finetune

        return run_finetune(cfg, run_dir, launch_dir)

    return hydra_app(argv, "finetune", run)


@hookimpl
def register_commands(register):
    register("finetune", finetune, "fine-tune a finished run on a task (base=<run dir> task=<name>; Hydra overrides, -m sweeps)")
