"""The stage cache: keys, atomic publication, locking and resume from complete pieces."""

from __future__ import annotations

import pytest

from lmforge.stages import StageCache, stage_key


def test_the_key_follows_config_versions_upstream_and_token():
    base = stage_key("collect", {"a": 1}, {"lmforge": "1"}, ["up"], "py3.11")
    assert base == stage_key("collect", {"a": 1}, {"lmforge": "1"}, ["up"], "py3.11")
    for changed in (
        stage_key("collect", {"a": 2}, {"lmforge": "1"}, ["up"], "py3.11"),
        stage_key("collect", {"a": 1}, {"lmforge": "2"}, ["up"], "py3.11"),
        stage_key("collect", {"a": 1}, {"lmforge": "1"}, ["other"], "py3.11"),
        stage_key("collect", {"a": 1}, {"lmforge": "1"}, ["up"], "py3.12"),
        stage_key("tokenize", {"a": 1}, {"lmforge": "1"}, ["up"], "py3.11"),
    ):
        assert changed != base


def test_a_stage_is_published_only_when_its_body_completes(tmp_path):
    cache = StageCache(tmp_path)
    with pytest.raises(RuntimeError):
        with cache.open("s", "k") as stage:
            (stage.dir / "piece").write_text("done")
            raise RuntimeError("crash")
    assert not cache.path("s", "k").exists()
    with cache.open("s", "k") as stage:
        assert not stage.hit and (stage.dir / "piece").read_text() == "done"  # the piece survived
    with cache.open("s", "k") as stage:
        assert stage.hit and stage.dir == cache.path("s", "k")


def test_a_published_stage_is_read_without_write_access(tmp_path):
    """A shared, read-only cache: the lock file cannot be opened for writing, yet a complete stage reads."""
    cache = StageCache(tmp_path)
    with cache.open("s", "k") as stage:
        (stage.dir / "report.json").write_text('{"documents": 3}')
    lock = tmp_path / "s" / "k.lock"
    lock.unlink()
    lock.mkdir()  # opening it for writing fails, even for root, as a read-only folder would
    with cache.open("s", "k") as stage:
        assert stage.hit and stage.report() == {"documents": 3}


def test_a_stage_that_cannot_be_built_names_the_cache_and_the_key(tmp_path):
    from lmforge.stages.cache import CacheError

    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(CacheError, match=r"cannot build stage s: cannot write .*file/s .*set cache_dir \(or \$LMFORGE_CACHE_DIR\)"):
        with StageCache(tmp_path / "file").open("s", "k"):
            pass
