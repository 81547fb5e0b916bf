from collections import Counter
from dataclasses import asdict
from importlib.resources import files

import pytest
from omegaconf import OmegaConf

from lmforge.contracts import Document
from lmforge.plugins.preprocessors.stem import Stem, StemConfig
from lmforge.testing import PreprocessorContract


class TestStemContract(PreprocessorContract):
    component = Stem


def stem(text: str, **options) -> str:
    return next(Stem(StemConfig(**options)).process([Document("d", text, "t")], Counter())).text


def test_the_known_sentence_is_stemmed():
    assert stem("the children were running to the geese") == "the children were run to the gees"


def test_punctuation_whitespace_and_numbers_stay_and_casing_survives_where_it_can():
    assert stem("Running, happily!\n\n\tPonies 42 x-ray.") == "Run, happili!\n\n\tPoni 42 x-ray."


def test_the_language_is_configurable():
    assert stem("die Katzen laufen", language="german") == "die Katz lauf"


def test_an_unknown_stemmer_is_refused_listing_the_options():
    with pytest.raises(ValueError, match="'englsh'.*english"):
        StemConfig(language="englsh")


def test_the_preset_lists_every_option_with_its_default():
    steps = OmegaConf.load(files("lmforge.conf") / "preprocess" / "stem.yaml").steps
    assert [s.name for s in steps] == ["normalize", "stem"]
    assert {k: v for k, v in steps[1].items() if k != "name"} == asdict(StemConfig())
