"""The MLflow tracking server goes away mid-study, for real (its processes are killed)."""

import os
import re
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
from loopback import mlflow_server
from studies import ONE_STUDY_AT_A_TIME, quick_smoke, steps, trial_runs

pytestmark = [pytest.mark.slow, ONE_STUDY_AT_A_TIME]
EPOCHS, SAMPLES = 4, 2


def space_file(path, window_s):
    return quick_smoke(path, "vgan-outage", tune={"num_samples": SAMPLES, "grace_period": EPOCHS},
                       train={"epochs": EPOCHS}, mlflow={"outage_window_s": window_s})


@contextmanager
def study_until_trials_log(work, uri, window_s, ray_tmpdir):
    """The study, started and past its trials' first epoch; killed on the way out if still running."""
    log = (work / "study.log").open("w")
    argv = [sys.executable, "-m", "tuner.run", "--space", str(space_file(work / "space.yaml", window_s)),
            "--name", "outage", "--storage", str(work / "ray"), "--tracking-uri", uri, "--no-register"]
    study = subprocess.Popen(argv, cwd=work, env={**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmpdir)},
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_epochs(uri, study)
        yield study
    finally:
        if study.poll() is None:
            study.kill()


def runs(uri):
    return trial_runs(uri, "vgan-outage")


def wait_for_epochs(uri, proc, n=1, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the study ended early"
        client, found = runs(uri)
        if len(found) == SAMPLES and all(
                len(steps(client, r, "epoch_s")) >= n for r in found):
            return
        time.sleep(0.5)
    raise AssertionError("trials did not start")


def assert_nothing_lost(uri):
    client, found = runs(uri)
    assert len(found) == SAMPLES
    for r in found:
        assert steps(client, r) == list(range(1, EPOCHS + 1)), steps(client, r)
        assert r.data.tags["status"] == "completed" and r.info.status == "FINISHED"
        assert r.data.tags["best_model_uri"].startswith("models:/")


def test_a_short_outage_is_waited_out(tmp_path, capsys, ray_tmpdir):
    with mlflow_server(tmp_path / "mlflow") as server:
        with study_until_trials_log(tmp_path, server.uri, window_s=120, ray_tmpdir=ray_tmpdir) as study:
            server.stop()
            down = time.perf_counter()
            # down until the driver has had something to log and found the server gone, 5 s at least (trials train
            # on meanwhile): a fixed 5 s fell between two epochs on a loaded machine, and nothing waited
            noticed = "their logging waits in the driver until it is back"
            while time.perf_counter() - down < 5 or noticed not in (tmp_path / "study.log").read_text():
                assert study.poll() is None and time.perf_counter() - down < 300, "the driver never found it gone"
                time.sleep(0.5)
            server.restart()
            back = time.perf_counter() - down
            assert study.wait(timeout=900) == 0, (tmp_path / "study.log").read_text()[-3000:]
        assert_nothing_lost(server.uri)
        log = (tmp_path / "study.log").read_text()
        assert "their logging waits in the driver until it is back" in log and "the driver delivers what waited" in log
        with capsys.disabled():
            print(f"\nMLflow server down {back:.1f} s mid-study: nothing lost, no epoch re-run")


def test_a_long_outage_ends_with_a_replay_command(tmp_path, capsys, ray_tmpdir):
    with mlflow_server(tmp_path / "mlflow") as server:
        with study_until_trials_log(tmp_path, server.uri, window_s=3, ray_tmpdir=ray_tmpdir) as study:
            server.stop()
            code = study.wait(timeout=900)
        log = (tmp_path / "study.log").read_text()
        assert code == 1, log[-3000:]
        kept = re.search(r"^Ray's own logs of this study: (.*)$", log, re.M).group(1)  # a failed study keeps them
        assert kept.startswith(f"{ray_tmpdir}/") and os.path.isdir(kept), log[-3000:]
        command = re.search(r"run: (python -m tuner\.replay .*)$", log, re.M).group(1)
        server.restart()
        t0 = time.perf_counter()
        replay = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=tmp_path, capture_output=True,
                                text=True, timeout=600)
        assert replay.returncode == 0, replay.stdout[-2000:] + replay.stderr[-2000:]
        assert_nothing_lost(server.uri)
        with capsys.disabled():
            print(f"\nMLflow server gone for good: replayed {SAMPLES} trials in {time.perf_counter() - t0:.1f} s:\n"
                  + replay.stdout)
