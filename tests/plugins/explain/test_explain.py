"""``lmforge explain``: the sanity checks of each method on every built-in architecture, the
output folder, and bad input. Run directories come from ``support.make_run`` (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import support
import torch
from support import lmforge

from lmforge.cli import main
from lmforge.plugins.explain._command import explain_ids
from lmforge.runs import Run

TEXT = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A run directory per built-in architecture, with noisy random weights."""
    return {
        name: support.make_run(tmp_path_factory.mktemp(name), f"model={name}", *extra, noise=0.05)
        for name, extra in (("transformer", ()), ("bert", ()), ("rnn", ()))
    }


@pytest.fixture(scope="module")
def opened(runs):
    cache = {}

    def get(name: str):
        if name not in cache:
            run = Run.open(runs[name])
            cache[name] = (run, run.model())
        return cache[name]

    return get


def ids_of(run: Run, text: str = TEXT, masked: bool = False) -> list[int]:
    ids = run.tokenizer.encode_batch([text])[0]
    if masked:
        ids[3] = run.tokenizer.special_ids["mask"]
    return ids


def explain(opened, name: str, **kwargs) -> dict:
    run, model = opened(name)
    masked = name == "bert"
    return explain_ids(model, ids_of(run, masked=masked), tokenizer=run.tokenizer, masked=masked, **kwargs)


@pytest.mark.parametrize("name", ["transformer", "bert"])
def test_attention_rows_sum_to_one(opened, name):
    r = explain(opened, name, methods=("attention",))
    maps = torch.tensor(r["attention"]["maps"])  # (L, H, T, T)
    assert torch.allclose(maps.sum(-1), torch.ones(maps.shape[:-1]), atol=1e-4)
    rollout = torch.tensor(r["attention"]["rollout"])
    assert torch.allclose(rollout.sum(-1), torch.ones(rollout.size(0)), atol=1e-4)
    above = torch.triu(torch.ones(maps.shape[-2:], dtype=torch.bool), diagonal=1)
    if name == "transformer":  # causal: nothing above the diagonal, in the rollout neither
        assert maps[..., above].abs().max() == 0 and rollout[above].abs().max() < 1e-6
    else:  # bidirectional: the maps do look ahead
        assert maps[..., above].sum() > 0.1


def test_rollout_matches_a_hand_computation():
    from lmforge.plugins.explain._methods import rollout

    a = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])  # one layer, one head
    b = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    # (A + I) / 2 per layer, then the product, later layers on the left
    first = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    assert torch.allclose(rollout(torch.stack([a])), first)
    assert torch.allclose(rollout(torch.stack([a, b])), first)  # the identity layer changes nothing
    assert torch.allclose(rollout(torch.stack([b, a])), first)


@pytest.mark.parametrize(
    "name,baseline,n_steps",
    [
        ("transformer", "pad", 50), ("bert", "pad", 50), ("rnn", "pad", 50), ("bert", "zero", 50), ("rnn", "zero", 50),
        # RMSNorm straight after the token embedding is scale-invariant: from zeros, f is flat
        # except right next to the baseline, a spike that takes more steps to integrate
        ("transformer", "zero", 200),
    ],
)
def test_integrated_gradients_are_complete(opened, name, baseline, n_steps):
    """At the default 50 steps the attributions sum to f(x) - f(baseline) within 5%."""
    ig = explain(opened, name, methods=("ig",), baseline=baseline, n_steps=n_steps)["ig"]
    gap = ig["f_input"] - ig["f_baseline"]
    assert abs(gap) > 1e-3
    assert abs(sum(ig["attribution"]) - gap) <= 0.05 * abs(gap), {k: v for k, v in ig.items() if k != "attribution"}
    assert ig["n_steps"] == n_steps and ig["passes"] <= 11


def test_the_ig_ends_are_the_model_s_own_scores(opened):
    run, model = opened("transformer")
    ids = ids_of(run)
    r = explain_ids(model, ids, tokenizer=run.tokenizer, masked=False, methods=("ig",))
    with torch.no_grad():
        logp = model(torch.tensor([ids])).logits[0, -1].log_softmax(-1)[r["target"]["id"]]
        pad = torch.full((1, len(ids)), run.tokenizer.special_ids["pad"])
        logp_pad = model(pad).logits[0, -1].log_softmax(-1)[r["target"]["id"]]
    assert r["ig"]["f_input"] == pytest.approx(float(logp), abs=1e-5)
    assert r["ig"]["f_baseline"] == pytest.approx(float(logp_pad), abs=1e-5)


@pytest.mark.parametrize("name", ["transformer", "bert"])
def test_the_logit_lens_last_layer_is_the_model_s_output(opened, name):
    from lmforge.plugins.explain._methods import Target, logit_lens

    run, model = opened(name)
    ids = torch.tensor(ids_of(run, masked=name == "bert"))
    lens = logit_lens(model, ids, Target(len(ids) - 1, 0))
    with torch.no_grad():
        probs = model(ids[None]).logits[0].float().softmax(-1)
    assert lens["probs"].shape[0] == len(model.blocks) + 1
    assert torch.allclose(lens["probs"][-1], probs, atol=1e-6)
    assert not torch.allclose(lens["probs"][0], probs, atol=1e-3)  # the embeddings alone predict something else
    assert lens["top_ids"][-1][-1][0] == int(probs[-1].argmax())


def test_saliency_is_the_gradient_of_the_target(opened):
    """Checked against a finite difference along the gradient x input direction."""
    run, model = opened("transformer")
    ids = ids_of(run)
    r = explain_ids(model, ids, tokenizer=run.tokenizer, masked=False, methods=("saliency",))
    emb = model.get_input_embeddings()
    eps, t = 1e-3, 2

    def f(scale: float) -> float:
        handle = emb.register_forward_hook(lambda m, a, out: out * torch.where(torch.arange(len(ids)) == t, scale, 1.0)[:, None])
        try:
            with torch.no_grad():
                return float(model(torch.tensor([ids])).logits[0, -1].log_softmax(-1)[r["target"]["id"]])
        finally:
            handle.remove()

    numeric = (f(1 + eps) - f(1 - eps)) / (2 * eps)  # d f / d scale of token t's embedding = grad . embedding
    assert r["saliency"]["grad_x_input"][t] == pytest.approx(numeric, rel=0.02, abs=1e-5)


def test_bert_explains_the_mask_filler(opened):
    r = explain(opened, "bert", methods=("saliency",))
    assert r["target"]["position"] == 3 and r["target"]["how"] == "mask"


def test_rnn_supports_attribution_only(opened):
    from lmforge.plugins.explain._methods import unsupported

    run, model = opened("rnn")
    missing = unsupported(model, torch.tensor(ids_of(run)))
    assert set(missing) == {"attention", "logit-lens"} and "no attention" in missing["attention"]


def test_the_cli_writes_figures_page_and_numbers(runs):
    """End to end through the real command line, in a subprocess."""
    run = runs["transformer"]
    proc = lmforge("explain", str(run), "--text", TEXT, "--n-steps", "20", cwd=run)
    out = Path(proc.stdout.split("wrote ", 1)[1].split(":", 1)[0])
    assert out.parent == run / "explain" and out.is_dir()
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([
        "attention-heads.png", "attention-mean.png", "attention-rollout.png", "explain.html", "explain.json",
        "ig.png", "logit-lens.png", "saliency.png",
    ])
    data = json.loads((out / "explain.json").read_text())
    assert data["tokens"] and len(data["ig"]["attribution"]) == len(data["tokens"]) and data["ig"]["n_steps"] == 20
    page = (out / "explain.html").read_text()
    assert "http://" not in page and "https://" not in page and page.count("data:image/png;base64,") == 6
    assert "integrated gradients: 20 steps" in proc.stderr and not list(out.parent.glob(".*"))  # no staging left


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["explain", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_rnn_all_skips_attention_with_a_notice(runs, capsys, tmp_path):
    code, out, err = cli(capsys, runs["rnn"], "--text", TEXT, "--out", tmp_path / "x", "--n-steps", "4")
    assert code == 0 and "no attention for model=rnn: it has no attention layers" in err
    assert sorted(p.name for p in (tmp_path / "x").glob("*.png")) == ["ig.png", "saliency.png"]
    assert json.loads((tmp_path / "x" / "explain.json").read_text())["skipped"]["attention"]


def test_bert_cli_fills_the_mask(runs, capsys, tmp_path):
    code, out, err = cli(capsys, runs["bert"], "--text", "def [MASK](a, b):", "--method", "logit-lens", "--out", tmp_path / "b")
    assert code == 0, err
    data = json.loads((tmp_path / "b" / "explain.json").read_text())
    assert data["target"]["how"] == "mask" and data["tokens"][data["target"]["position"]] == "[MASK]"


@pytest.mark.parametrize(
    "name,args,message",
    [
        ("transformer", ["--text", "  "], "--text is empty"),
        ("rnn", ["--text", TEXT, "--method", "attention"], "--method attention: model=rnn cannot explain that way, it has no attention layers"),
        ("bert", ["--text", "no mask here"], "has no [MASK]"),
        ("transformer", ["--text", TEXT, "--n-steps", "1"], "--n-steps 1"),
    ],
)
def test_bad_input_is_one_clear_error(runs, capsys, name, args, message):
    code, out, err = cli(capsys, runs[name], *args)
    assert code == 2 and message in err, err
    assert not (runs[name] / "explain").exists() or not any((runs[name] / "explain").glob(".*"))


def test_a_target_of_several_tokens_says_how_it_tokenizes(runs, capsys):
    code, out, err = cli(capsys, runs["transformer"], "--text", TEXT, "--target", "return a + b")
    assert code == 2 and "--target 'return a + b' is" in err and "tokens of the run's tokenizer ('" in err and "not one" in err


def test_a_given_target_is_explained(runs, capsys, tmp_path):
    run = Run.open(runs["transformer"])
    token = run.tokenizer.decode([run.tokenizer.encode_batch(["return"])[0][0]])
    code, out, err = cli(capsys, runs["transformer"], "--text", TEXT, "--target", token, "--method", "saliency", "--out", tmp_path / "t")
    data = json.loads((tmp_path / "t" / "explain.json").read_text())
    assert code == 0 and data["target"]["how"] == "given" and data["target"]["id"] == run.tokenizer.encode_batch([token])[0][0]


def test_a_text_over_the_context_is_truncated_or_refused(runs, capsys, tmp_path):
    long = TEXT * 20  # far over data.seq_len=32
    code, out, err = cli(capsys, runs["transformer"], "--text", long, "--overlong", "error")
    assert code == 2 and "over the run's context of data.seq_len=32" in err and "--overlong truncate" in err
    code, out, err = cli(capsys, runs["transformer"], "--text", long, "--method", "attention", "--out", tmp_path / "l")
    assert code == 0 and "explaining its last 32 tokens" in err
    assert len(json.loads((tmp_path / "l" / "explain.json").read_text())["tokens"]) == 32


def test_a_second_explanation_replaces_the_folder_whole(runs, capsys, tmp_path):
    out = tmp_path / "same"
    assert cli(capsys, runs["transformer"], "--text", TEXT, "--method", "attention", "--out", out)[0] == 0
    assert cli(capsys, runs["transformer"], "--text", TEXT, "--method", "saliency", "--out", out)[0] == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["saliency.png"] and not list(tmp_path.glob(".*"))


def test_an_unconverged_integral_says_to_raise_the_steps(runs, capsys, tmp_path):
    """Two points (the ends alone) are a trapezoid: far from the integral on a random model."""
    code, out, err = cli(capsys, runs["transformer"], "--text", TEXT, "--method", "ig", "--n-steps", "2", "--baseline", "zero", "--out", tmp_path / "g")
    assert code == 0 and "integrated gradients have not converged" in err and "--n-steps 8" in err


def test_integrated_gradients_agree_with_captum(opened):
    """Where the integrand is smooth (random weights), the adaptive path gives Captum's answer."""
    captum = pytest.importorskip("captum.attr")
    from lmforge.plugins.explain import _methods

    run, model = opened("transformer")
    ids = torch.tensor(ids_of(run))
    target = _methods.Target(len(ids) - 1, 7)
    base = _methods.baseline_embeddings(model, ids, "pad", run.tokenizer.special_ids["pad"])
    ours = torch.tensor(_methods.integrated_gradients(model, ids, target, baseline=base)["attribution"])
    with _methods._embeddings_replaced(model) as holder:
        theirs = captum.IntegratedGradients(_methods._scorer(model, ids, target, holder)).attribute(
            _methods.embed(model, ids)[None], baselines=base[None], n_steps=200, internal_batch_size=50
        )[0].sum(-1)
    assert torch.allclose(ours, theirs, atol=0.02 * theirs.abs().max())


def test_the_html_page_colours_tokens_and_shows_attention_sources_on_hover(runs, capsys, tmp_path):
    """explain.html in a real headless Chromium, from file://: no network, the script runs."""
    import shutil

    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    assert cli(capsys, runs["transformer"], "--text", TEXT, "--n-steps", "10", "--out", tmp_path / "h")[0] == 0
    data = json.loads((tmp_path / "h" / "explain.json").read_text())
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    try:
        browser.get((tmp_path / "h" / "explain.html").as_uri())
        spans = browser.find_elements(By.CSS_SELECTOR, "#tokens .tok")
        assert len(spans) == len(data["tokens"])
        options_ = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#by option")]
        assert options_[0] == "integrated gradients" and "gradient × input" in options_
        strongest = max(range(len(spans)), key=lambda i: abs(data["ig"]["attribution"][i]))
        styles = [s.get_attribute("style") for s in spans]
        assert "rgb(" in styles[strongest] and "rgba" not in styles[strongest]  # full strength; the rest fainter
        assert sum("rgba" in style for style in styles) == len(spans) - 1
        ActionChains(browser).move_to_element(spans[-1]).perform()
        tip = browser.find_element(By.ID, "tip")
        assert tip.is_displayed() and "attends to" in tip.text
        top = max(range(len(spans)), key=lambda j: data["attention"]["rollout"][-1][j])
        assert "source" in spans[top].get_attribute("class")
    finally:
        browser.quit()
