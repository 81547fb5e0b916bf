"""``lmforge generate <run dir>``: continue prompts with a run's model, streaming the text.

Prompts come from ``--prompt`` (repeatable), ``--file`` (one prompt a line, blank lines
skipped) or, with neither, the whole of stdin as one prompt. Each goes through the run's
own preprocessing steps and tokenizer, as ``lmforge eval --text`` does. One prompt
streams its tokens as they come; several decode as one batch (with the KV cache) and each
is printed when its row finishes, under a header. A masked LM (``bert``) does not
generate: ``--fill-mask "text with [MASK]"`` prints the likeliest fillers of each mask.

Importing this module is cheap: torch loads inside ``generate``.
"""

from __future__ import annotations

import sys

from lmforge import hookimpl

FILL_MASK_TOP_K = 5  # fillers shown per mask when --top-k is not given


def generate(argv: list[str]) -> int:
    import argparse
    from pathlib import Path

    from lmforge.errors import ConfigError, DataError
    from lmforge.plugins.deploy import _generation
    from lmforge.plugins.guards import _apply as guards

    parser = argparse.ArgumentParser(prog="lmforge generate", description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a directory written by lmforge train, or a checkpoint inside one")
    parser.add_argument("--prompt", action="append", default=[], metavar="TEXT", help="text to continue (repeatable)")
    parser.add_argument("--file", type=Path, help="a text file of prompts, one a line")
    parser.add_argument("--no-echo", action="store_true", help="print only the generated text, not the prompt before it")
    parser.add_argument("--fill-mask", metavar="TEXT", help="a masked LM: the likeliest fillers of each mask token in TEXT")
    _generation.add_sampling_flags(parser, top_k_default=False)
    guards.add_guard_flags(parser)
    args = parser.parse_args(argv)

    if args.fill_mask is not None:
        opened = _generation.open_run(args.run_dir, args.checkpoint, args.device, command="fill-mask")
        return _fill_mask(opened, args.fill_mask, args.top_k or FILL_MASK_TOP_K)
    sampling = _generation.sampling_from(args)  # bad flags fail before the model loads
    prompts = list(args.prompt)
    if args.file is not None:
        if not args.file.is_file():
            raise ConfigError(f"--file {args.file}: no such file")
        prompts += [line for line in args.file.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not prompts:
            raise DataError(f"--file {args.file} holds no prompt (every line is blank): write one prompt a line")
    if not prompts:
        if sys.stdin.isatty():
            raise ConfigError("no prompt: pass --prompt TEXT, --file FILE (one prompt a line), or pipe text on stdin")
        prompts = [sys.stdin.read()]
    guarded = guards.from_args(args, args.run_dir)  # a bad guard fails before the model loads
    opened = _generation.open_run(args.run_dir, args.checkpoint, args.device, command="generate")
    what = (lambda i: "the prompt") if len(prompts) == 1 else (lambda i: f"prompt {i + 1}")
    texts = [opened.clean(p, what(i)) for i, p in enumerate(prompts)]
    ids = [opened.encode(t, what(i)) for i, t in enumerate(texts)]
    _stream(opened, texts, ids, sampling, echo=not args.no_echo, guarded=guarded)
    return 0


def _stream(opened, texts: list[str], ids: list[list[int]], sampling, *, echo: bool, guarded=None) -> None:
    """Stream the replies; with a guard, a blocked prompt gets the refusal and a reply blocked
    as it streams stops there (``content_filter``)."""
    from lmforge.engine.generate import stream
    from lmforge.plugins.guards._apply import guard_stream

    out = sys.stdout
    what = (lambda i: "prompt") if len(ids) == 1 else (lambda i: f"prompt {i + 1}")
    refused = {i for i, t in enumerate(texts) if guarded is not None and guarded.check_prompt(t, what(i)).blocked}
    if len(ids) == 1:
        if echo:
            out.write(texts[0])
        if refused:
            out.write(f"{guarded.refusal}\n")
            print("lmforge: note: the guard blocked the prompt (content_filter)", file=sys.stderr)
            return
        count, chunk, verdict = 0, None, None
        for text, chunk_, verdict in guard_stream(guarded, stream(opened.model, opened.tokenizer, ids, sampling)):
            out.write(text)
            out.flush()
            count, chunk = count + (chunk_ is not None), chunk_ or chunk
        out.write("\n")
        if verdict is not None and verdict.blocked:
            print("lmforge: note: the guard cut the reply (content_filter)", file=sys.stderr)
        elif chunk is not None:
            _note_context(opened, len(ids[0]), chunk, sampling, count)
        return
    rows = [i for i in range(len(ids)) if i not in refused]
    for i in sorted(refused):
        out.write(f"=== prompt {i + 1}/{len(ids)}: {texts[i][:40]!r} (content_filter, 0 tokens)\n")
        out.write(f"{texts[i] if echo else ''}{guarded.refusal}\n")
    out.flush()
    if not rows:
        return
    scanners = {i: guarded.scanner() for i in rows} if guarded is not None else {}
    replies, counts, done = [""] * len(ids), [0] * len(ids), set()
    for chunk in stream(opened.model, opened.tokenizer, [ids[i] for i in rows], sampling):
        i = rows[chunk.row]
        if i in done:  # cut by the guard: the rest of its row is not shown
            continue
        counts[i] += 1
        text, finish = chunk.text, chunk.finish_reason
        if i in scanners:
            text, verdict = scanners[i].feed(chunk.text)
            if finish is not None and not verdict.blocked:
                more, verdict = scanners[i].finish()
                text += more
            if verdict.blocked:
                finish = "content_filter"
                guarded.log(what(i), verdict, replies[i] + chunk.text)
            elif finish is not None:
                guarded.log(what(i), verdict, replies[i] + chunk.text)
        replies[i] += text
        if finish is not None:
            done.add(i)
            out.write(f"=== prompt {i + 1}/{len(ids)}: {texts[i][:40]!r} ({finish}, {counts[i]} tokens)\n")
            out.write(f"{texts[i] if echo else ''}{replies[i]}\n")
            out.flush()
            if finish != "content_filter":
                _note_context(opened, len(ids[i]), chunk, sampling, counts[i])


def _note_context(opened, prompt_len: int, last, sampling, count: int) -> None:
    if last.finish_reason == "length" and count < sampling.max_tokens:
        print(f"lmforge: note: stopped at the end of the context window (data.seq_len={opened.context} tokens)", file=sys.stderr)


def _fill_mask(opened, text: str, top_k: int) -> int:
    """Print the ``top_k`` likeliest fillers of each mask token in ``text``, with their probabilities."""
    import torch

    from lmforge.errors import DataError

    tokenizer = opened.tokenizer
    ids = opened.encode_masked(text, "--fill-mask")
    mask = tokenizer.special_ids["mask"]
    token = tokenizer.decode([mask])
    if len(ids) > opened.context:
        raise DataError(f"--fill-mask text is {len(ids)} tokens long, but the run's context is data.seq_len={opened.context}: shorten it")
    device = next(opened.model.parameters()).device
    with torch.no_grad():
        logits = opened.model(torch.tensor([ids], device=device)).logits[0].float()  # (T, V)
    probs = torch.softmax(logits, dim=-1)
    for n, position in enumerate(i for i, t in enumerate(ids) if t == mask):
        top = probs[position].topk(min(top_k, probs.size(-1)))
        fillers = "  ".join(f"{tokenizer.decode([t])!r} {p:.3f}" for t, p in zip(top.indices.tolist(), top.values.tolist()))
        print(f"{token} {n + 1}: {fillers}")
    return 0


@hookimpl
def register_commands(register):
    register("generate", generate, "continue prompts with a run's model, streaming tokens (--fill-mask for bert)")
