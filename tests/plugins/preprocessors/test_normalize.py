from collections import Counter

import pytest

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
