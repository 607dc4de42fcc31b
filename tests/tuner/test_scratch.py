"""Scratch folders gone with their process: removed by it, or, when it is killed, by the next one."""

import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tuner.cluster import stop_ray
from tuner.scratch import BEST_PREFIX, LOCK, TRIAL_PREFIX, scratch, sweep

# A process that makes a scratch folder under argv[1] (prefix argv[3]), fills it, says where it is, then dies as
# argv[2] says: "kill" (SIGKILL, as the OOM killer does), or "wait" (holds it until its stdin closes).
HOLDER = """
import os, signal, sys
from pathlib import Path
from tuner.scratch import scratch

with scratch(sys.argv[3], Path(sys.argv[1])) as folder:
    (folder / "best_generator.pt").write_bytes(os.urandom(1 << 20))
    print(folder, flush=True)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.read()
"""


def holder(parent: Path, end: str, prefix: str = TRIAL_PREFIX) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(parent), end, prefix], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    return proc, Path(proc.stdout.readline().strip())


def test_a_scratch_folder_goes_when_its_block_ends(tmp_path):
    with scratch(parent=tmp_path) as folder:
        assert folder.parent == tmp_path and folder.name.startswith(TRIAL_PREFIX)
        (folder / "best").mkdir()
        (folder / "best" / "metrics.json").write_text("{}")
    assert not folder.exists()
    with pytest.raises(RuntimeError, match="diverged"), scratch(parent=tmp_path) as folder:
        raise RuntimeError("the trial diverged")
    assert not folder.exists() and not list(tmp_path.iterdir())


def test_a_killed_process_folder_goes_at_the_next_scratch_and_a_live_ones_stays(tmp_path):
    killed, killed_folder = holder(tmp_path, "kill")
    assert killed.wait(timeout=60) == -signal.SIGKILL
    assert (killed_folder / "best_generator.pt").stat().st_size == 1 << 20, "the kill left it"
    live, live_folder = holder(tmp_path, "wait")
    try:
        with scratch(parent=tmp_path) as mine:
            assert not killed_folder.exists()
            assert (live_folder / "best_generator.pt").exists()
            assert sorted(tmp_path.iterdir()) == sorted([mine, live_folder])
    finally:
        live.communicate("", timeout=60)
    assert live.returncode == 0 and not list(tmp_path.iterdir())


def test_a_sweep_leaves_what_it_cannot_tell_is_dead(tmp_path):
    old = tmp_path / f"{TRIAL_PREFIX}from-an-older-version"
    old.mkdir()  # no lock in it: whether its trial lives is unknown
    other = tmp_path / "ray-vgan-session"
    other.mkdir()
    with scratch(parent=tmp_path) as held:
        assert sweep(parent=tmp_path) == []
        assert (held / LOCK).exists()
    assert sorted(tmp_path.iterdir()) == sorted([old, other])


def test_stopping_a_study_sweeps_what_killed_trials_and_drivers_left(tmp_path, monkeypatch):
    left = []
    for prefix in (TRIAL_PREFIX, BEST_PREFIX):  # a trial's, a driver's (the best generator it was logging)
        killed, folder = holder(tmp_path, "kill", prefix)
        killed.wait(timeout=60)
        left.append(folder)
    assert all(f.exists() for f in left)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the node's temp dir, as trials found it
    stop_ray(None, keep=False)  # a study that joined a cluster: Ray is not started here
    assert not list(tmp_path.iterdir())


def test_without_file_locks_a_scratch_folder_still_works_and_a_sweep_takes_nothing(tmp_path, monkeypatch):
    import tuner.scratch

    killed, left = holder(tmp_path, "kill")
    killed.wait(timeout=60)
    monkeypatch.setattr(tuner.scratch, "fcntl", None)  # as on Windows
    with scratch(parent=tmp_path) as folder:
        (folder / "best").mkdir()
    assert not folder.exists() and left.exists() and sweep(parent=tmp_path) == []
