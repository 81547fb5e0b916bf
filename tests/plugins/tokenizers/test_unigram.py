import pytest

from lmforge.plugins.tokenizers.unigram import Unigram, UnigramConfig
from lmforge.testing import TokenizerContract

ANY_TEXT = "Grüße 東京 🚀 \t\n\x00"


class TestUnigramContract(TokenizerContract):
    component = Unigram
    config = UnigramConfig(vocab_size=300)


class TestUnigramWithByteFallbackContract(TokenizerContract):
    component = Unigram
    config = UnigramConfig(vocab_size=600, byte_fallback=True)


def trained(tmp_path, **options):
    tok = Unigram(UnigramConfig(**{"vocab_size": 400, **options}))
    tok.train(iter(TokenizerContract.corpus))
    tok.save(tmp_path / "tokenizer.json")
    return tok, tmp_path / "tokenizer.json"


def test_special_tokens_get_their_roles_and_the_vocabulary_is_bounded(tmp_path):
    tok, _ = trained(tmp_path)
    assert tok.special_ids == {"unk": 0, "eos": 1, "pad": 2}
    assert 3 < tok.vocab_size <= 400


def test_spaces_become_metaspace_pieces(tmp_path):
    tok, _ = trained(tmp_path)
    pieces = [tok.tok.id_to_token(i) for i in tok.encode_batch(["the lazy dog"])[0]]
    assert "".join(pieces) == "▁the▁lazy▁dog"


def test_unseen_characters_become_unk_without_byte_fallback(tmp_path):
    tok, _ = trained(tmp_path)
    assert tok.special_ids["unk"] in tok.encode_batch(["\t"])[0]


def test_byte_fallback_round_trips_any_unicode_within_the_vocabulary(tmp_path):
    tok, _ = trained(tmp_path, vocab_size=600, byte_fallback=True)
    ids = tok.encode_batch([ANY_TEXT])[0]
    assert tok.decode(ids) == ANY_TEXT
    assert tok.tok.token_to_id("<0x00>") in ids and tok.special_ids["unk"] not in ids
    assert tok.vocab_size <= 600


@pytest.mark.parametrize("byte_fallback", [False, True])
def test_transformers_loads_the_file_with_the_same_ids(tmp_path, byte_fallback):
    transformers = pytest.importorskip("transformers")
    tok, path = trained(tmp_path, vocab_size=600, byte_fallback=byte_fallback)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path))
    for text in ["def add(a, b):\n    return a + b\n", ANY_TEXT + "</s>"]:
        assert fast(text, add_special_tokens=False)["input_ids"] == tok.encode_batch([text])[0]


def test_a_vocabulary_too_small_for_the_byte_pieces_is_refused():
    with pytest.raises(ValueError, match=r"vocab_size=200 .*byte pieces"):
        UnigramConfig(vocab_size=200, byte_fallback=True)
