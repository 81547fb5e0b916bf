"""lmforge's Hydra sweeper, driven through a synthetic Hydra app (no training) in a subprocess."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPO, lmforge

APP = REPO / "tests" / "plugins" / "tuners" / "synthetic_app.py"
sys.path.insert(0, str(APP.parent))
from synthetic_app import CONFIG, SHIFT, objective  # noqa: E402

QUIET = ["hydra/job_logging=disabled", "hydra.output_subdir=null"]


def sweep(tmp_path: Path, *args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(APP), "-m", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"sweep exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def state(sweep_dir: Path) -> tuple[dict, list[dict]]:
    rows = [json.loads(line) for line in (sweep_dir / "sweep_state.jsonl").read_text().splitlines()]
    return rows[0]["header"], rows[1:]


def test_finds_a_point_near_the_optimum(tmp_path):
    """NGOpt on a shifted 2-D sphere ends within 0.1 of the optimum in 15 trials."""
    sweep(tmp_path, "tuner=nevergrad", "function=sphere", "dim=2", "x0=interval(-2,2)", "x1=interval(-2,2)",
          "hydra.sweeper.budget=15", *QUIET)
    best = json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())["best"]
    params = dict(o.split("=") for o in best["overrides"])
    distance = math.dist([float(params["x0"]), float(params["x1"])], SHIFT[:2])
    assert distance < 0.1, f"best point {params} is {distance:.2f} from the optimum {SHIFT[:2]}"
    assert best["value"] == pytest.approx(objective("sphere", [float(params["x0"]), float(params["x1"])]))


def test_a_trial_that_raises_or_returns_nan_is_failed_and_the_sweep_goes_on(tmp_path):
    sweep(tmp_path, "tuner=grid", "function=sphere", "dim=1", "x0=choice(-1.5,0.5,1.5,0.65)", "fail_above=1", "nan_below=-1",
          "hydra.sweeper.max_failure_rate=1.0", *QUIET)
    _, rows = state(tmp_path / "sweep")
    by_number = {r["number"]: r for r in rows}
    assert [by_number[n]["status"] for n in range(4)] == ["failed", "ok", "failed", "ok"]
    assert "non-finite" in by_number[0]["error"] and "RuntimeError: x0=1.5 is above fail_above" in by_number[2]["error"]
    best = json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())["best"]
    assert best["number"] == 3  # 0.65 is nearest to the optimum at 0.6; failures never win


def test_max_failure_rate_stops_the_sweep(tmp_path):
    proc = sweep(tmp_path, "tuner=grid", "function=sphere", "dim=1", "x0=choice(1.5,1.6,1.7,0.5,0.6)", "fail_above=1",
                 "hydra.sweeper.max_failure_rate=0.5", "hydra.sweeper.min_failures=2", *QUIET, check=False)
    assert proc.returncode != 0
    assert "max_failure_rate=0.5" in proc.stderr + proc.stdout
    _, rows = state(tmp_path / "sweep")
    assert [r["status"] for r in rows] == ["failed", "failed"]  # stopped before trying the rest
    assert (tmp_path / "sweep" / "sweep_results.csv").is_file()  # the report is still written


def test_a_killed_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    calls = tmp_path / "calls.txt"
    args = ["tuner=nevergrad", "function=sphere", "dim=2", "x0=interval(-2,2)", "x1=interval(-2,2)", "sleep=0.15",
            f"calls={calls}", "hydra.sweeper.budget=8", "hydra.sweeper.num_workers=2", *QUIET]
    proc = subprocess.Popen([sys.executable, str(APP), "-m", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = tmp_path / "sweep" / "sweep_state.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if state_file.is_file() and len(state_file.read_text().splitlines()) >= 1 + 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, before = state(tmp_path / "sweep")
    assert 3 <= len(before) < 8, "the sweep must be killed mid-way for this test to mean anything"

    sweep(tmp_path, *args)
    _, after = state(tmp_path / "sweep")
    numbers = sorted(r["number"] for r in after)
    assert numbers == list(range(8))
    ran = [int(n) for n in calls.read_text().split()]
    for record in before:
        assert ran.count(record["number"]) == 1, f"finished trial {record['number']} ran again"
        assert next(r for r in after if r["number"] == record["number"]) == record
    rows = (tmp_path / "sweep" / "sweep_results.csv").read_text().splitlines()[1:]
    assert sorted(int(r.split(",")[0]) for r in rows) == list(range(8))


@pytest.mark.slow
def test_replayed_asks_match_on_resume(tmp_path):
    """Resuming a finished sweep with a larger budget replays every trial and runs only the new ones."""
    calls = tmp_path / "calls.txt"
    common = ["tuner=bayes", "function=sphere", "dim=2", "x0=interval(-2,2)", "x1=interval(-2,2)", f"calls={calls}", *QUIET]
    sweep(tmp_path, *common, "hydra.sweeper.budget=5")
    first = state(tmp_path / "sweep")[1]
    proc = sweep(tmp_path, *common, "hydra.sweeper.budget=7")
    assert "on resume but recorded" not in proc.stdout + proc.stderr  # same seed, same tells: same asks
    assert sorted(int(n) for n in calls.read_text().split()) == list(range(7))
    assert state(tmp_path / "sweep")[1][:5] == first


def test_a_sweep_dir_holding_another_search_is_refused(tmp_path):
    sweep(tmp_path, "tuner=random", "x0=interval(-2,2)", "hydra.sweeper.budget=2", *QUIET)
    proc = sweep(tmp_path, "tuner=random", "x0=interval(-1,1)", "hydra.sweeper.budget=2", *QUIET, check=False)
    assert proc.returncode != 0 and "pick a new hydra.sweep.dir" in proc.stderr


@pytest.mark.slow
def test_joblib_launcher_runs_a_batch_in_parallel(tmp_path):
    sweep(tmp_path, "tuner=random", "function=sphere", "dim=2", "x0=interval(-2,2)", "x1=interval(-2,2)",
          "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.num_workers=2", "hydra.sweeper.budget=4", *QUIET)
    _, rows = state(tmp_path / "sweep")
    assert sorted(r["number"] for r in rows) == [0, 1, 2, 3] and all(r["status"] == "ok" for r in rows)
    assert len({r["run_dir"] for r in rows}) == 4


def test_report_files_and_best_yaml_rerun(tmp_path):
    from hydra import compose, initialize
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from lmforge import hydra_bridge

    sweep(tmp_path, "tuner=random", "function=rosenbrock", "x0=interval(-2,2)", "x1=interval(-2,2)", "x2=choice(0.9,0.0)",
          "hydra.sweeper.budget=6", *QUIET)
    sweep_dir = tmp_path / "sweep"
    for name in ("optimization_history.png", "parallel_coordinates.png"):
        assert (sweep_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (sweep_dir / name).stat().st_size > 5000
    header = (sweep_dir / "sweep_results.csv").read_text().splitlines()[0]
    assert header == "number,x0,x1,x2,val_loss,status,duration_s,run_dir,error,steps"
    best = OmegaConf.to_container(OmegaConf.load(sweep_dir / "best.yaml"))
    hydra_bridge.install()
    ConfigStore.instance().store(name="synthetic", node=CONFIG)
    with initialize(version_base="1.3", config_path=None):
        cfg = compose("synthetic", overrides=best["overrides"])
    assert objective(cfg.function, [cfg[f"x{i}"] for i in range(4)]) == pytest.approx(best["value"])

    for name in ("sweep_results.csv", "best.yaml", "optimization_history.png", "parallel_coordinates.png"):
        (sweep_dir / name).unlink()
    lmforge("sweep-report", str(sweep_dir), cwd=tmp_path)
    for name in ("sweep_results.csv", "best.yaml", "optimization_history.png", "parallel_coordinates.png"):
        assert (sweep_dir / name).stat().st_size > 0
    assert OmegaConf.to_container(OmegaConf.load(sweep_dir / "best.yaml")) == best


def test_multirun_with_a_tuner_selects_lmforges_sweeper(tmp_path):
    """No hydra/sweeper= needed: the CLI adds it, and the sweeper asks for a search space."""
    proc = lmforge("train", "-m", "tuner=random", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "the sweep has nothing to search" in proc.stderr


def test_the_tune_tiny_preset_selects_the_sweeper_and_a_search_space():
    from hydra import compose, initialize_config_module
    from omegaconf import open_dict

    from lmforge import hydra_bridge

    hydra_bridge.install()
    with initialize_config_module(config_module="lmforge.conf", version_base="1.3"):
        cfg = compose("train", overrides=["experiment=tune_tiny"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("LmforgeSweeper") and cfg.hydra.sweeper.pruner.kind == "median"
    assert cfg.tuner.name == "bayes" and set(cfg.tuner.params) == {"optimizer.lr", "model.n_layer"}
    with open_dict(cfg):
        del cfg["hydra"]
    assert hydra_bridge.check(cfg).tuner.name == "bayes"


@pytest.mark.slow
def test_plain_multirun_runs_every_combination_and_writes_a_results_table(tmp_path):
    """Hydra's basic sweeper, no tuner: 4 trials, 4 run directories, one table by the callback."""
    from support import smoke_run

    sweep_dir = tmp_path / "sweep"
    lmforge("train", "-m", "model=rnn,transformer", "preprocess=none,normalize", *smoke_run(drop=("model.n_head",)),
            f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert len(list(sweep_dir.glob("*/summary.json"))) == 4
    lines = (sweep_dir / "sweep_results.csv").read_text().splitlines()
    assert lines[0].startswith("number,model,preprocess,val_loss,status")
    rows = sorted(line.split(",")[:5] for line in lines[1:])
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        ("0", "rnn", "none", "ok"), ("1", "rnn", "normalize", "ok"), ("2", "transformer", "none", "ok"), ("3", "transformer", "normalize", "ok")
    ]
    assert (sweep_dir / "best.yaml").is_file() and (sweep_dir / "optimization_history.png").stat().st_size > 0


@pytest.mark.slow
def test_a_tuned_sweep_of_tiny_training_runs_prunes_the_bad_trials(tmp_path):
    """4 real trials: two good learning rates, then two hopeless ones the median pruner stops."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf
    from support import smoke_run

    from lmforge import hydra_bridge

    sweep_dir = tmp_path / "sweep"
    base = smoke_run(drop=("optimizer.lr", "trainer.max_steps", "trainer.val_check_interval"))
    proc = lmforge("train", "-m", "tuner=grid", "optimizer.lr=choice(5e-3,4e-3,1e-7,2e-7)", *base, "trainer.max_steps=12",
                   "trainer.val_check_interval=4", "hydra.sweeper.pruner.kind=median", "hydra.sweeper.pruner.n_startup_trials=2",
                   f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    _, rows = state(sweep_dir)
    assert [r["status"] for r in sorted(rows, key=lambda r: r["number"])] == ["ok", "ok", "pruned", "pruned"]
    for r in rows:
        steps = json.loads((Path(r["run_dir"]) / "summary.json").read_text())["steps"]
        assert steps == (12 if r["status"] == "ok" else 4), (r["number"], steps)
    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert summary["budget_saved"] == pytest.approx(16 / 48)  # 2 trials x 8 steps not run, of 4 x 12
    assert "pruning saved 33% of the training steps" in proc.stdout + proc.stderr
    for name in ("optimization_history.png", "parallel_coordinates.png"):
        assert (sweep_dir / name).stat().st_size > 5000

    best = OmegaConf.to_container(OmegaConf.load(sweep_dir / "best.yaml"))
    assert best["number"] == 0 and "optimizer.lr=0.005" in best["overrides"]
    hydra_bridge.install()
    with initialize_config_module(config_module="lmforge.conf", version_base="1.3"):
        cfg = compose("train", overrides=best["overrides"])
    assert cfg.optimizer.lr == 0.005 and cfg.trainer.max_steps == 12 and cfg.tuner.name == "grid"
    hydra_bridge.check(cfg)


def test_a_search_space_key_the_config_lacks_is_refused_before_the_first_trial(tmp_path):
    """Through the real CLI: exit 2, an lmforge error naming the key, no trial run."""
    proc = lmforge("train", "-m", "tuner=random", "model.no_such_key=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "lmforge: error:" in proc.stderr and "model.no_such_key" in proc.stderr and "Traceback" not in proc.stderr
    assert not list((tmp_path / "sweep").glob("*/summary.json"))


def test_a_tuner_params_key_the_config_lacks_is_refused(tmp_path):
    proc = sweep(tmp_path, "tuner=random", "+tuner.params.nokey=[1,2]", "x0=interval(-2,2)", *QUIET, check=False)
    assert proc.returncode == 2 and "lmforge: error:" in proc.stderr and "nokey=1" in proc.stderr
    assert not (tmp_path / "sweep" / "sweep_state.jsonl").exists()


def test_a_trial_whose_config_does_not_compose_fails_alone_and_the_report_is_written(tmp_path):
    """tuner.num exists in tuner=grid only: the trials pairing it with tuner=random fail, the others run."""
    sweep(tmp_path, "tuner=random", "function=sphere", "dim=1", "x0=choice(0.5,0.6)", "tuner=choice(random,grid)", "tuner.num=choice(3)",
          "hydra.sweeper.budget=6", "hydra.sweeper.max_failure_rate=1.0", *QUIET)
    _, rows = state(tmp_path / "sweep")
    assert len(rows) == 6
    for r in rows:
        assert r["status"] == ("failed" if r["params"]["tuner"] == "random" else "ok"), r
    assert all("does not compose" in r["error"] and "tuner.num" in r["error"] for r in rows if r["status"] == "failed")
    assert {r["status"] for r in rows} == {"ok", "failed"}
    assert (tmp_path / "sweep" / "sweep_results.csv").is_file() and (tmp_path / "sweep" / "best.yaml").is_file()
