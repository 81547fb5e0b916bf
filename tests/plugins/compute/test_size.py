"""lmforge size: Chinchilla's numbers by hand, the transformer's parameter count against built
models, the --fit of the law, and the errors a user meets."""

from __future__ import annotations

import json
import math

import pytest

from lmforge.plugins.compute import _chinchilla
from lmforge.plugins.compute._chinchilla import CHINCHILLA, Law, Point, allocate, parse_count, transformer_params
from lmforge.plugins.models.transformer import TransformerConfig
from lmforge.runs import Run
from support import lmforge, make_run


def size_json(*args: str, cwd) -> dict:
    return json.loads(lmforge("size", *args, "--json", cwd=cwd).stdout)


def test_chinchilla_budget_gives_70b_params_and_1_4t_tokens(tmp_path):
    """C = 5.76e23 (Chinchilla's own budget): N = sqrt(C / 120) = 69.3B, D = 20 N = 1.39T."""
    found = size_json("--flops", "5.76e23", cwd=tmp_path)
    assert found["params"] == pytest.approx(69.28e9, rel=1e-3)
    assert found["tokens"] == pytest.approx(1.386e12, rel=1e-3)
    assert found["flops"] == pytest.approx(5.76e23, rel=1e-9)
    # the published law at that point, by hand
    assert found["predicted_loss"] == pytest.approx(1.69 + 406.4 / 69.28e9**0.34 + 410.7 / 1.386e12**0.28, rel=1e-4)
    assert abs(found["shape"]["params"] / found["params"] - 1) < 0.02


def test_params_and_tokens_forms(tmp_path):
    by_params = size_json("--params", "124M", cwd=tmp_path)
    assert by_params["tokens"] == pytest.approx(2.48e9)  # the GPT-2 worked example: 20 x 124M
    assert by_params["flops"] == pytest.approx(6 * 124e6 * 2.48e9)  # 1.85e18
    by_tokens = size_json("--tokens", "2.5B", "--tokens-per-param", "10", cwd=tmp_path)
    assert by_tokens["params"] == pytest.approx(2.5e8)
    assert by_tokens["flops"] == pytest.approx(6 * 2.5e8 * 2.5e9)


def test_overrides_train_the_asked_size_for_the_asked_tokens(tmp_path):
    """The printed overrides, composed with the same config, give the shape and steps."""
    found = size_json("--params", "3M", "data.batch_size=8", "data.seq_len=64", cwd=tmp_path)
    shape = found["shape"]
    assert abs(shape["params"] / 3e6 - 1) < 0.05
    assert found["max_steps"] == round(20 * 3e6 / (8 * 64))
    assert found["overrides"] == [
        "data.batch_size=8", "data.seq_len=64", f"model.n_layer={shape['n_layer']}", f"model.n_head={shape['n_head']}",
        f"model.n_embd={shape['n_embd']}", f"trainer.max_steps={found['max_steps']}",
    ]
    assert "3M parameters lies outside the 44M to 16B the law was fitted on" in found["caveat"]
    again = size_json("--params", "3M", "data.batch_size=8", "data.seq_len=64", "model.n_embd=512", "trainer.max_steps=7", cwd=tmp_path)["overrides"]
    assert again[-4:] == found["overrides"][-4:] and "model.n_embd=512" not in again  # one value per key


@pytest.mark.parametrize(
    "options",
    [
        dict(n_layer=3, n_head=4, n_embd=64),
        dict(n_layer=2, n_head=4, n_embd=96, mlp="gelu", norm="layernorm", bias=True, pos="learned"),
        dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=64, tie_embeddings=False, mlp_ratio=3.0),
    ],
)
def test_parameter_formula_counts_as_the_built_model(options):
    from lmforge.plugins.models._transformer import GPT

    config = TransformerConfig(**options).resolved()
    model = GPT(config, vocab_size=300, max_seq_len=64)
    assert transformer_params(config, config.n_layer, config.n_head, config.n_embd, 300) == model.num_params()


def test_nearest_shape_builds_a_model_of_its_count():
    from lmforge.plugins.models._transformer import GPT

    config = TransformerConfig().resolved()
    shape = _chinchilla.nearest_shape(config, 512, 1.5e6)
    assert abs(shape["params"] / 1.5e6 - 1) < 0.05
    built = GPT(TransformerConfig(n_layer=shape["n_layer"], n_head=shape["n_head"], n_embd=shape["n_embd"]).resolved(), 512, 32)
    assert built.num_params() == shape["params"]


def test_hours_from_a_run_uses_its_throughput(tmp_path):
    """--hours H: C = H x 3600 x 6 x N_run x tokens/s of the run; the wall time comes back as H."""
    run = make_run(tmp_path)
    summary = {"tokens_per_s": 5000.0, "params": 80000, "device": "cpu", "val_loss": 5.0}
    (run / "summary.json").write_text(json.dumps(summary))
    found = size_json("--hours", "2", "--from", str(run), cwd=tmp_path)
    assert found["flops"] == pytest.approx(2 * 3600 * 6 * 80000 * 5000.0)
    assert found["seconds"] == pytest.approx(7200)
    assert found["shape"]["vocab_size"] == Run.open(run).tokenizer.vocab_size  # the run's trained vocabulary
    text = lmforge("size", "--params", "300K", "--from", str(run), cwd=tmp_path).stdout
    assert "wall time: 75 min" in text  # 6 x 300K x 6M FLOPs / (6 x 80K x 5,000 FLOP/s) = 4,500 s


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--params", "124X"], "--params 124X: not a count"),
        (["--flops", "0"], "--flops 0: must be a positive number"),
        (["--flops", "1e18", "--params", "124M"], "not allowed with argument"),
        (["--hours", "2"], "--hours needs the device's throughput: add --from RUN"),
        ([], "ask with one of --flops"),
        (["--flops", "1e18", "model=rnn"], "counts the parameters of model=transformer only"),
        (["--fit", "nowhere"], "--fit nowhere: not a directory"),
    ],
)
def test_bad_input_is_named(tmp_path, args, message):
    proc = lmforge("size", *args, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_without_throughput_is_refused(tmp_path):
    run = make_run(tmp_path)
    proc = lmforge("size", "--hours", "1", "--from", str(run), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no summary.json, so no measured throughput" in proc.stderr
    (run / "summary.json").write_text(json.dumps({"val_loss": 4.0, "params": 1000}))
    proc = lmforge("size", "--hours", "1", "--from", str(run), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "summary.json holds no throughput (tokens_per_s=None" in proc.stderr


def test_parse_count_suffixes():
    assert parse_count("124M", "--params") == 124e6
    assert parse_count("2.5B", "--tokens") == 2.5e9
    assert parse_count("1.4T", "--tokens") == 1.4e12
    assert parse_count("5.76e23", "--flops") == 5.76e23
    assert parse_count("300k", "--params") == 3e5


def synthetic_sweep(root, law: Law, noise: float, seed: int = 0):
    """Job directories holding summary.json, with losses drawn from ``law`` times log-normal noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = 0
    for params in np.geomspace(1e7, 3e9, 7):
        for tokens in np.geomspace(1e8, 3e11, 7):
            job = root / str(n)
            job.mkdir(parents=True)
            loss = law.loss(params, tokens) * math.exp(rng.normal(0, noise))
            (job / "summary.json").write_text(json.dumps({"params": params, "tokens_seen": tokens, "val_loss": loss}))
            n += 1
    return root


def test_fit_recovers_known_exponents(tmp_path):
    """Points drawn from a known law with 0.5% noise: the fit finds alpha and beta within 0.03."""
    true = Law(E=1.8, A=500.0, B=300.0, alpha=0.36, beta=0.3)
    sweep = synthetic_sweep(tmp_path / "sweep", true, noise=0.005)
    fitted = size_json("--fit", str(sweep), cwd=tmp_path)
    law = fitted["law"]
    assert law["alpha"] == pytest.approx(true.alpha, abs=0.03)
    assert law["beta"] == pytest.approx(true.beta, abs=0.03)
    assert law["E"] == pytest.approx(true.E, abs=0.1)
    written = json.loads((sweep / "scaling_fit.json").read_text())
    assert written["law"] == pytest.approx(law) and written["runs"] == 49
    assert (sweep / "scaling_fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_isoflop_optimum_is_the_parabola_minimum():
    """Runs on one budget with loss = 3 + (ln N - ln 1e6)^2 / 10: the optimum is 1e6 parameters."""
    c = 1e15
    group = [Point(n, c / (6 * n), 3 + (math.log(n) - math.log(1e6)) ** 2 / 10, str(n)) for n in (2e5, 5e5, 1e6, 3e6, 8e6)]
    found = _chinchilla.isoflop_optimum(group)
    assert found["from"] == "parabola"
    assert found["params"] == pytest.approx(1e6, rel=1e-6)
    assert found["tokens_per_param"] == pytest.approx(c / 6 / 1e12)


def test_fit_needs_five_runs(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "summary.json").write_text(json.dumps({"params": 1e6, "tokens_seen": 2e7, "val_loss": 4.0}))
    proc = lmforge("size", "--fit", str(sweep), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "1 finished run(s)" in proc.stderr and "at least 5" in proc.stderr


def test_published_law_optimum_is_biased_low():
    """Why the allocation uses 20 tokens/param: the rounded law's own optimum at Chinchilla's
    budget is ~32B parameters (Besiroglu et al. 2024), not 70B."""
    n, d = CHINCHILLA.optimum(5.76e23)
    assert 25e9 < n < 40e9 and n * d * 6 == pytest.approx(5.76e23)
    assert allocate(flops=5.76e23).params == pytest.approx(math.sqrt(5.76e23 / 120))
