import pickle
from collections import Counter

import pytest

from lmforge.contracts import Document
from lmforge.plugins.preprocessors.dedup import Dedup, DedupConfig, canonical, shingles
from lmforge.testing import PreprocessorContract

HARBOUR = (
    "The history of the city begins with a small fishing village on the northern bank of the river. "
    "Over several centuries merchants built warehouses along the water and the harbour grew into one of "
    "the busiest ports in the region. Today the old quarter is known for its narrow streets, painted "
    "houses and lively markets, which attract visitors from all over the world, and local historians "
    "have collected letters, maps and photographs that show how families lived and worked there. "
    "In the nineteenth century a railway line reached the port, bringing coal from the hills and carrying "
    "grain, timber and cloth inland, while a new bridge joined the two banks for the first time. The "
    "population doubled within a generation, schools and hospitals were opened, and the town council "
    "commissioned a library that still stands beside the main square."
)
ORCHARD = (
    "Apple trees need a sunny position and well drained soil, and most varieties must be pollinated by "
    "a second tree that flowers at the same time. Prune them in winter while they are dormant, removing "
    "dead or crossing branches so that light and air reach the centre of the crown, then feed them in "
    "spring with compost and water them through dry summers until the fruit is ready to pick."
)


class TestDedupContract(PreprocessorContract):
    component = Dedup
    sample_texts = [HARBOUR, ORCHARD, HARBOUR.upper()]


def run(texts: list[str], step: Dedup | None = None) -> tuple[list[str], Counter]:
    if step is None:
        step = Dedup()
        step.setup()
    stats: Counter = Counter()
    out = list(step.process([Document(f"d{i}", t, "t") for i, t in enumerate(texts)], stats))
    return [d.text for d in out], stats


def test_a_near_duplicate_is_dropped_while_distinct_documents_stay():
    one_word_changed = HARBOUR.replace("northern", "southern")
    out, stats = run([HARBOUR, ORCHARD, one_word_changed])
    assert out == [HARBOUR, ORCHARD]
    assert stats == Counter({"dropped:near_duplicate": 1})


def test_an_exact_duplicate_modulo_case_and_whitespace_is_dropped():
    copy = "  " + HARBOUR.upper().replace(" ", "\n\t ") + "\n"
    out, stats = run([HARBOUR, copy, ORCHARD])
    assert out == [HARBOUR, ORCHARD]
    assert stats == Counter({"dropped:exact_duplicate": 1})


def test_the_index_spans_shards_of_one_run():
    """The step instance persists across the shards of a run, and so does what it has seen."""
    step = Dedup()
    step.setup()
    first = list(step.process([Document("a", HARBOUR, "t")], Counter()))
    stats: Counter = Counter()
    second = list(step.process([Document("b", HARBOUR.replace("river", "stream"), "t")], stats))
    assert len(first) == 1 and second == [] and stats["dropped:near_duplicate"] == 1


def test_a_lower_threshold_catches_looser_copies():
    loose = " ".join(HARBOUR.split()[:90]).replace("northern", "southern").replace("painted", "colourful")
    original = " ".join(HARBOUR.split()[:90])
    assert run([original, loose], Dedup(DedupConfig(threshold=0.9)))[0] == [original, loose]
    assert run([original, loose], Dedup(DedupConfig(threshold=0.5)))[0] == [original]


def test_near_deduplication_can_be_switched_off():
    out, stats = run([HARBOUR, HARBOUR.replace("northern", "southern")], Dedup(DedupConfig(near=False)))
    assert len(out) == 2 and not stats


def test_the_step_runs_in_the_main_process_and_pickles_after_setup_too():
    step = Dedup()
    assert Dedup.parallel is False
    step.setup()
    run([HARBOUR], step)
    again = pickle.loads(pickle.dumps(step))
    assert run([HARBOUR.replace("river", "stream")], again)[0] == []


def test_shingles_are_word_or_character_ngrams():
    assert shingles("a b c d", "word", 2) == {b"a b", b"b c", b"c d"}
    assert shingles("abcd", "char", 3) == {b"abc", b"bcd"}
    assert shingles("a b", "word", 5) == {b"a b"}  # shorter than one shingle: itself
    assert canonical("  Hello\n\tWORLD ") == "hello world"


@pytest.mark.parametrize("options,match", [({"threshold": 1.0}, "threshold"), ({"shingle": "line"}, "shingle"), ({"num_perm": 4}, "num_perm")])
def test_bad_options_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        DedupConfig(**options)


def test_the_state_is_arrays_of_hashes_and_signatures_that_restore_the_index():
    import numpy as np

    step = Dedup()
    step.setup()
    run([HARBOUR, ORCHARD, HARBOUR.upper()], step)
    state = step.state()
    assert state["exact"].shape == (2, 16) and state["near"].shape == (2, 128)
    assert not state["exact"].dtype.hasobject and not state["near"].dtype.hasobject
    again = Dedup()
    again.setup()
    again.restore({"exact": state["exact"].copy(), "near": state["near"].copy()})
    assert run([HARBOUR.replace("river", "stream"), ORCHARD.lower()], again) == ([], Counter({"dropped:near_duplicate": 1, "dropped:exact_duplicate": 1}))
    with pytest.raises(ValueError, match="num_perm|expected"):
        Dedup(DedupConfig(num_perm=64)).restore({"exact": state["exact"], "near": state["near"]})
    with pytest.raises(ValueError, match="expected"):
        again.restore({"exact": np.zeros((1, 8), np.uint8), "near": state["near"]})
