"""The ``logger`` group: csv, tensorboard, wandb (offline unless logged in) and none."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from support import lmforge, smoke_run

from lmforge import hydra_bridge
from lmforge.engine.trainer import loggers
from lmforge.plugins.training.loggers import CSV, NoLogger, TensorBoard, Wandb, wandb_mode
from lmforge.plugins.training.loggers import WandbConfig as WandbLoggerConfig

LOGGERS = {"csv": CSV, "none": NoLogger, "tensorboard": TensorBoard, "wandb": Wandb}


def logger(name: str, run_dir: Path):
    """The Lightning loggers a run with ``logger=<name>`` gets; False for none at all."""
    return loggers(LOGGERS[name](), run_dir) or False


@pytest.fixture
def no_wandb_login(monkeypatch, tmp_path):
    """No W&B mode, key or netrc entry in the environment."""
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.org login me password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    return netrc


def test_wandb_is_offline_without_a_login(no_wandb_login):
    assert wandb_mode(None) == "offline"


def test_wandb_is_online_with_an_api_key_or_a_netrc_login(no_wandb_login, monkeypatch):
    no_wandb_login.write_text("machine api.wandb.ai login user password 0123456789abcdef\n")
    assert wandb_mode(None) == "online"
    no_wandb_login.write_text("")
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef")
    assert wandb_mode(None) == "online"


def test_wandb_mode_from_the_environment_and_the_config_wins(no_wandb_login, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode(None) == "disabled"
    assert wandb_mode("offline") == "offline"


def test_a_wrong_wandb_mode_is_refused():
    with pytest.raises(ValueError, match="mode must be online, offline, disabled"):
        WandbLoggerConfig(mode="sometimes")


def test_none_logs_nothing_and_csv_writes_into_the_run_dir(tmp_path):
    assert logger("none", tmp_path) is False
    (csv,) = logger("csv", tmp_path)
    assert Path(csv.log_dir) == tmp_path


def test_the_tensorboard_logger_writes_events_into_the_run_dir(tmp_path):
    csv, tensorboard = logger("tensorboard", tmp_path)
    tensorboard.log_metrics({"train/loss": 2.5}, step=3)
    tensorboard.finalize("success")
    (events,) = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
    assert event_tags(events) == {"train/loss"}


def test_the_final_validation_does_not_overwrite_the_training_events(tmp_path):
    """Event files are named by the second: fit's and the final validation's writers must not collide."""
    _, tensorboard = logger("tensorboard", tmp_path)
    tensorboard.log_metrics({"train/loss": 2.5}, step=3)
    tensorboard.finalize("success")  # the end of fit
    tensorboard.log_metrics({"val/loss": 2.7}, step=3)  # trainer.validate, within the same second
    tensorboard.finalize("success")
    files = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 2 and set().union(*map(event_tags, files)) == {"train/loss", "val/loss"}


def test_every_option_has_a_yaml_mirroring_its_schema():
    assert sorted(hydra_bridge.config_options("lmforge.conf")["logger"]) == sorted(LOGGERS)
    for name, cls in LOGGERS.items():
        yaml = OmegaConf.to_container(OmegaConf.load(hydra_bridge.resources.files("lmforge.conf") / "logger" / f"{name}.yaml"))
        assert yaml == {**dataclasses.asdict(cls.Config()), "name": name}, name


def test_every_logger_is_documented():
    text = (Path(__file__).resolve().parents[3] / "docs" / "training.md").read_text()
    assert all(f"| `{name}`" in text for name in LOGGERS)


def event_tags(path) -> set[str]:
    """Scalar tags in a TensorBoard event file (TFRecord: length, crc, event proto, crc)."""
    from tensorboardX.proto import event_pb2

    tags, data = set(), path.read_bytes()
    while data:
        (length,) = struct.unpack("<Q", data[:8])
        event = event_pb2.Event.FromString(data[12 : 12 + length])
        tags.update(v.tag for v in event.summary.value)
        data = data[16 + length :]
    return tags


def run(tmp_path, *overrides: str, env: dict | None = None):
    run_dir = tmp_path / "run"
    base = {"LMFORGE_CACHE_DIR": str(tmp_path / "cache"), "LMFORGE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    lmforge("train", *smoke_run(), *overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path, env={**base, **(env or {})})
    return run_dir


@pytest.mark.slow
def test_a_tensorboard_run_writes_an_events_file_with_the_training_loss(tmp_path):
    run_dir = run(tmp_path, "logger=tensorboard", "trainer.log_every_n_steps=1")
    files = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))  # fit's, then the final validation's
    assert files and {"train/loss", "val/loss"} <= set().union(*map(event_tags, files))
    assert (run_dir / "metrics.csv").is_file()  # the local record is kept under every logger


@pytest.mark.slow
def test_an_offline_wandb_run_writes_its_files_into_the_run_dir(tmp_path):
    home = tmp_path / "home"  # W&B's settings and caches, kept out of the real home
    env = {"WANDB_MODE": "offline", "WANDB_CONFIG_DIR": str(home), "WANDB_CACHE_DIR": str(home), "WANDB_DATA_DIR": str(home), "WANDB_SILENT": "true"}
    run_dir = run(tmp_path, "logger=wandb", "logger.tags=[smoke]", env=env)
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert list(offline.glob("run-*.wandb")), sorted(p.name for p in offline.iterdir())
    assert (run_dir / "metrics.csv").is_file()
