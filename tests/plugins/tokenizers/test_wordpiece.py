import json

import numpy as np
import pytest
from support import lmforge, smoke_run

from lmforge.plugins.tokenizers.wordpiece import WordPiece, WordPieceConfig
from lmforge.testing import TokenizerContract


class TestWordPieceContract(TokenizerContract):
    component = WordPiece
    config = WordPieceConfig(vocab_size=300)
    round_trip = False  # lower-cases and normalises whitespace, as BERT does


@pytest.fixture
def trained(tmp_path):
    tok = WordPiece(WordPieceConfig(vocab_size=400))
    tok.train(iter(TokenizerContract.corpus))
    tok.save(tmp_path / "tokenizer.json")
    return tok, tmp_path / "tokenizer.json"


def test_bert_special_tokens_get_their_roles_first_and_the_vocabulary_is_bounded(trained):
    tok, _ = trained
    assert tok.special_ids == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert [tok.tok.id_to_token(i) for i in range(5)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert 5 < tok.vocab_size <= 400


def test_lowercases_splits_into_continuation_pieces_and_decodes_up_to_case(trained):
    tok, _ = trained
    ids = tok.encode_batch(["The QUICK brown fox jumped."])[0]
    pieces = [tok.tok.id_to_token(i) for i in ids]
    assert pieces[:3] == ["the", "quick", "brown"] and any(p.startswith("##") for p in pieces)
    assert tok.decode(ids) == "the quick brown fox jumped."


def test_unseen_characters_become_unk(trained):
    tok, _ = trained
    assert tok.special_ids["unk"] in tok.encode_batch(["ℵ"])[0]


def test_transformers_loads_the_file_with_the_same_ids(trained):
    transformers = pytest.importorskip("transformers")
    tok, path = trained
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path))
    for text in ["The quick brown fox.", "def add(a, b):\n    return a + b\n", "Grüße 東京 [SEP] [MASK] ℵ"]:
        assert fast(text, add_special_tokens=False)["input_ids"] == tok.encode_batch([text])[0]


def test_the_saved_file_adds_no_separators_itself(trained):
    """The tokenize stage appends [SEP] after each document, so the file has no post-processor."""
    _, path = trained
    assert json.loads(path.read_text())["post_processor"] is None


def test_a_missing_unk_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"special_tokens.unk"):
        WordPieceConfig(special_tokens={"sep": "[SEP]"})


def test_lmforge_train_runs_end_to_end_with_sep_between_documents(tmp_path):
    from lmforge.stages.tokenize import load_shards

    quick = smoke_run()
    run, cache = tmp_path / "run", tmp_path / "cache"
    lmforge(
        "train", "tokenizer=wordpiece", *quick, f"hydra.run.dir={run}",
        cwd=tmp_path, env={"LMFORGE_CACHE_DIR": str(cache), "LMFORGE_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    report = json.loads((run / "manifest.json").read_text())["data"]["tokenize"]
    assert report["vocab_size"] <= 512 and report["special_ids"]["sep"] == 3
    (folder,) = {npz.parent for npz in cache.rglob("tokens-*.npz")}
    for shard in load_shards(folder):
        assert np.all(shard.tokens[shard.offsets[1:] - 1] == 3)  # every document ends with [SEP]
