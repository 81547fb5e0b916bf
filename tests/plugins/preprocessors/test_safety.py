from collections import Counter

import pytest

from lmforge.contracts import Document
from lmforge.plugins.preprocessors.safety import Safety, SafetyConfig
from lmforge.testing import PreprocessorContract

CLEAN = "The committee met on Tuesday to discuss the new library, the park and the bus timetable."
RUDE = "You absolute badword, this plan is a badword mess and so are you."


class TestSafetyContract(PreprocessorContract):
    component = Safety
    config = SafetyConfig(lexicon=["badword"])
    sample_texts = [CLEAN, RUDE]


def run(texts: list[str], **options) -> tuple[list[Document], Counter]:
    step = Safety(SafetyConfig(**{"lexicon": ["badword"], **options}))
    step.setup()
    stats: Counter = Counter()
    return list(step.process([Document(f"d{i}", t, "t") for i, t in enumerate(texts)], stats)), stats


def test_drop_mode_drops_flagged_documents_and_counts_them():
    out, stats = run([CLEAN, RUDE])
    assert [d.text for d in out] == [CLEAN]
    assert stats == Counter({"dropped:unsafe": 1})


def test_tag_mode_keeps_flagged_documents_with_their_score():
    out, stats = run([CLEAN, RUDE], action="tag")
    assert [d.text for d in out] == [CLEAN, RUDE]
    assert "safety" not in out[0].meta
    assert out[1].meta["safety"] == {"score": round(2 / 13, 4), "flagged": True}
    assert stats == Counter({"tagged:unsafe": 1})


def test_the_threshold_is_a_share_of_the_words():
    long = RUDE + " " + CLEAN * 5  # two matches in about 90 words
    assert len(run([long], threshold=0.01)[0]) == 0
    assert len(run([long], threshold=0.05)[0]) == 1


def test_max_count_flags_many_matches_in_a_long_document():
    long = RUDE + " " + CLEAN * 50
    assert len(run([long], threshold=0.5)[0]) == 1
    assert len(run([long], threshold=0.5, max_count=1)[0]) == 0


def test_matching_is_by_whole_word_after_case_folding():
    assert run(["BADWORD!"])[0] == []
    assert len(run(["badwords and notabadword are other words"], threshold=0.0)[0]) == 1


def test_multi_word_entries_match_the_sequence():
    assert run(["please shut up now"], builtin=False, lexicon=["shut up"])[0] == []
    assert len(run(["shut the door, then up the stairs"], builtin=False, lexicon=["shut up"])[0]) == 1


def test_the_builtin_list_can_be_switched_off():
    assert run(["what an idiot"])[0] == []
    assert len(run(["what an idiot"], builtin=False)[0]) == 1


def test_lexicon_files_are_read_and_change_the_cache_token(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# my list\nflurble\n")
    config = SafetyConfig(builtin=False, lexicon_files=[str(words)])
    step = Safety(config)
    step.setup()
    assert list(step.process([Document("a", "such flurble", "t")], Counter())) == []
    token = step.cache_token()
    words.write_text("grumble\n")
    assert Safety(config).cache_token() != token and token


@pytest.mark.parametrize(
    "options,match", [({"action": "warn"}, "action='warn'"), ({"threshold": 1.5}, "threshold"), ({"lexicon_files": ["/no/such.txt"]}, "no file at /no/such.txt")]
)
def test_bad_options_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        SafetyConfig(**options)
