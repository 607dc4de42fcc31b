"""A `--resume` is refused while the study's driver still runs on this machine (tuner.driver)."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import yaml
from conftest import write_yaml
from studies import SMOKE

from tuner.driver import check_not_running, driving, holder, lock_path
from tuner.run import main
from tuner.space import load_space, trial_recipe
from tuner.storage import RECIPE_FILE, parse_storage
from vgan.errors import ConfigError

STUDY = "s3://bucket/ray/s"


def driver_process(study_uri: str, parent=None):
    """A process that drives the study until it is killed; returns once it holds the lock."""
    code = ("import sys, time\nfrom pathlib import Path\nfrom tuner.driver import driving\n"
            "with driving(sys.argv[1], 's', Path(sys.argv[2]) if sys.argv[2] else None):\n"
            "    print('driving', flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, study_uri, str(parent or "")], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout.readline() == "driving\n"
    return proc


def test_a_live_driver_is_its_studys_holder_until_it_dies_however_it_dies(tmp_path):
    assert holder(STUDY, tmp_path) is None  # none ever
    proc = driver_process(STUDY, tmp_path)
    try:
        assert holder(STUDY, tmp_path).startswith(f"pid {proc.pid} on ")
        assert holder("s3://bucket/ray/other", tmp_path) is None  # another study's
        with pytest.raises(ConfigError, match=f"study 's' is still run by its driver \\(pid {proc.pid} on "):
            with driving(STUDY, "s", tmp_path):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
    deadline = time.time() + 30
    while holder(STUDY, tmp_path) is not None:  # the kernel drops the lock as the process ends, reaped or not
        assert time.time() < deadline, "the lock outlived its process"
        time.sleep(0.05)
    proc.wait()
    with driving(STUDY, "s", tmp_path):  # the next driver
        assert holder(STUDY, tmp_path).startswith(f"pid {os.getpid()} on ")
    assert not lock_path(STUDY, tmp_path).exists() and holder(STUDY, tmp_path) is None  # removed as it ends


def test_a_resume_beside_the_studys_live_driver_is_refused_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # tuner.run's temp dir, and its driver's (TMPDIR)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    storage = parse_storage(str(tmp_path / "ray"))
    space = write_yaml(tmp_path / "space.yaml", yaml.safe_load(SMOKE.read_text()))
    storage.write_text("s", RECIPE_FILE, json.dumps(trial_recipe(load_space(space))))
    proc = driver_process(storage.study("s"))  # where tuner.run looks: the temp dir
    assert lock_path(storage.study("s")).parent == tmp_path
    try:
        with pytest.raises(ConfigError, match=f"still run by its driver \\(pid {proc.pid} on "):
            check_not_running(storage.study("s"), "s")
        code = main(["--space", str(space), "--storage", str(tmp_path / "ray"), "--name", "s", "--resume",
                     "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
        err = capsys.readouterr().err
        assert code == 2 and f"--resume: study 's' is still run by its driver (pid {proc.pid} on " in err, err
        assert "(Ctrl-C where it runs, or kill -INT with its pid: it ends in order and says how to go on)" in err
        assert [p.name for p in (tmp_path / "ray" / "s").iterdir()] == [RECIPE_FILE]  # nothing started
    finally:
        proc.kill()
        proc.wait()
    check_not_running(storage.study("s"), "s")  # gone: the resume may go on
