"""Disk and permission faults are one line naming the path and the key that chose it.

Tests run as root, where permission bits do not stop a write. A path whose parent is a
regular file fails for root too (``NotADirectoryError``), so these tests put the run
directory or the cache under a file: the same error path a read-only folder takes.
"""

from __future__ import annotations

from support import TINY, lmforge


def test_a_run_directory_that_cannot_be_created_names_hydra_run_dir(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    proc = lmforge("train", *TINY, f"hydra.run.dir={tmp_path / 'file' / 'run'}", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"lmforge: error: hydra.run.dir={tmp_path / 'file' / 'run'}: cannot create the run directory, {tmp_path / 'file'} is a file" in proc.stderr


def test_a_cache_that_cannot_be_written_names_cache_dir(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    proc = lmforge("train", *TINY, f"cache_dir={tmp_path / 'file' / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    assert f"cannot write {tmp_path / 'file' / 'cache'}" in out and "set cache_dir (or $LMFORGE_CACHE_DIR) to a folder you can write" in out
