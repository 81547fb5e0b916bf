import json

import pytest
from support import lmforge, smoke_run

from lmforge.plugins.tokenizers.byte import Byte, ByteConfig, byte_alphabet
from lmforge.testing import TokenizerContract

ANY_TEXT = "Grüße 東京 🚀 \t\n\x00"


class TestByteContract(TokenizerContract):
    component = Byte
    config = ByteConfig()


@pytest.fixture
def saved(tmp_path):
    tok = Byte()
    tok.save(tmp_path / "tokenizer.json")
    return tok, tmp_path / "tokenizer.json"


def test_needs_no_training_and_ids_are_the_utf8_bytes_then_the_special_tokens(saved):
    tok, _ = saved
    assert not Byte.trainable
    assert tok.encode_batch([ANY_TEXT])[0] == list(ANY_TEXT.encode("utf-8"))
    assert tok.special_ids == {"eos": 256, "pad": 257} and tok.vocab_size == 258


def test_round_trips_any_unicode_exactly(saved):
    tok, _ = saved
    for text in [ANY_TEXT, "", "\r\n\u200b\ufeff", "x<|endoftext|>y"]:
        assert tok.decode(tok.encode_batch([text])[0]) == text


def test_the_alphabet_is_gpt2s_byte_level_one():
    from tokenizers import pre_tokenizers

    alphabet = byte_alphabet()
    assert len(set(alphabet)) == 256 and set(alphabet) == set(pre_tokenizers.ByteLevel.alphabet())
    assert alphabet[ord("A")] == "A" and alphabet[ord(" ")] == "Ġ"


def test_the_bytes_shortcut_gives_the_hugging_face_ids(saved):
    """Texts without special-token strings skip the BPE machinery; the ids must not change."""
    tok, _ = saved
    texts = [ANY_TEXT, "a<|pad|>b<|endoftext|>", "plain", "<|endoftext|>"]
    slow = [e.ids for e in tok.tok.encode_batch(texts, add_special_tokens=False)]
    assert tok.encode_batch(texts) == slow
    assert slow[1][1] == 257 and slow[3] == [256]


def test_transformers_loads_the_file_with_the_same_ids(saved):
    transformers = pytest.importorskip("transformers")
    tok, path = saved
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path))
    for text in [ANY_TEXT, "def f():\n    return 1<|endoftext|>"]:
        ids = fast(text, add_special_tokens=False)["input_ids"]
        assert ids == tok.encode_batch([text])[0]
        assert fast.decode(ids) == text


def test_a_missing_eos_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"special_tokens.eos"):
        ByteConfig(special_tokens={"pad": "<|pad|>"})


def test_lmforge_train_runs_end_to_end_on_bytes(tmp_path):
    quick = smoke_run(drop=["tokenizer.vocab_size"])
    run, cache = tmp_path / "run", tmp_path / "cache"
    lmforge(
        "train", "tokenizer=byte", *quick, f"hydra.run.dir={run}",
        cwd=tmp_path, env={"LMFORGE_CACHE_DIR": str(cache), "LMFORGE_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    report = json.loads((run / "manifest.json").read_text())["data"]["tokenize"]
    assert report["special_ids"] == {"eos": 256, "pad": 257} and report["vocab_size"] == 258
    assert report["tokens"] == report["text_bytes"] + report["documents"]  # one id per byte, one eos per document
    assert (run / "summary.json").is_file()
