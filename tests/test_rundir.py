"""Run directories: a default one is claimed new, any one is locked while its run lives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from support import lmforge, smoke_run

from lmforge import rundir


def start(cwd: Path, *args: str) -> subprocess.Popen:
    """``lmforge train`` with the smoke preset, started and left running."""
    return subprocess.Popen(
        [sys.executable, "-m", "lmforge.cli", "train", *smoke_run(), *args],
        cwd=cwd, env={**os.environ, "PYTHONWARNINGS": "ignore"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def seeds(run_dir: Path) -> tuple[int, int]:
    """The seed ``config.yaml`` records, and the one the run's ``manifest.json`` says it trained with."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    return config["seed"], json.loads((run_dir / "manifest.json").read_text())["seed"]


@pytest.mark.slow  # about 50 s: the second run waits on the first's stages in the shared cache
def test_two_runs_started_at_once_in_one_folder_get_a_directory_each(tmp_path):
    """Every default directory of the next two minutes is taken already, so both runs must
    add a suffix; started together, they race for the same suffixed names."""
    now = datetime.now()
    taken = {tmp_path / "outputs" / f"{t:%Y-%m-%d}" / f"{t:%H-%M-%S}" for t in (now + timedelta(seconds=s) for s in range(-2, 120))}
    for folder in taken:
        folder.mkdir(parents=True)
    procs = [start(tmp_path, "seed=1"), start(tmp_path, "seed=2")]
    results = [finish(p) for p in procs]
    assert [rc for rc, _ in results] == [0, 0], "\n".join(out for _, out in results)
    assert all(not any(folder.iterdir()) for folder in taken)  # nothing was written into a folder already there
    runs = sorted(p.parent for p in tmp_path.glob("outputs/*/*/config.yaml"))
    assert len(runs) == 2 and all(p.name.rsplit("-", 1)[1] in ("1", "2") for p in runs)
    assert sorted(seeds(p) for p in runs) == [(1, 1), (2, 2)]
    for (_, out), seed in zip(results, (1, 2)):
        (mine,) = [p for p in runs if seeds(p)[0] == seed]
        assert f"run directory {mine}" in out


def test_a_second_run_given_the_same_directory_stops_at_once_and_the_first_completes(tmp_path):
    shared = tmp_path / "shared-run"
    procs = [start(tmp_path, "seed=1", f"hydra.run.dir={shared}"), start(tmp_path, "seed=2", f"hydra.run.dir={shared}")]
    results = [finish(p) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], "\n".join(out for _, out in results)
    winner, loser = (0, 1) if results[0][0] == 0 else (1, 0)
    refused = results[loser][1]
    assert f"run directory {shared} is in use by another lmforge run (pid {procs[winner].pid})" in refused
    assert "hydra.run.dir=<another folder>" in refused and "Traceback" not in refused
    assert "stage" not in refused  # refused before any stage
    assert seeds(shared) == (winner + 1, winner + 1)
    assert (shared / "summary.json").is_file() and (shared / "checkpoints" / "last.ckpt").is_file()


def test_a_taken_default_directory_gets_the_next_suffix_and_the_claim_is_remembered(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rundir, "_claimed", {})
    monkeypatch.setattr(rundir, "_held", {})
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "outputs" / "day" / "12-00-00").mkdir(parents=True)
    (tmp_path / "outputs" / "day" / "12-00-00-1").mkdir()
    assert rundir.claim("outputs/day/12-00-00") == "outputs/day/12-00-00-2"
    assert rundir.claim("outputs/day/12-00-00") == "outputs/day/12-00-00-2"  # Hydra resolves the key again
    assert rundir.claim("outputs/day/12-00-01") == "outputs/day/12-00-01"
    assert (tmp_path / "outputs" / "day" / "12-00-00-2" / rundir.LOCK).read_text() == f"{os.getpid()}\n"
    for folder in list(rundir._held):
        rundir.release(folder)


def test_the_default_run_dir_goes_through_the_claiming_resolver():
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "train.yaml").read_text())
    assert config["hydra"]["run"]["dir"] == "${lmforge.unique_dir:outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}}"


HOLD = "import sys; from pathlib import Path; from lmforge import rundir; rundir.lock(Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()"


@pytest.fixture
def held(tmp_path):
    """A run directory that another process holds, until the test ends."""
    folder = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    yield folder, proc.pid
    proc.stdin.close()
    proc.wait(timeout=30)


def test_a_held_directory_is_refused_with_the_owner_and_the_fix(held, monkeypatch):
    folder, pid = held
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(rundir.RunDirBusy, match=rf"{folder} is in use by another lmforge run \(pid {pid}\).*hydra.run.dir=<another folder>"):
        rundir.lock(folder)


def test_the_lock_goes_with_the_process_that_held_it(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir, "_held", {})
    folder = tmp_path / "run"
    subprocess.run([sys.executable, "-c", HOLD, str(folder)], input="", text=True, check=True, capture_output=True)
    with rundir.locked(folder):  # the holder exited: the folder is free again
        assert (folder / rundir.LOCK).read_text() == f"{os.getpid()}\n"


@pytest.mark.parametrize("variable", ["LOCAL_RANK", "RANK", "SLURM_PROCID"])
def test_ranks_after_the_first_neither_claim_nor_lock(held, variable, monkeypatch, tmp_path):
    """A DDP rank works in its rank 0's directory, which rank 0 holds."""
    folder, _ = held
    monkeypatch.setenv(variable, "1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rundir, "_claimed", {})
    rundir.lock(folder)  # no RunDirBusy
    assert rundir.claim("outputs/x") == "outputs/x" and not (tmp_path / "outputs").exists()


def test_a_run_refused_by_the_config_check_leaves_no_directory_even_with_its_lock_file(tmp_path):
    proc = lmforge("train", "model.n_layer=banana", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_the_ranks_lightning_starts_work_in_the_directory_rank_0_claimed(tmp_path):
    now = datetime.now()
    for t in (now + timedelta(seconds=s) for s in range(-2, 120)):  # rank 0 must claim a suffixed name
        (tmp_path / "outputs" / f"{t:%Y-%m-%d}" / f"{t:%H-%M-%S}").mkdir(parents=True)
    lmforge("train", *smoke_run(), "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", cwd=tmp_path)
    used = [p for p in tmp_path.glob("outputs/*/*") if any(p.iterdir())]
    assert len(used) == 1 and used[0].name.endswith("-1")
    assert (used[0] / "train_ddp_process_1.log").is_file() and (used[0] / "summary.json").is_file()
