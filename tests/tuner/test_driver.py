"""A `--resume` is refused while the study's driver still runs on this machine (tuner.driver)."""

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, replace

import pytest
import yaml
from conftest import write_yaml
from studies import SMOKE

from tuner.driver import (
    DRIVER_FILE,
    check_not_running,
    parse_record,
    process_start,
    record_driver,
    still_running,
    this_driver,
)
from tuner.run import main
from tuner.space import load_space, trial_recipe
from tuner.storage import RECIPE_FILE, parse_storage
from vgan.errors import ConfigError


@pytest.fixture
def other_process():
    """A live process other than this one, as a study's driver is to the resuming command."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_live_process_of_this_machine_is_running_and_a_gone_or_reused_one_is_not(other_process):
    here = this_driver()
    live = replace(here, pid=other_process.pid, start=process_start(other_process.pid))
    assert live.start > 0 and still_running(live)
    assert not still_running(here)  # the resuming command itself
    assert not still_running(replace(live, start=live.start + 1))  # its id taken again by a later process
    assert not still_running(replace(live, host=here.host + "-other"))  # cannot be looked at from here
    assert not still_running(replace(live, boot="another-boot"))  # the machine restarted since
    other_process.kill()
    other_process.wait()
    assert process_start(other_process.pid) == 0 and not still_running(live)


def test_an_exited_driver_its_parent_has_not_reaped_is_not_running():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 60
    while open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[-1].split()[0] != "Z":
        assert time.time() < deadline, "the process did not exit"
        time.sleep(0.05)
    assert process_start(proc.pid) == 0  # a zombie: killed, its shell not yet told
    proc.wait()


def test_a_record_is_read_back_and_a_broken_one_is_none(tmp_path):
    storage = parse_storage(str(tmp_path))
    record_driver(storage, "s")
    record = parse_record(storage.read_text("s", DRIVER_FILE))
    assert (record.host, record.pid, record.start) == (socket.gethostname(), os.getpid(), process_start(os.getpid()))
    assert record.start > 0 and record.boot
    assert parse_record('{"host": "h"') is None and parse_record("") is None and parse_record('{"pid": 1}') is None


def test_a_resume_beside_the_studys_live_driver_is_refused_naming_it(other_process, tmp_path, capsys):
    storage = parse_storage(str(tmp_path / "ray"))
    values = yaml.safe_load(SMOKE.read_text())
    space = write_yaml(tmp_path / "space.yaml", values)
    storage.write_text("s", RECIPE_FILE, json.dumps(trial_recipe(load_space(space))))
    live = replace(this_driver(), pid=other_process.pid, start=process_start(other_process.pid))
    storage.write_text("s", DRIVER_FILE, json.dumps(asdict(live)))

    with pytest.raises(ConfigError, match=f"still run by its driver \\(pid {other_process.pid} on "):
        check_not_running(storage, "s")
    code = main(["--space", str(space), "--storage", str(tmp_path / "ray"), "--name", "s", "--resume",
                 "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    err = capsys.readouterr().err
    assert code == 2 and f"--resume: study 's' is still run by its driver (pid {other_process.pid} on " in err, err
    assert f"kill -INT {other_process.pid}: it ends in order and says how to go on), or let it end" in err
    assert sorted(p.name for p in (tmp_path / "ray" / "s").iterdir()) == [DRIVER_FILE, RECIPE_FILE]  # nothing started

    other_process.kill()
    other_process.wait()
    check_not_running(storage, "s")  # gone: the resume may go on
