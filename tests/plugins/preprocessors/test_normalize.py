from collections import Counter
from dataclasses import asdict
from importlib.resources import files

import pytest
from omegaconf import OmegaConf

from lmforge.contracts import Document
from lmforge.plugins.preprocessors.normalize import Normalize, NormalizeConfig
from lmforge.testing import PreprocessorContract


class TestNormalizeContract(PreprocessorContract):
    component = Normalize


def run(text: str, **options) -> list[Document]:
    stats = Counter()
    out = list(Normalize(NormalizeConfig(**options)).process([Document("d", text, "t")], stats))
    return out, stats


def test_lines_mode_keeps_indentation_and_tidies_line_ends():
    out, _ = run("def f():\r\n    return 1   \r\n\n\n\n\nx = 2\t\n")
    assert out[0].text == "def f():\n    return 1\n\nx = 2\n"


def test_nfkc_folds_compatibility_characters_and_control_characters_go():
    out, _ = run("ﬁne\x07 ①", form="NFKC", whitespace="keep")
    assert out[0].text == "fine 1"


def test_collapse_mode_and_lowercase():
    out, _ = run("  Hello \n\n  World\t!", whitespace="collapse", lowercase=True)
    assert out[0].text == "hello world !"


def test_a_document_left_empty_is_dropped_and_counted():
    out, stats = run("\x00\x01  \n")
    assert out == [] and stats["dropped:empty_after_normalize"] == 1


def test_an_unknown_normal_form_is_refused():
    with pytest.raises(ValueError, match="NFX"):
        NormalizeConfig(form="NFX")


def test_strip_punctuation_removes_every_unicode_punctuation_category_and_tidies_the_gaps():
    out, _ = run("Hello, «world»! — it's 3.5… (ok) ¿sí?\n", strip_punctuation=True, whitespace="collapse")
    assert out[0].text == "Hello world its 35 ok sí"


def test_punctuation_stays_by_default_and_symbols_are_not_punctuation():
    out, _ = run("a + b = c; $5 ©\n")
    assert out[0].text == "a + b = c; $5 ©\n"
    out, _ = run("a + b = c; $5 ©\n", strip_punctuation=True)
    assert out[0].text == "a + b = c $5 ©\n"


def test_a_document_of_punctuation_only_is_dropped():
    out, stats = run("!?…\n", strip_punctuation=True)
    assert out == [] and stats["dropped:empty_after_normalize"] == 1


def test_the_preset_lists_every_option_with_its_default():
    steps = OmegaConf.load(files("lmforge.conf") / "preprocess" / "normalize.yaml").steps
    assert [s.name for s in steps] == ["normalize"]
    assert {k: v for k, v in steps[0].items() if k != "name"} == asdict(NormalizeConfig())


def test_invisible_format_characters_are_stripped_by_default():
    """Zero-width space, word joiner, soft hyphen, a mid-text BOM, bidi controls, tag characters."""
    assert NormalizeConfig().strip_format_chars is True
    text = "pass\u200bword \u2060join\ufeffed hy\u00adphen \u202eevil\u202c x\u200dy z\u200cw\U000E0041\tend\n"
    assert Normalize(NormalizeConfig(whitespace="keep")).normalize(text) == "password joined hyphen evil xy zw\tend\n"


def test_joiners_inside_emoji_and_scripts_that_spell_with_them_stay():
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467"  # man ZWJ woman ZWJ girl
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # ZWNJ between two letters
    scotland = "\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F"
    arabic_number = "\u0600\u0661\u0662"  # a visible Cf: the Arabic number sign
    text = f"{family} {persian} {scotland} {arabic_number}\n"
    assert Normalize(NormalizeConfig()).normalize(text) == text


def test_format_characters_stay_when_the_option_is_off():
    text = "a\u200bb\n"
    assert Normalize(NormalizeConfig(strip_format_chars=False)).normalize(text) == text
