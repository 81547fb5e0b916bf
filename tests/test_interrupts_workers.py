"""Ctrl-C during a parallel preprocess: one line from the run, nothing from its workers.

A terminal sends SIGINT to the whole process group, workers included. The run starts in
a session of its own, a throwaway plugin holds a preprocess worker inside its step (it
writes a marker named after its pid; the other worker waits for a part, or holds too),
and the test signals the group there.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from support import TINY

PLUGIN = '''
import os
import time
from pathlib import Path

from lmforge import hookimpl
from lmforge.contracts import Collector, Document, Preprocessor


class Bulk(Collector):
    """About 11 MB of text: two collect shards, so that preprocessing runs in workers."""

    name = "bulk"

    def documents(self, workdir, stats):
        for i in range(2200):
            yield Document(id=f"d{i}", text=f"document {i}: " + "some words of text " * 260, source="bulk")


class Hold(Preprocessor):
    """Writes $PROBE_MARKERS/<pid>, then holds its process until a signal ends it."""

    name = "hold"

    def process(self, docs, stats):
        Path(os.environ["PROBE_MARKERS"], str(os.getpid())).touch()
        while True:
            time.sleep(0.05)
        yield from docs


@hookimpl
def register_collectors(register):
    register(Bulk)


@hookimpl
def register_preprocessors(register):
    register(Hold)
'''


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_in_a_parallel_preprocess_prints_no_worker_traceback_and_exits_130(tmp_path):
    site = tmp_path / "site"
    (site / "probe_workers-1.0.dist-info").mkdir(parents=True)
    (site / "probe_workers.py").write_text(PLUGIN)
    (site / "probe_workers-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-workers\nVersion: 1.0\n")
    (site / "probe_workers-1.0.dist-info" / "entry_points.txt").write_text("[lmforge]\nprobe_workers = probe_workers\n")
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {
        **os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(site), "LMFORGE_DISABLE_PLUGIN_AUTOLOAD": "0",
        "LMFORGE_CACHE_DIR": str(tmp_path / "cache"), "PROBE_MARKERS": str(markers),
    }  # fmt: skip
    overrides = [o for o in TINY if not o.startswith("collector.")]
    overrides += ["collector=bulk", "preprocess=none", "preprocess.steps=[{name:hold}]", "preprocess.n_workers=2"]
    with open(tmp_path / "out.txt", "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lmforge.cli", "train", *overrides, f"hydra.run.dir={tmp_path / 'run'}"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not any(markers.iterdir()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the workers never got to the step:\n{(tmp_path / 'out.txt').read_text()}")
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = (tmp_path / "out.txt").read_text()
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert not re.search(r"^Process \w+-\d+:$", text, re.M), text  # a worker's traceback starts so, cut short when terminated
    assert "preprocess stage stopped by SIGINT" in text, text
    workers = [int(marker.name) for marker in markers.iterdir()]
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers), "the run left its workers behind"
