from collections import Counter

import pytest

from lmforge.contracts import Document, Verdict
from lmforge.plugins.guards.lexicon import LexiconGuard, LexiconGuardConfig
from lmforge.plugins.guards.none import NoGuard
from lmforge.plugins.preprocessors.safety import Safety, SafetyConfig
from lmforge.testing import GuardContract

CLEAN = "The committee met on Tuesday to discuss the new library, the park and the bus timetable."
TEXTS = [
    CLEAN,
    "You absolute idiot, this plan is a mess.",
    "Oh shut up and go to hell, you piece of shit.",
    "Shut the door, then up the stairs: no match across the words.",
    "Classic Scunthorpe assistant passes.",
    "What a BADWORD day, don't you think?",
    "shut\nup",
]


class TestLexiconContract(GuardContract):
    component = LexiconGuard
    config = LexiconGuardConfig(lexicon=["badword"])
    safe_texts = (CLEAN, TEXTS[3], TEXTS[4], "")
    unsafe_texts = tuple(t for t in TEXTS if t not in (CLEAN, TEXTS[3], TEXTS[4]))


class TestNoneContract(GuardContract):
    component = NoGuard
    safe_texts = (CLEAN, *TEXTS)


@pytest.mark.parametrize("text", TEXTS)
def test_the_guard_and_the_safety_preprocessor_count_the_same_words(text):
    """One lexicon, one matcher: the guard's hits are the words the preprocessor counts."""
    step = Safety(SafetyConfig(lexicon=["badword"], threshold=0.0, action="tag"))
    step.setup()
    _, count = step.score(text)
    scanner = LexiconGuard(LexiconGuardConfig(lexicon=["badword"])).scanner()
    for i in range(0, len(text), 2):
        scanner.feed(text[i : i + 2])
    scanner.finish()
    assert sum(scanner.hits.values()) == count
    tagged = list(step.process([Document("d", text, "t")], Counter()))[0].meta.get("safety") is not None
    assert tagged == (LexiconGuard(LexiconGuardConfig(lexicon=["badword"])).check(text).decision == "block")


def test_categories_and_scores_are_shares_of_the_words():
    verdict = LexiconGuard().check("Oh shut up and go to hell, you piece of shit.")
    assert verdict == Verdict("block", ("harassment", "insult"), {"harassment": round(5 / 11, 4), "insult": round(3 / 11, 4)})


def test_flag_action_min_count_and_categories():
    text = "what an idiot, damn"
    assert LexiconGuard(LexiconGuardConfig(action="flag")).check(text).decision == "flag"
    assert LexiconGuard(LexiconGuardConfig(min_count=3)).check(text).decision == "allow"
    only = LexiconGuard(LexiconGuardConfig(categories=["harassment"]))
    assert only.check(text).decision == "allow" and only.check("stfu").categories == ("harassment",)


def test_a_match_split_across_chunks_is_held_back_and_never_shown():
    scanner = LexiconGuard().scanner()
    shown = ""
    for chunk in ["Please ", "sh", "ut", " ", "u", "p now"]:
        released, verdict = scanner.feed(chunk)
        shown += released
        if verdict.blocked:
            break
    else:
        assert shown == "Please "  # "shut up" may go on as "shut up and go to hell": still undecided
        released, verdict = scanner.finish()
    assert verdict.blocked and verdict.categories == ("harassment",)
    assert shown == "Please " and "shut" not in shown


def test_a_prefix_of_a_longer_word_is_not_a_match():
    scanner = LexiconGuard().scanner()
    shown = ""
    for chunk in ["The ", "ass", "ist", "ant said hi"]:
        released, verdict = scanner.feed(chunk)
        shown += released
        assert not verdict.blocked
    shown += scanner.finish()[0]
    assert shown == "The assistant said hi"


@pytest.mark.parametrize(
    "options,match",
    [({"action": "stop"}, "action='stop'"), ({"min_count": 0}, "min_count=0"), ({"categories": ["spam"]}, "spam unknown"), ({"lexicon_files": ["/no/such.txt"]}, "/no/such.txt")],
)
def test_bad_options_name_the_key(options, match):
    with pytest.raises(ValueError, match=match):
        LexiconGuardConfig(**options)
