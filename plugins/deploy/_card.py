"""The files around an export's weights: the tokenizer for ``AutoTokenizer`` and the model card.

The tokenizer is the run's own ``tokenizer.json`` (it has no post-processor, so
``transformers`` encodes text to the same ids as lmforge), with its special tokens named
by role and a chat template: vLLM and ``apply_chat_template`` refuse a tokenizer without
one. The model card gathers what the run recorded: its data (``manifest.json``,
``collection_report.json``), its config, its metrics (``summary.json``) and what is known
of the licences of its sources.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmforge import __version__
from lmforge.files import atomic_write, atomic_write_json
from lmforge.plugins.deploy._chat import DEFAULT_TEMPLATE, TEMPLATE_FILE, run_template

# tokenizer role -> the transformers attribute naming that token
ROLES = {"bos": "bos_token", "eos": "eos_token", "unk": "unk_token", "pad": "pad_token", "sep": "sep_token", "cls": "cls_token", "mask": "mask_token"}

# A plain transcript, the one `lmforge chat` uses for a model not fine-tuned for chat:
# "User: ...\nAssistant: ...<eos>\n", ending with "Assistant:" when a reply is wanted.
CHAT_TEMPLATE = DEFAULT_TEMPLATE

# licences of the built-in collectors' sources, where one licence covers the whole source
KNOWN_LICENCES = {"stdlib": "PSF-2.0 (the Python standard library)"}


def special_tokens(run, tokenizer_json: Path) -> dict[str, str]:
    """The run's special tokens by transformers attribute (``eos_token``...), as strings."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    found = {ROLES[role]: tok.id_to_token(i) for role, i in run.tokenizer.special_ids.items() if role in ROLES}
    return {attr: token for attr, token in found.items() if token is not None}


def write_tokenizer(run, out: Path) -> None:
    """``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` in ``out``."""
    run.tokenizer.save(out / "tokenizer.json")
    copy_template(run, out)
    specials = special_tokens(run, out / "tokenizer.json")
    atomic_write_json(out / "special_tokens_map.json", specials)
    atomic_write_json(out / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": run.spec.data.seq_len,
        "clean_up_tokenization_spaces": False,  # decoding must give back the text lmforge's decode gives
        "chat_template": chat_template(run),
        **specials,
    })


def chat_template(run) -> str:
    """The run's own chat template (a chat fine-tune's), else the plain transcript."""
    own = run_template(run)
    return own[0] if own else CHAT_TEMPLATE


def copy_template(run, out: Path) -> None:
    """The run's ``chat_template`` file into ``out``, so that ``lmforge chat`` on the export uses it too."""
    if own := run_template(run):
        atomic_write(out / TEMPLATE_FILE, own[0])


def write_readme(run, ckpt, out: Path, fmt: str) -> None:
    atomic_write(out / "README.md", model_card(run, ckpt, fmt))


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _licences(run, report: dict) -> dict[str, str]:
    """Each source's licence where known: the collector's ``license`` option, else a built-in's."""
    collector = run.spec.record()["collector"]
    given = collector.get("license") or ""
    sources = report.get("sources") or {collector["name"]: {}}
    return {s: given or KNOWN_LICENCES.get(s, "unknown: check the source's terms before redistributing") for s in sources}


def model_card(run, ckpt, fmt: str) -> str:
    """The README: front matter for the Hub, then the run's data, config, metrics, licences and loading."""
    record = run.spec.record()
    masked = run.spec.model.entry.cls.objective == "masked"
    report = _read(run.dir / "collection_report.json") or ((run.manifest or {}).get("data") or {}).get("collect") or {}
    manifest, summary = run.manifest or {}, run.summary or {}
    licences = _licences(run, report)
    known = sorted({v.split(" ")[0] for v in licences.values() if not v.startswith("unknown")})
    model = {k: v for k, v in record["model"].items() if k != "name"}
    auto = "AutoModelForMaskedLM" if masked else "AutoModelForCausalLM"

    lines = ["---", "library_name: transformers" if fmt == "hf" else "library_name: lmforge"]
    lines += ["tags:", "  - lmforge", f"  - {run.spec.model.name}", f"pipeline_tag: {'fill-mask' if masked else 'text-generation'}"]
    if len(known) == 1 and len(known) == len(licences):
        lines.append(f"license: {known[0].lower()}")
    else:
        lines.append("license: other")
    lines += ["---", "", f"# {run.spec.model.name} trained with lmforge", ""]
    lines += [f"Trained from scratch with lmforge {manifest.get('lmforge', '')} (run `{run.dir.name}`, checkpoint "
              f"`{ckpt.path.name}`, step {ckpt.step}). Exported by lmforge {__version__} as `--format {fmt}`.", ""]

    lines += ["## Data", ""]
    if report:
        lines += [f"- collector: `{report.get('source', record['collector']['name'])}`",
                  f"- documents: {report.get('documents', '?'):,}" if isinstance(report.get("documents"), int) else "- documents: unknown",
                  f"- bytes: {report.get('bytes', '?'):,}" if isinstance(report.get("bytes"), int) else "- bytes: unknown", ""]
        if report.get("sources"):
            lines += ["| source | documents | bytes | share of bytes | licence |", "|---|---|---|---|---|"]
            for source, s in sorted(report["sources"].items()):
                lines.append(f"| {source} | {s.get('documents', '')} | {s.get('bytes', '')} | {s.get('share_of_bytes', '')} | {licences.get(source, '')} |")
            lines.append("")
    else:
        lines += [f"- collector: `{record['collector']['name']}` (the run kept no collection report)", ""]
    stages = manifest.get("data") or {}
    if tokens := (stages.get("tokenize") or {}).get("tokens"):
        lines += [f"Tokens after tokenization: {tokens:,}.", ""]

    lines += ["## Config", "", f"- model: `{run.spec.model.name}` " + ", ".join(f"{k}={v}" for k, v in model.items())]
    lines += [f"- tokenizer: `{record['tokenizer']['name']}`, vocabulary {run.tokenizer.vocab_size:,}, special tokens "
              + ", ".join(f"{r}={i}" for r, i in sorted(run.tokenizer.special_ids.items()))]
    lines += [f"- context: {run.spec.data.seq_len} tokens", f"- training steps: {summary.get('steps', record['trainer'].get('max_steps'))}",
              f"- preprocessing: {', '.join(s['name'] for s in record['preprocess']['steps']) or 'none'}", ""]

    lines += ["## Metrics", ""]
    metrics = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
    if metrics:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in sorted(metrics.items())] + [""]
    else:
        lines += ["The run recorded no summary.json (its training did not finish).", ""]

    lines += ["## Licence", ""]
    lines += [f"- {source}: {licence}" for source, licence in sorted(licences.items())]
    lines += ["", "The weights were trained on these sources; their terms may bind what you do with the model.", ""]

    lines += ["## How to load it", "", "```python"]
    if fmt == "hf":
        lines += [f"from transformers import AutoTokenizer, {auto}", "",
                  "tokenizer = AutoTokenizer.from_pretrained(\"path/to/this/folder\")",
                  f"model = {auto}.from_pretrained(\"path/to/this/folder\")"]
        if not masked:
            lines += ["ids = tokenizer(\"def \", return_tensors=\"pt\").input_ids",
                      "print(tokenizer.decode(model.generate(ids, max_new_tokens=20, do_sample=False)[0]))"]
    else:
        lines += ["from lmforge.runs import Run", "", "run = Run.open(\"path/to/this/folder\")",
                  "model, tokenizer = run.model(), run.tokenizer"]
    lines += ["```", ""]
    if fmt == "hf" and not masked and run_template(run):
        lines += ["The tokenizer adds no special tokens to a text, as in training; its chat template is the one the "
                  "model was fine-tuned with (`apply_chat_template` uses it).", ""]
    elif fmt == "hf" and not masked:
        lines += ["The tokenizer adds no special tokens to a text, as in training; its chat template is a plain "
                  "`User:`/`Assistant:` transcript (the model was not fine-tuned for chat).", ""]
    return "\n".join(lines)

