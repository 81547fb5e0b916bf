"""``lmforge export``: exported folders load in stock ``transformers`` and give lmforge's logits.

Run directories are made without training (a config, a tokenizer and a checkpoint of a
freshly built model whose every weight is nudged off its init, so that norms and biases
are not the identity and the logit comparisons mean something).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
import support
from support import lmforge

from lmforge.engine.generate import generate
from lmforge.plugins.deploy._export import ExportError, export
from lmforge.runs import Run

transformers = pytest.importorskip("transformers")

PROMPT = "def add(a, b):"
CAUSAL = {
    "llama": [],
    "llama_gqa": ["model.n_head=4", "model.n_kv_head=2"],
    "llama_bias_untied": ["model.bias=true", "model.tie_embeddings=false", "model.rope_theta=500.0"],
    "gpt2": ["model.pos=learned", "model.norm=layernorm", "model.mlp=gelu"],
    "gpt2_bias_untied": ["model.pos=learned", "model.norm=layernorm", "model.mlp=gelu", "model.bias=true", "model.tie_embeddings=false"],
}
VARIANTS = {**CAUSAL, "bert": ["model=bert"]}
HF_CLASS = {"llama": "LlamaForCausalLM", "gpt2": "GPT2LMHeadModel", "bert": "BertForMaskedLM"}


def make_run(root: Path, *overrides: str) -> Path:
    """A run directory as `lmforge train` leaves it, with random non-trivial weights and records."""
    run = support.make_run(root, "data.seq_len=64", *overrides, noise=0.05)
    report = {"source": "stdlib", "documents": 90, "bytes": 3000, "shards": 1, "counts": {},
              "sources": {"stdlib": {"documents": 90, "bytes": 3000, "share_of_bytes": 1.0}}}
    (run / "collection_report.json").write_text(json.dumps(report))
    (run / "summary.json").write_text(json.dumps({"val_loss": 6.1, "val_bpb": 2.5, "steps": 7}))
    (run / "manifest.json").write_text(json.dumps({"lmforge": "0.1.0", "plugins": {"lmforge": "0.1.0"}, "data": {"tokenize": {"tokens": 1234}}}))
    return run


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Each variant's run directory and its `--format hf` export, made once for the module."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LMFORGE_DISABLE_PLUGIN_AUTOLOAD", "1")
    made = {}
    for name, overrides in VARIANTS.items():
        root = tmp_path_factory.mktemp(name)
        run = make_run(root, *overrides)
        made[name] = (run, export(run, root / "hf"))
    mp.undo()
    return made


def hf_model(folder: Path, masked: bool):
    auto = transformers.AutoModelForMaskedLM if masked else transformers.AutoModelForCausalLM
    return auto.from_pretrained(folder, dtype=torch.float32).eval()


def prompt_ids(run: Run) -> torch.Tensor:
    return torch.tensor([run.tokenizer.encode_batch([PROMPT])[0]])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_transformers_gives_lmforges_logits(exported, variant):
    """Logits from the exported folder equal lmforge's within 1e-4 (fp32), for each mapped variant."""
    run_dir, out = exported[variant]
    run = Run.open(run_dir)
    ids = torch.randint(0, run.tokenizer.vocab_size, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = run.model()(ids).logits
        theirs = hf_model(out, variant == "bert")(input_ids=ids).logits
    diff = (ours - theirs).abs().max().item()
    print(f"{variant}: max |logit difference| {diff:.2e}")
    assert ours.shape == theirs.shape and diff < 1e-4
    assert json.loads((out / "config.json").read_text())["architectures"] == [HF_CLASS[variant.split("_")[0]]]


@pytest.mark.parametrize("variant", list(CAUSAL))
def test_greedy_generation_gives_lmforges_ids(exported, variant):
    """20 greedy tokens through transformers.generate are lmforge's, up to the first eos."""
    run_dir, out = exported[variant]
    run = Run.open(run_dir)
    idx = prompt_ids(run)
    ours = generate(run.model(), idx, 20, temperature=0)[0].tolist()
    theirs = hf_model(out, False).generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=20, do_sample=False)[0].tolist()
    eos = run.tokenizer.special_ids["eos"]
    expected = ours[: ours.index(eos, idx.size(1)) + 1] if eos in ours[idx.size(1):] else ours
    assert len(ours) == idx.size(1) + 20 and theirs == expected


@pytest.mark.parametrize("variant", ["llama", "bert"])
def test_autotokenizer_gives_the_runs_ids_special_tokens_and_chat_template(exported, variant):
    run_dir, out = exported[variant]
    run = Run.open(run_dir)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    for text in [PROMPT, *support.TEXTS[:3], "x = [1, 2]  # ünïcode"]:
        assert tok(text)["input_ids"] == run.tokenizer.encode_batch([text])[0]
    specials = {role: tok.convert_tokens_to_ids(getattr(tok, f"{role}_token")) for role in run.tokenizer.special_ids}
    assert specials == run.tokenizer.special_ids
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], tokenize=False, add_generation_prompt=False)
    eos = tok.eos_token or ""
    assert chat == f"User: hi\nAssistant: hello{eos}\n"
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True) == "User: hi\nAssistant:"


def test_the_hf_folder_holds_stock_files_only(exported):
    run_dir, out = exported["llama"]
    assert {p.name for p in out.iterdir()} == {
        "model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "README.md", "lmforge.json",  # lmforge.json: for lmforge eval and the like; transformers ignores it
    }
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and "auto_map" not in config
    assert not any("lmforge" in p.read_text() for p in out.glob("*.json") if p.name != "lmforge.json")
    ids = Run.open(run_dir).tokenizer.special_ids
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation == {"eos_token_id": ids["eos"], "pad_token_id": ids["pad"], "max_length": 64}
    assert not list(out.parent.glob(".*partial"))


def test_the_export_loads_in_a_process_where_lmforge_cannot_be_imported(exported):
    """The folder needs transformers alone: the check runs with every lmforge import refused."""
    run_dir, out = exported["llama"]
    code = (
        "import sys, json, importlib.abc\n"
        "class Refuse(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'lmforge': raise ImportError('lmforge is not installed here')\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "import torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "tok = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()\n"
        "ids = tok(sys.argv[2], return_tensors='pt').input_ids\n"
        "out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False)\n"
        "assert not any(m.split('.')[0] == 'lmforge' for m in sys.modules)\n"
        "print(json.dumps(out[0].tolist()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(out), PROMPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run = Run.open(run_dir)
    idx = prompt_ids(run)
    assert json.loads(proc.stdout.strip().splitlines()[-1])[: idx.size(1) + 1] == generate(run.model(), idx, 1, temperature=0)[0].tolist()


def test_the_model_card_gives_the_runs_data_config_metrics_and_licences(exported):
    card = (exported["llama"][1] / "README.md").read_text()
    for expected in ("license: psf-2.0", "| stdlib | 90 | 3000 | 1.0 | PSF-2.0", "val_bpb | 2.5", "Tokens after tokenization: 1,234",
                     "- model: `transformer`", "training steps: 7", "AutoModelForCausalLM.from_pretrained"):
        assert expected in card
    assert "AutoModelForMaskedLM" in (exported["bert"][1] / "README.md").read_text()


def test_safetensors_format_reloads_in_lmforge_with_the_same_logits(tmp_path):
    """`--format safetensors` covers what HF cannot (here `rnn`); Run.open reloads it."""
    run_dir = make_run(tmp_path, "model=rnn")
    out = export(run_dir, tmp_path / "st", fmt="safetensors")
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "lmforge.json", "tokenizer.json", "README.md"}
    meta = json.loads((out / "lmforge.json").read_text())
    assert meta["architecture"] == "rnn" and meta["max_seq_len"] == 64 and meta["step"] == 7 and meta["lmforge"]
    original, reloaded = Run.open(run_dir), Run.open(out)
    assert reloaded.spec.model.name == "rnn" and reloaded.read_checkpoint().step == 7
    assert reloaded.tokenizer.encode_batch([PROMPT]) == original.tokenizer.encode_batch([PROMPT])
    ids = prompt_ids(original)
    with torch.no_grad():
        assert torch.equal(original.model()(ids).logits, reloaded.model()(ids).logits)


def test_a_tied_model_round_trips_through_safetensors_and_on_to_hf(tmp_path):
    """A tied embedding survives `--format safetensors`, and that folder exports to HF in turn."""
    run_dir = make_run(tmp_path)
    st = export(run_dir, tmp_path / "st", fmt="safetensors")
    hf = export(st, tmp_path / "hf")
    ids = prompt_ids(Run.open(run_dir))
    with torch.no_grad():
        diff = (Run.open(run_dir).model()(ids).logits - hf_model(hf, False)(input_ids=ids).logits).abs().max()
    assert diff < 1e-4


# The contract hook: a third party's architecture exports itself ---------------------------

PLUGIN = '''
import json
from safetensors.torch import save_file
from lmforge import hookimpl
from lmforge.plugins.models.transformer import Transformer


class Exporting(Transformer):
    """The built-in network under another name, exporting itself as Llama."""

    name = "exporting"

    def export_hf(self, model, out_dir):
        from lmforge.plugins.deploy._hf import convert

        config, tensors = convert("transformer", model.config, model, {})
        config["exported_by"] = "lmforge-exporting"
        (out_dir / "config.json").write_text(json.dumps(config))
        save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})


class Silent(Transformer):
    name = "silent"


@hookimpl
def register_models(register):
    register(Exporting)
    register(Silent)
'''


def test_an_architecture_with_export_hf_exports_itself(tmp_path, make_dist):
    make_dist("lmforge-exporting", {"exporting": "lmforge_exporting"}, {"lmforge_exporting.py": PLUGIN})
    run_dir = make_run(tmp_path / "a", "model=exporting")
    out = export(run_dir, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    ids = Run.open(run_dir).tokenizer.special_ids
    assert config["exported_by"] == "lmforge-exporting" and config["eos_token_id"] == ids["eos"]  # lmforge adds the ids
    assert (out / "tokenizer_config.json").is_file() and (out / "README.md").is_file()
    x = prompt_ids(Run.open(run_dir))
    with torch.no_grad():
        assert (Run.open(run_dir).model()(x).logits - hf_model(out, False)(input_ids=x).logits).abs().max() < 1e-4

    silent = make_run(tmp_path / "b", "model=silent")
    with pytest.raises(ExportError, match=r"model=silent has no stock Hugging Face class and does not provide export_hf.*--format safetensors"):
        export(silent, tmp_path / "hf2")


# Bad input, through the CLI ----------------------------------------------------------------


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return make_run(tmp_path)


def refused(tmp_path, *args: str) -> str:
    proc = lmforge("export", *args, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert not [p for p in tmp_path.rglob("*") if "partial" in p.name or p.name == "out"]
    return proc.stderr


def test_the_cli_exports_and_says_how_to_load(run_dir, tmp_path):
    proc = lmforge("export", str(run_dir), "--to", str(tmp_path / "out"), cwd=tmp_path)
    assert "AutoModel" in proc.stdout and (tmp_path / "out" / "model.safetensors").is_file()


def test_a_directory_that_is_not_a_run_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    err = refused(tmp_path, str(tmp_path / "empty"), "--to", str(tmp_path / "out"))
    assert "is not a finished lmforge run directory" in err


def test_a_run_with_no_checkpoint_is_refused(run_dir, tmp_path):
    (run_dir / "checkpoints" / "last.ckpt").unlink()
    err = refused(tmp_path, str(run_dir), "--to", str(tmp_path / "out"))
    assert "no checkpoint at" in err and "--checkpoint" in err


def test_a_corrupt_checkpoint_is_refused(run_dir, tmp_path):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    err = refused(tmp_path, str(run_dir), "--to", str(tmp_path / "out"))
    assert "truncated or corrupt" in err and "last.ckpt" in err


def test_a_run_whose_architecture_is_not_installed_is_refused(run_dir, tmp_path):
    config = OmegaConf.load(run_dir / "config.yaml")
    config.model.name = "gru"
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(config))
    err = refused(tmp_path, str(run_dir), "--to", str(tmp_path / "out"))
    assert "no architecture named 'gru'" in err


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["model=rnn"], r"model=rnn has no stock Hugging Face class"),
        (["model.norm=layernorm"], r"model.norm=layernorm.*train with model.norm=rmsnorm \(LlamaForCausalLM\)"),
        (["model.pos=learned", "model.mlp=swiglu", "model.norm=layernorm"], r"train with model.mlp=gelu \(GPT2LMHeadModel\)"),
        (["model.pos=learned", "model.norm=layernorm", "model.mlp=gelu", "model.n_head=4", "model.n_kv_head=2"], r"grouped-query"),
        (["model=bert", "model.norm_position=pre"], r"model.norm_position=post"),
    ],
)
def test_a_variant_with_no_hf_class_names_the_option_and_the_safetensors_format(tmp_path, overrides, expected):
    run = make_run(tmp_path, *overrides)
    err = refused(tmp_path, str(run), "--to", str(tmp_path / "out"))
    assert "--format safetensors" in err
    assert re.search(expected, err), err


def test_a_non_empty_folder_is_replaced_only_with_force(run_dir, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = lmforge("export", str(run_dir), "--to", str(out), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "exists and is not empty" in proc.stderr and "--force" in proc.stderr
    assert (out / "keep.txt").read_text() == "mine"
    lmforge("export", str(run_dir), "--to", str(out), "--force", cwd=tmp_path)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_run_directory_itself_is_never_a_target(run_dir, tmp_path):
    proc = lmforge("export", str(run_dir), "--to", str(run_dir.parent), "--force", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "holds the run being exported" in proc.stderr
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_an_unknown_format_is_refused(run_dir, tmp_path):
    proc = lmforge("export", str(run_dir), "--to", str(tmp_path / "out"), "--format", "onnx", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "invalid choice: 'onnx'" in proc.stderr and not (tmp_path / "out").exists()
