import json
from collections import Counter
from itertools import pairwise

import pytest
from support import TINY, lmforge

from lmforge.contracts import Document
from lmforge.plugins.preprocessors.quality import Quality, QualityConfig
from lmforge.testing import PreprocessorContract

PARA = (
    "The history of the city begins with a small fishing village on the northern bank of the river. "
    "Over several centuries, merchants built warehouses along the water, and the harbour grew into one "
    "of the busiest ports in the region. Today the old quarter is known for its narrow streets, painted "
    "houses and lively markets, which attract visitors from all over the world. Local historians have "
    "collected letters, maps and photographs that show how families lived and worked there with "
    "remarkable resilience."
)
FILLER = [  # distinct words, none a stop word, so that only the rule under test fires
    "amber", "basalt", "cobalt", "dahlia", "ember", "fennel", "garnet", "hazel", "indigo", "juniper",
    "kelp", "lilac", "maple", "nutmeg", "ochre", "pepper", "quartz", "russet", "saffron", "thistle",
    "umber", "violet", "walnut", "xylem", "yarrow", "zinnia", "acorn", "birch", "cedar", "daisy",
]  # fmt: skip


SENTENCES = [s.strip() + "." for s in PARA.split(".") if s.strip()]
LONG_LINE = " ".join(FILLER)  # one long line: repeated once, it is few lines but many characters


class TestQualityContract(PreprocessorContract):
    component = Quality
    sample_texts = [PARA, "too short"]


def check(text: str, **options) -> tuple[list[Document], Counter]:
    stats: Counter = Counter()
    out = list(Quality(QualityConfig(**options)).process([Document("d", text, "t")], stats))
    return out, stats


def test_a_normal_paragraph_passes_every_default_rule():
    out, stats = check(PARA)
    assert len(out) == 1 and not stats


def prose(words: list[str]) -> str:
    """Filler words around the stop words the stop-word rule asks for."""
    return "the and of " + " ".join(words)


BAD = {
    "min_chars": (PARA, {"min_chars": 1000}),
    "max_chars": (PARA, {"max_chars": 100}),
    "min_words": ("The cat sat on the mat with the hat.", {}),
    "max_words": (PARA, {"min_words": None, "max_words": 20}),
    "min_mean_word_length": ("the of and " + " ".join(["a", "an", "is", "it", "go"] * 12), {"min_words": 10}),
    "max_mean_word_length": ("the of and " + " ".join(w * 4 for w in FILLER * 2), {}),
    "max_symbol_word_ratio": (PARA + " #tag #city #port #river #sea #old #map #art #sun #sky #bay #fog", {}),
    "min_alpha_word_ratio": (PARA + " " + " ".join(str(n) for n in range(1000, 1030)), {}),
    "min_stop_words": (" ".join(FILLER * 2), {}),
    "max_bullet_line_ratio": ("\n".join(f"- {a} {b} the and" for a, b in pairwise(FILLER)), {}),
    "max_ellipsis_line_ratio": ("\n".join(f"the {a} and {b} of..." for a, b in pairwise(FILLER)), {"max_symbol_word_ratio": None}),
    "max_dup_line_fraction": (PARA + "\n" + "\n".join(["Read more"] * 8), {}),
    "max_dup_para_fraction": (PARA + "\n\n" + "\n\n".join(["Subscribe to our newsletter"] * 4), {"max_dup_line_fraction": None}),
    "max_dup_line_char_fraction": ("\n".join(SENTENCES + [LONG_LINE] * 2), {}),
    "max_dup_para_char_fraction": ("\n\n".join(SENTENCES + [LONG_LINE] * 2), {"max_dup_line_char_fraction": None}),
    "max_top_2gram_char_fraction": (prose([f"{w} lorem ipsum" for w in FILLER]), {}),
    "max_dup_5gram_char_fraction": (PARA + " " + PARA[:400], {"max_dup_line_char_fraction": None}),
}  # fmt: skip


@pytest.mark.parametrize("rule", sorted(BAD))
def test_each_rule_drops_a_crafted_document_with_its_reason(rule):
    text, options = BAD[rule]
    out, stats = check(text, **options)
    assert out == [] and stats == Counter({f"dropped:quality_{rule}": 1})


def test_a_rule_set_to_null_is_off():
    out, stats = check("The cat sat on the mat with the hat.", min_words=None)
    assert len(out) == 1 and not stats


def test_the_top_ngram_rule_ignores_an_ngram_that_occurs_once():
    """A short document's only bigram is no repetition."""
    out, _ = check("the quick brown fox and the lazy dog", min_words=None)
    assert len(out) == 1


def test_gopher_defaults():
    c = QualityConfig()
    assert (c.min_words, c.max_words, c.min_mean_word_length, c.max_mean_word_length) == (50, 100_000, 3, 10)
    assert (c.max_symbol_word_ratio, c.min_alpha_word_ratio, c.max_dup_line_fraction, c.max_dup_line_char_fraction) == (0.1, 0.8, 0.3, 0.2)
    assert (c.max_top_2gram_char_fraction, c.max_top_3gram_char_fraction, c.max_top_4gram_char_fraction) == (0.2, 0.18, 0.16)
    assert (c.max_dup_5gram_char_fraction, c.max_dup_10gram_char_fraction) == (0.15, 0.1)


def test_inconsistent_thresholds_are_refused():
    with pytest.raises(ValueError, match="min_words=10 is above max_words=5"):
        QualityConfig(min_words=10, max_words=5)


def test_the_clean_web_preset_trains_end_to_end_and_reports_drops_by_reason(tmp_path):
    """``preprocess=clean_web`` through the real CLI: the standard library's docstring-rich
    modules pass the prose rules, the rest are dropped and counted by rule."""
    run = tmp_path / "run"
    short = ["trainer.max_steps=10", "trainer.val_check_interval=5", "sample.max_new_tokens=2"]
    lmforge("train", *TINY, *short, "preprocess=clean_web", f"hydra.run.dir={run}", cwd=tmp_path, env={"LMFORGE_CACHE_DIR": str(tmp_path / "cache")})
    report = json.loads((run / "manifest.json").read_text())["data"]["preprocess"]
    assert report["steps"] == ["normalize", "quality", "dedup", "pii", "safety"]
    drops = {k: v for k, v in report["counts"].items() if k.startswith("dropped:")}
    assert drops and all(k.startswith("dropped:quality_") for k in drops), report["counts"]
    assert report["documents"] == report["documents_in"] - sum(drops.values()) > 0
    assert json.loads((run / "summary.json").read_text())["steps"] == 10


@pytest.mark.slow  # the CLI's start-up alone takes ~20 s on a loaded machine
def test_a_run_that_drops_every_document_names_the_threshold_to_change(tmp_path):
    """Through the CLI: the error names the step's config path and the threshold that dropped the most."""
    run = tmp_path / "run"
    proc = lmforge(
        "train", "collector.max_bytes=50000", "preprocess=clean_web", "preprocess.steps.1.min_chars=100000000", f"hydra.run.dir={run}",
        cwd=tmp_path, env={"LMFORGE_CACHE_DIR": str(tmp_path / "cache")}, check=False,
    )
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "preprocessing dropped every document" in err and "Traceback" not in err, err
    assert "preprocess.steps[1].min_chars (now 100000000)" in err and "preprocess.steps.1.min_chars=" in err, err


def test_every_drop_reason_names_an_option():
    assert Quality.drop_reasons["quality_min_stop_words"] == "min_stop_words"
    assert set(Quality.drop_reasons.values()) == set(QualityConfig.__dataclass_fields__)
