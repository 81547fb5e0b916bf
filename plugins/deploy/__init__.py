"""Deployment commands, as one built-in plugin: ``lmforge export`` today.

==================  ==============================================================
``_export.py``      ``export()``: open the run, check the target, write a staging
                    folder beside it, rename it into place
``_hf.py``          the built-in architectures as stock ``transformers`` classes
                    (Llama, GPT-2, BERT): ``config.json`` and renamed weights
``_card.py``        the files around the weights: tokenizer files, chat template,
                    ``generation_config.json`` and the ``README.md`` model card
==================  ==============================================================

It plugs in through ``register_commands``, like any third-party plugin. Importing this
module imports neither torch nor safetensors: the command imports them when it runs.
"""

from __future__ import annotations

import sys

from lmforge import hookimpl

FORMATS = ("hf", "safetensors")


def export(argv: list[str]) -> int:
    """``lmforge export <run dir> --to DIR``: a run's model as a folder other tools load."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(
        prog="lmforge export",
        description="write a run's model as a folder that transformers (--format hf) or lmforge (--format safetensors) loads",
    )
    parser.add_argument("run", type=Path, help="a run directory, a checkpoint inside one, or a folder exported with --format safetensors")
    parser.add_argument("--to", required=True, type=Path, metavar="DIR", help="the folder to write; must be absent or empty unless --force")
    parser.add_argument("--format", default="hf", choices=FORMATS, help="hf: a transformers model folder (default); safetensors: lmforge's own")
    parser.add_argument("--checkpoint", metavar="FILE", help="the checkpoint to export (default: the run's checkpoints/last.ckpt)")
    parser.add_argument("--force", action="store_true", help="replace DIR when it exists and is not empty")
    args = parser.parse_args(argv)

    from lmforge.plugins.deploy._export import export as write

    out = write(args.run, args.to, fmt=args.format, checkpoint=args.checkpoint, force=args.force)
    how = "transformers.AutoModel*.from_pretrained" if args.format == "hf" else "lmforge.runs.Run.open"
    print(f"exported to {out} (--format {args.format}): load it with {how}({str(out)!r})", file=sys.stdout)
    return 0


@hookimpl
def register_commands(register):
    register("export", export, "write a run's model for transformers (--format hf) or lmforge (--format safetensors)")
