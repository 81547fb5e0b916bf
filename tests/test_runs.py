"""``lmforge.runs.Run``: a finished run as an object, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from support import compose, make_run

from lmforge import hydra_bridge
from lmforge.runs import Run, RunError



@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run directory as `lmforge train` leaves it, made without training: its config,
    its tokenizer and a checkpoint holding the weights of a freshly built model."""
    run = make_run(tmp_path)
    model = Run.open(run).model()
    torch.save(model.state_dict(), tmp_path / "reference.pt")
    return run


def test_a_run_opens_with_its_checked_config_tokenizer_and_model(run_dir):
    run = Run.open(run_dir)
    assert run.spec.model.name == "transformer" and run.spec.data.seq_len == 32
    assert run.summary is None and run.manifest is None  # a run stopped before its records is still a run
    ids = run.tokenizer.encode_batch(["def add(a, b):"])[0]
    assert run.tokenizer.decode(ids) == "def add(a, b):"
    model = run.model()
    assert not model.training
    reference = torch.load(run_dir.parent / "reference.pt", weights_only=True)
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
    assert run.read_checkpoint().step == 7


def test_a_checkpoint_inside_a_run_opens_the_run(run_dir):
    run = Run.open(run_dir / "checkpoints" / "last.ckpt")
    assert run.dir == run_dir.resolve() and run.checkpoint() == run_dir.resolve() / "checkpoints" / "last.ckpt"


def test_the_run_preprocesses_text_as_it_saw_its_corpus(run_dir):
    docs, stats = Run.open(run_dir).preprocess(["  x\u00a0y  \n\n\n\nz"])
    assert docs and stats is not None


def test_a_directory_that_is_not_a_run_is_one_clear_error(tmp_path):
    with pytest.raises(RunError, match=r"is not a finished lmforge run directory \(config.yaml and tokenizer.json missing\)"):
        Run.open(tmp_path)
    with pytest.raises(RunError, match="no such file or directory"):
        Run.open(tmp_path / "nowhere")


def test_a_missing_checkpoint_names_the_ones_there_are(run_dir):
    (run_dir / "checkpoints" / "last.ckpt").rename(run_dir / "checkpoints" / "best-step3.ckpt")
    with pytest.raises(RunError, match=r"no checkpoint at .*last.ckpt \(the run's checkpoints: best-step3.ckpt\)"):
        Run.open(run_dir).model()


@pytest.mark.parametrize("damage", ["truncated", "empty", "random"])
def test_a_corrupt_checkpoint_is_named_with_the_intact_ones(run_dir, damage):
    last = run_dir / "checkpoints" / "last.ckpt"
    (run_dir / "checkpoints" / "best-step3.ckpt").write_bytes(last.read_bytes())
    data = last.read_bytes()
    last.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "random": bytes(range(256)) * 64}[damage])
    with pytest.raises(RunError, match=r"last.ckpt is not a readable checkpoint, it is truncated or corrupt .*best-step3.ckpt") as info:
        Run.open(run_dir).model()
    assert "Traceback" not in str(info.value)


class Payload:
    def __reduce__(self):
        return (Path.write_text, (Path(MARKER[0]), "ran"))


MARKER: list[str] = []


def test_a_checkpoint_holding_a_pickle_payload_never_runs_it(run_dir, tmp_path):
    MARKER[:] = [str(tmp_path / "pwned")]
    torch.save({"state_dict": {}, "x": Payload()}, run_dir / "checkpoints" / "last.ckpt")
    with pytest.raises(RunError, match="holds Python objects that lmforge does not load") as info:
        Run.open(run_dir).model()
    assert "weights_only=False" not in str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_a_run_whose_architecture_is_not_installed_says_which(run_dir):
    config = OmegaConf.load(run_dir / "config.yaml")
    config.model.name = "gru"
    OmegaConf.save(config, run_dir / "config.yaml")
    (run_dir / "manifest.json").write_text(json.dumps({"plugins": {"lmforge": "0.1", "lmforge-gru": "0.3"}}))
    with pytest.raises(RunError, match=r"model=gru: no architecture named 'gru'.*lmforge-gru 0.3"):
        Run.open(run_dir)


def test_a_checkpoint_of_another_shape_is_refused(run_dir):
    config = OmegaConf.load(run_dir / "config.yaml")
    config.model.n_embd = 64
    OmegaConf.save(config, run_dir / "config.yaml")
    with pytest.raises(RunError, match=r"does not fit the run's model=transformer"):
        Run.open(run_dir).model()


def test_the_recorded_config_is_exactly_what_the_components_receive():
    """A key removed on the command line is gone from the component's config and from the record."""
    spec = hydra_bridge.check(compose("~tokenizer.special_tokens.pad"))
    assert set(spec.tokenizer.config.special_tokens) == {"eos"}
    assert spec.record()["tokenizer"]["special_tokens"] == spec.tokenizer.config.special_tokens
    again = hydra_bridge.check(OmegaConf.create(spec.record()))
    assert again.record() == spec.record()
