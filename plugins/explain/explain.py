"""``lmforge explain <run dir> --text TEXT``: why a run's model predicts what it predicts.

Draws the model's attention (every head, the head average, attention rollout), the
saliency and integrated gradients of the predicted token with respect to each input
token, and the logit lens, into ``<run dir>/explain/<slug>/``: PNG figures, one
self-contained HTML page and ``explain.json`` with every number. Each method runs where
the architecture provides what it needs (see ``docs/explain.md``).

Importing this module is cheap: torch and matplotlib load inside ``explain``.
"""

from __future__ import annotations

from lmforge import hookimpl

METHODS = ("attention", "saliency", "ig", "logit-lens", "all")


def explain(argv: list[str]) -> int:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="lmforge explain", description=__doc__.split("\n\n")[1])
    parser.add_argument("run_dir", type=Path, help="a directory written by lmforge train, or a checkpoint inside one")
    parser.add_argument("--text", required=True, help="the text to explain; for bert, with [MASK] where a token is to be filled")
    parser.add_argument("--target", metavar="TOKEN", help="explain this token (one token of the vocabulary) instead of the predicted one")
    parser.add_argument("--method", default="all", choices=METHODS, help="what to compute (default all: every method the model supports)")
    parser.add_argument("--baseline", default="pad", choices=("pad", "zero"), help="integrated gradients' starting point: the pad token's embedding at every position, or zeros (default pad)")
    parser.add_argument("--n-steps", type=int, default=50, help="integrated gradients' integration points (default 50)")
    parser.add_argument("--overlong", default="truncate", choices=("truncate", "error"), help="a text longer than the context: keep the tokens next to the target, with a notice (default), or stop")
    parser.add_argument("--checkpoint", help="a .ckpt file of the run (default: the one given as <run dir>, else checkpoints/last.ckpt)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto... (default cpu)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="the folder to write (default <run dir>/explain/<slug>); replaced if it exists")
    args = parser.parse_args(argv)

    from lmforge.plugins.explain._command import run

    out = run(args)
    print(f"wrote {out}: open {out / 'explain.html'}")
    return 0


@hookimpl
def register_commands(register):
    register("explain", explain, "attention maps, saliency, integrated gradients and the logit lens of a run's prediction")
