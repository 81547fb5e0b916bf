import pytest

from lmforge.plugins.tokenizers.bpe import BPE, BPEConfig
from lmforge.testing import TokenizerContract


class TestBPEContract(TokenizerContract):
    component = BPE
    config = BPEConfig(vocab_size=300)


@pytest.fixture
def trained(tmp_path):
    tok = BPE(BPEConfig(vocab_size=400))
    tok.train(iter(TokenizerContract.corpus))
    tok.save(tmp_path / "tokenizer.json")
    return tok, tmp_path / "tokenizer.json"


def test_special_tokens_get_ids_and_the_vocabulary_is_bounded(trained):
    tok, _ = trained
    assert set(tok.special_ids) == {"eos", "pad"}
    assert 256 < tok.vocab_size <= 400


def test_round_trips_text_it_never_saw(trained):
    tok, _ = trained
    text = "Ωμέγα ✓ naïve\t\n\x00 end"
    assert tok.decode(tok.encode_batch([text])[0]) == text


def test_transformers_loads_the_file_with_the_same_ids(trained):
    transformers = pytest.importorskip("transformers")
    tok, path = trained
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path))
    for text in ["def add(a, b):\n    return a + b\n", "Grüße 東京 <|endoftext|>"]:
        assert fast(text, add_special_tokens=False)["input_ids"] == tok.encode_batch([text])[0]


def test_a_vocabulary_below_the_byte_alphabet_is_refused():
    with pytest.raises(ValueError, match="vocab_size=100"):
        BPEConfig(vocab_size=100)
