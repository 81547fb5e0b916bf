from collections import Counter
from dataclasses import asdict
from importlib.resources import files

import pytest
from omegaconf import OmegaConf

from lmforge.contracts import Document
from lmforge.plugins.preprocessors.stopwords import Stopwords, StopwordsConfig
from lmforge.testing import PreprocessorContract


class TestStopwordsContract(PreprocessorContract):
    component = Stopwords


def run(*texts: str, **options) -> tuple[list[str], Counter]:
    stats = Counter()
    docs = [Document(f"d{i}", t, "t") for i, t in enumerate(texts)]
    return [d.text for d in Stopwords(StopwordsConfig(**options)).process(docs, stats)], stats


def test_the_stop_words_of_the_known_sentence_are_gone():
    out, _ = run("The children were running to the geese")
    assert out == ["children running geese"]


def test_matching_ignores_case_and_layout_survives():
    out, _ = run("THE cat sat ON the mat.\n\n    And then IT slept.\n")
    assert out == ["cat sat mat.\n\n    slept.\n"]


def test_extra_words_go_and_kept_words_stay():
    out, _ = run("The cat did not sit", extra=["Cat"], keep=["NOT"])
    assert out == ["not sit"]


def test_a_document_of_stop_words_only_is_dropped_and_counted():
    out, stats = run("and the of it", "cats purr")
    assert out == ["cats purr"] and stats["dropped:empty_after_stopwords"] == 1


def test_an_unknown_language_is_refused():
    with pytest.raises(ValueError, match="'klingon'"):
        StopwordsConfig(lang="klingon")


def test_a_5_mb_single_line_document_is_chunked_and_fully_processed():
    text = "the geese ran " * 375_000  # 5.25 MB, no line breaks: cut at spaces, far above spaCy's max_length
    out, stats = run(text)
    assert out == ["geese ran " * 375_000] and not stats


def test_the_preset_lists_every_option_with_its_default():
    steps = OmegaConf.load(files("lmforge.conf") / "preprocess" / "stopwords.yaml").steps
    assert [s.name for s in steps] == ["normalize", "stopwords"]
    assert {k: v for k, v in steps[1].items() if k != "name"} == asdict(StopwordsConfig())
