"""task=translate: the contract suite, BLEU and chrF against hand computations, the num2words demo."""

from __future__ import annotations

import pytest

from lmforge import tasks
from lmforge.errors import ConfigError
from lmforge.plugins.tasks.translate import Translate, TranslateConfig, bleu_chrf
from lmforge.testing import TaskContract


class TestTranslate(TaskContract):
    component = Translate


def test_bleu_matches_a_hand_computation():
    # "the cat sat on the mat" against "the cat sat on a mat": clipped n-gram precisions
    # 5/6, 3/5, 2/4 and 1/3, equal lengths (no brevity penalty): BLEU is their geometric mean
    expected = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert bleu_chrf(["the cat sat on the mat"], ["the cat sat on a mat"])["bleu"] == pytest.approx(expected)


def test_chrf_matches_a_hand_computation():
    # characters of "cat" against "cart": order 1 P=3/3 R=3/4, order 2 ("ca", "at" against
    # "ca", "ar", "rt") P=1/2 R=1/3, order 3 P=0 R=0; order 4 has no hypothesis n-gram and is
    # left out. chrF = F2 of the mean P and R over the three orders.
    p, r = (1 + 1 / 2 + 0) / 3, (3 / 4 + 1 / 3 + 0) / 3
    assert bleu_chrf(["cat"], ["cart"])["chrf"] == pytest.approx(100 * 5 * p * r / (4 * p + r))


def test_the_demo_spells_numbers_in_both_languages_with_tags():
    data = tasks.load(Translate())
    example = next(e for split in data.splits.values() for e in split if e.id == "21")
    assert example.prompt == "en: twenty-one\nes: " and example.reference == "veintiuno"
    assert Translate().baseline([example]) == ["twenty-one"]


def test_another_language_pair_changes_the_demo_and_the_tags():
    task = Translate(TranslateConfig(source_lang="en", target_lang="fr"))
    record = next(r for r in task.demo() if r["id"] == "21")
    assert task.format(record).prompt == "en: twenty-one\nfr: " and record["target"] == "vingt et un"


def test_a_language_num2words_lacks_names_the_key():
    with pytest.raises(ConfigError, match="task.target_lang=xx: num2words cannot spell numbers in it"):
        Translate(TranslateConfig(target_lang="xx")).demo()
