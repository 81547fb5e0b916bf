"""The tokenize stage, which trains the tokenizer and writes token shards, and their reader.

Shard i of the preprocessed corpus becomes ``tokens-0000i.bin``, a flat array of ids
(uint16 when the vocabulary fits, else uint32) read back with ``numpy.memmap``, and
``tokens-0000i.npz`` with the document boundaries (``offsets``, N+1 entries) and a
64-bit hash of each document id (``id_hash``) used for the train/validation split.
Both are written with ``lmforge.files.atomic_write``; the ``.npz`` is written last and
marks the shard complete.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from lmforge.contracts import Tokenizer
from lmforge.errors import DataError
from lmforge.files import atomic_write, atomic_write_json
from lmforge.stages.shards import read_documents, shard_paths

ENCODE_BATCH = 1024  # documents per encode_batch call: large enough to keep every core busy


def id_hash(doc_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "little")


def is_validation(hashes: np.ndarray, val_fraction: float) -> np.ndarray:
    """Deterministic split by document: the same id lands on the same side in every run."""
    return (hashes % np.uint64(1_000_000)) < np.uint64(round(val_fraction * 1_000_000))


def _texts(src: Path) -> Iterator[str]:
    for doc in read_documents(shard_paths(src)):
        yield doc.text


def _separator(tokenizer: Tokenizer) -> int | None:
    ids = tokenizer.special_ids
    return ids.get("eos", ids.get("sep"))


def tokenize(tokenizer: Tokenizer, src: Path, out: Path) -> dict:
    """Train (unless already trained in ``out``) and encode every shard; returns stats."""
    tok_file = out / "tokenizer.json"
    if tok_file.exists():
        tokenizer.load(tok_file)
    else:
        if tokenizer.trainable:
            tokenizer.train(_texts(src))
        tokenizer.save(tok_file)
    dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32
    sep = _separator(tokenizer)
    for shard in shard_paths(src):
        stem = out / shard.name.replace("docs-", "tokens-").replace(".parquet", "")
        if stem.with_suffix(".npz").exists():
            continue
        _encode_shard(tokenizer, shard, stem, dtype, sep)
    meta = token_stats(out)
    meta.update(vocab_size=tokenizer.vocab_size, dtype=np.dtype(dtype).name, special_ids=tokenizer.special_ids)
    atomic_write_json(out / "report.json", meta)
    return meta


def _encode_shard(tokenizer: Tokenizer, shard: Path, stem: Path, dtype, sep: int | None) -> None:
    # Reads only the two columns it needs and writes one array per batch: per-document
    # Python work (Document objects, a write per document) would cost as much as encoding
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    lengths, hashes, nbytes = [], [], 0

    def write_batches(f) -> None:  # batch by batch into the file: the shard is never whole in memory
        nonlocal nbytes
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=ENCODE_BATCH, columns=["id", "text"]):
            if not batch.num_rows:
                continue
            texts = batch.column("text")
            encoded = tokenizer.encode_batch(texts.to_pylist())
            counts = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
            ids = np.concatenate([np.asarray(e, dtype=dtype) for e in encoded])
            if sep is not None:
                ids = np.insert(ids, np.cumsum(counts), sep)  # after each document's last token
                counts += 1
            ids.tofile(f)
            lengths.append(counts)
            hashes.extend(map(id_hash, batch.column("id").to_pylist()))
            nbytes += pc.sum(pc.binary_length(texts)).as_py() or 0

    atomic_write(stem.with_suffix(".bin"), write_batches)
    counts = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    index = {"offsets": offsets, "id_hash": np.asarray(hashes, np.uint64), "text_bytes": nbytes}
    atomic_write(stem.with_suffix(".npz"), lambda f: np.savez(f, **index))


@dataclass
class TokenShard:
    tokens: np.ndarray  # memory-mapped ids
    offsets: np.ndarray  # (N+1,) document boundaries
    id_hash: np.ndarray  # (N,)
    text_bytes: int


def load_shards(folder: Path) -> list[TokenShard]:
    report = folder / "report.json"
    dtype = np.dtype(json.loads(report.read_text())["dtype"]) if report.exists() else None
    shards = []
    for npz in sorted(folder.glob("tokens-*.npz")):
        index = np.load(npz)
        bin_path = npz.with_suffix(".bin")
        if dtype is None:  # report not written yet (called while the stage runs)
            itemsize = bin_path.stat().st_size // max(int(index["offsets"][-1]), 1)
            dtype = np.dtype(np.uint16 if itemsize == 2 else np.uint32)
        tokens = np.memmap(bin_path, dtype=dtype, mode="r") if bin_path.stat().st_size else np.zeros(0, dtype)
        shards.append(TokenShard(tokens, index["offsets"], index["id_hash"], int(index["text_bytes"])))
    return shards


def token_stats(folder: Path) -> dict:
    shards = load_shards(folder)
    tokens = sum(int(s.offsets[-1]) for s in shards)
    nbytes = sum(s.text_bytes for s in shards)
    docs = sum(len(s.id_hash) for s in shards)
    return {
        "documents": docs,
        "tokens": tokens,
        "text_bytes": nbytes,
        "bytes_per_token": round(nbytes / tokens, 4) if tokens else None,
        "shards": len(shards),
    }


def _split_flags(shards: list[TokenShard], val_fraction: float) -> list[np.ndarray]:
    """Per shard, which documents are validation ones."""
    flags = [is_validation(s.id_hash, val_fraction) for s in shards]
    ndocs = sum(len(f) for f in flags)
    if ndocs > 1 and not any(f.any() for f in flags):
        ranks = [(int((s.id_hash % np.uint64(1_000_000)).min()), i) for i, s in enumerate(shards) if len(s.id_hash)]
        i = min(ranks)[1]
        flags[i][np.argmin(shards[i].id_hash % np.uint64(1_000_000))] = True
    return flags


def split_starts(folder: Path, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Where each document starts in ``split_tokens``' train and validation arrays, from
    the shards' ``offsets``: what document-masked attention needs (``model.attention``)."""
    shards = load_shards(folder)
    lengths: tuple[list, list] = ([], [])
    for shard, is_val in zip(shards, _split_flags(shards, val_fraction)):
        sizes = np.diff(shard.offsets)
        lengths[0].append(sizes[~is_val])
        lengths[1].append(sizes[is_val])
    starts = lambda parts: np.concatenate([[0], np.cumsum(np.concatenate(parts))[:-1]]).astype(np.int64) if parts else np.zeros(1, np.int64)  # noqa: E731
    return starts(lengths[0]), starts(lengths[1])


def split_tokens(folder: Path, val_fraction: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Concatenate the documents of each split; returns (train, val, bytes per token).

    A corpus too small for any document to fall in the validation share still gets one:
    the document whose id hash ranks first, so the split stays deterministic.
    """
    shards = load_shards(folder)
    flags = _split_flags(shards, val_fraction)
    train, val = [], []
    for shard, is_val in zip(shards, flags):
        for i, flag in enumerate(is_val):
            (val if flag else train).append(shard.tokens[shard.offsets[i] : shard.offsets[i + 1]])
    if not train and not val:
        raise DataError("the tokenized corpus is empty: the collector and preprocess steps produced no text")
    nbytes, ntok = sum(s.text_bytes for s in shards), sum(int(s.offsets[-1]) for s in shards)
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64)  # noqa: E731
    return cat(train), cat(val), nbytes / max(ntok, 1)
