"""``lmforge.engine.checkpointing``: atomic saves, a full disk, stale temporary files, Ctrl-C."""

from __future__ import annotations

import errno
import os
import signal
import subprocess

import pytest
import torch

from lmforge import files
from lmforge.engine.checkpointing import AtomicCheckpointIO, DiskFullError, LastCheckpoint


class FillsUp:
    """A file on a disk that fills up after ``room`` bytes."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_full_disk_is_one_error_and_the_previous_checkpoint_is_intact(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.zeros(10)}, "global_step": 3}, path)
    before = path.read_bytes()
    monkeypatch.setattr(files, "open", lambda p, mode: FillsUp(open(p, mode), room=1000), raising=False)
    with pytest.raises(DiskFullError, match=rf"no space left on {path.parent} while saving last.ckpt .*the previous last.ckpt is kept"):
        io.save_checkpoint({"state_dict": {"w": torch.ones(100_000)}, "global_step": 4}, path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left


def finished_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_save_removes_the_temporary_files_of_killed_saves_only(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    stale = folder / f".last.ckpt.tmp-{finished_pid()}"
    live = folder / f".best-step4.ckpt.tmp-{os.getppid()}"  # a writer that is still running
    stale.write_bytes(b"half"), live.write_bytes(b"half")
    AtomicCheckpointIO().save_checkpoint({"state_dict": {}, "global_step": 1}, folder / "last.ckpt")
    assert not stale.exists() and live.exists()


def test_ctrl_c_during_fit_asks_lightning_to_stop_as_for_sigterm_and_a_second_ends_the_process(tmp_path):
    """Within ``ctrl_c_saves`` the first SIGINT calls the SIGTERM handler (Lightning's, during fit)."""
    last = LastCheckpoint(tmp_path)
    called = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: called.append(signum))
    try:
        with last.ctrl_c_saves():
            os.kill(os.getpid(), signal.SIGINT)
        assert called == [signal.SIGTERM] and last.stopped_by == "SIGINT" and last.exit_code == 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored after fit
