"""``lmforge generate``: prompts through the run's steps, streaming, stop sequences, seeds, bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import support
from support import lmforge

from lmforge.cli import main



def make_run(root: Path, *overrides: str, quiet_eos: bool = True) -> Path:
    """A run directory with random weights, whose greedy replies run long."""
    return support.make_run(root, "data.seq_len=64", *overrides, noise=0.5, quiet_eos=quiet_eos)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("gen"))


def generate(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["generate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_one_prompt_prints_the_prompt_and_its_continuation(run_dir, capsys):
    code, out, _ = generate(capsys, run_dir, "--prompt", "def add", "--max-tokens", "12", "--temperature", "0", "--device", "cpu")
    assert code == 0 and out.startswith("def add") and len(out) > len("def add\n")
    code, bare, _ = generate(capsys, run_dir, "--prompt", "def add", "--max-tokens", "12", "--temperature", "0", "--no-echo")
    assert out == "def add" + bare


def test_the_same_seed_gives_the_same_text(run_dir, capsys):
    flags = ["--prompt", "import", "--max-tokens", "20", "--temperature", "1.0", "--top-k", "0"]
    first = generate(capsys, run_dir, *flags, "--seed", "5")[1]
    assert generate(capsys, run_dir, *flags, "--seed", "5")[1] == first
    assert generate(capsys, run_dir, *flags, "--seed", "6")[1] != first


def test_a_stop_sequence_ends_the_text_and_is_not_printed(run_dir, capsys):
    greedy = ["--prompt", "class", "--max-tokens", "30", "--temperature", "0", "--no-echo"]
    full = generate(capsys, run_dir, *greedy)[1].rstrip("\n")
    stop = full[5:8]
    assert len(stop) == 3 and stop not in full[:5]
    cut = generate(capsys, run_dir, *greedy, "--stop", stop)[1]
    assert cut == full[: full.index(stop)] + "\n"


def test_several_prompts_decode_as_one_batch_with_each_prompts_own_text(run_dir, tmp_path, capsys):
    """A --file of prompts prints each completion under a header, the same text as the prompt alone."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("def add\n\nimport os\nclass A:\n")
    code, out, _ = generate(capsys, run_dir, "--file", prompts, "--max-tokens", "10", "--temperature", "0")
    assert code == 0 and out.count("=== prompt ") == 3
    blocks = {b.split("\n", 1)[0]: b.split("\n", 1)[1] for b in out.split("=== ")[1:]}
    for i, prompt in enumerate(["def add", "import os", "class A:"]):
        alone = generate(capsys, run_dir, "--prompt", prompt, "--max-tokens", "10", "--temperature", "0")[1]
        (header,) = [h for h in blocks if h.startswith(f"prompt {i + 1}/3")]
        assert blocks[header] == alone


@pytest.mark.parametrize(
    "args,message",
    [
        (["--prompt", "   "], "the prompt is empty"),
        (["--prompt", "x " * 80], r"the prompt is \d+ tokens long, but the run's context is data.seq_len=64 tokens"),
        (["--prompt", "x", "--temperature", "-1"], r"temperature=-1.0 \(--temperature\): must be 0 \(greedy\) or more"),
        (["--prompt", "x", "--top-p", "2"], r"--top-p"),
        (["--prompt", "x", "--fill-mask", "a [MASK]"], "--fill-mask needs a masked LM"),
    ],
)
def test_bad_input_is_one_clear_error(run_dir, capsys, args, message):
    code, _, err = generate(capsys, run_dir, *args)
    assert code == 2 and err.startswith("lmforge: error: ")
    assert re.search(message, err), err


def test_an_unknown_run_and_a_corrupt_checkpoint_are_errors_from_run(run_dir, tmp_path, capsys):
    code, _, err = generate(capsys, tmp_path / "nowhere", "--prompt", "x")
    assert code == 2 and "no such file or directory" in err
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    code, _, err = generate(capsys, run_dir, "--prompt", "x", "--checkpoint", bad)
    assert code == 2 and "truncated or corrupt" in err


def test_a_masked_lm_is_refused_with_the_commands_that_use_it_and_fills_masks(tmp_path, capsys):
    run = make_run(tmp_path, "model=bert", "tokenizer=wordpiece")
    code, _, err = generate(capsys, run, "--prompt", "def add")
    assert code == 2 and "a masked LM" in err and "lmforge explain" in err and "--fill-mask" in err
    code, out, _ = generate(capsys, run, "--fill-mask", "def [MASK](a, b): return a [MASK] b", "--top-k", "3")
    lines = out.splitlines()
    assert code == 0 and [line.split(":")[0] for line in lines] == ["[MASK] 1", "[MASK] 2"]
    probs = [float(x) for x in lines[0].split()[3::2]]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    code, _, err = generate(capsys, run, "--fill-mask", "no mask here")
    assert code == 2 and "has no [MASK]" in err


def test_the_cli_streams_stdin_as_one_prompt(run_dir, tmp_path):
    """Through the real command line: stdin is the prompt, the text goes to stdout."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "lmforge.cli", "generate", str(run_dir), "--max-tokens", "8", "--temperature", "0"],
        input="def add", capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("def add") and len(proc.stdout) > 8
    assert "--repetition-penalty REPETITION_PENALTY" in lmforge("generate", "--help", cwd=tmp_path).stdout


def test_a_prompt_keeps_the_end_it_was_typed_with(run_dir):
    """The run's normalize step trims a document's trailing space; "def " still ends with its space."""
    from lmforge.plugins.deploy._generation import open_run

    opened = open_run(run_dir, None, "cpu", command="generate")
    assert opened.clean("def ") == "def "
    assert opened.clean("x = 1\n") == "x = 1\n"
    assert opened.clean("import os") == "import os"
