"""The tokenize stage: token shards that decode back, and the split by document."""

from __future__ import annotations

from sample_collectors import Numbers

from lmforge.stages.collect import collect
from lmforge.stages.shards import read_documents, shard_paths
from lmforge.stages.tokenize import load_shards, split_tokens, tokenize


def test_tokenize_writes_shards_that_decode_back_and_split_by_document(tmp_path):
    from lmforge.plugins.tokenizers.bpe import BPE, BPEConfig

    src, out = tmp_path / "src", tmp_path / "tok"
    src.mkdir(), out.mkdir()
    collect(Numbers(40), src, shard_bytes=5_000)
    tok = BPE(BPEConfig(vocab_size=300))
    report = tokenize(tok, src, out)
    assert report["documents"] == 40 and report["dtype"] == "uint16" and report["bytes_per_token"] > 1
    shard = load_shards(out)[0]
    first = shard.tokens[shard.offsets[0] : shard.offsets[1]].tolist()
    assert first[-1] == tok.special_ids["eos"]
    assert tok.decode(first[:-1]) == next(read_documents(shard_paths(src))).text
    train, val, _ = split_tokens(out, 0.25)
    train2, val2, _ = split_tokens(out, 0.25)
    assert len(train) + len(val) == report["tokens"] and len(val) > 0
    assert (train == train2).all() and (val == val2).all()


def test_token_shards_leave_no_temporary_files(tmp_path):
    from lmforge.plugins.tokenizers.byte import Byte

    src, out = tmp_path / "src", tmp_path / "tok"
    src.mkdir(), out.mkdir()
    collect(Numbers(40), src, shard_bytes=5_000)
    tokenize(Byte(), src, out)
    names = sorted(p.name for p in out.iterdir())
    assert len(shard_paths(src)) == len(load_shards(out)) and all(not n.startswith(".") for n in names)
