import pytest

from lmforge.plugins.tokenizers.word import Word, WordConfig
from lmforge.testing import TokenizerContract

PROSE = "Don't panic! It's (like) a well-known fact: 3.14, or so... They'll see."


class TestWordContract(TokenizerContract):
    component = Word
    config = WordConfig(vocab_size=300, min_frequency=1)
    round_trip = False  # whitespace is not kept and unseen words become [UNK]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("word") / "tokenizer.json"
    tok = Word(WordConfig(vocab_size=400))
    tok.train(iter([*TokenizerContract.corpus, PROSE, PROSE, "once"]))
    tok.save(path)
    return tok, path


def test_the_pre_tokenizer_splits_english_as_spacy_does(trained):
    import spacy

    tok, _ = trained
    words = [w for w, _ in tok.tok.pre_tokenizer.pre_tokenize_str(PROSE)]
    assert words == [t.text for t in spacy.blank("en")(PROSE) if not t.is_space]


def test_words_below_min_frequency_become_unk(trained):
    tok, _ = trained
    ids = tok.encode_batch(["panic once"])[0]
    assert ids[0] != tok.special_ids["unk"] and ids[1] == tok.special_ids["unk"]


def test_the_vocabulary_keeps_the_most_frequent_words(tmp_path):
    tok = Word(WordConfig(vocab_size=5, min_frequency=1))
    tok.train(iter(["a a a b b c", "a b"]))
    assert tok.vocab_size == 5 and tok.special_ids == {"pad": 0, "unk": 1, "eos": 2}
    assert tok.encode_batch(["a b c"])[0] == [3, 4, 1]


def test_decoding_joins_words_with_single_spaces(trained):
    tok, _ = trained
    assert tok.decode(tok.encode_batch(["def  add(a,\n b)"])[0]) == "def add(a , b )"


def test_transformers_loads_the_file_with_the_same_ids(trained):
    transformers = pytest.importorskip("transformers")
    tok, path = trained
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path))
    for text in [PROSE, "def add(a, b):\n    return a + b\n", "Grüße 東京 [EOS] [UNK] never-seen"]:
        assert fast(text, add_special_tokens=False)["input_ids"] == tok.encode_batch([text])[0]


def test_the_spacy_version_is_part_of_the_cache_key():
    assert Word().cache_token().startswith("spacy-")


def test_an_unknown_language_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match=r"tokenizer.lang='zz'"):
        Word(WordConfig(lang="zz")).train(iter(["x"]))
