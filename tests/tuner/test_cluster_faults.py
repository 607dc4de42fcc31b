"""A killed driver and a lost worker node, for real, on a two-node Ray cluster on 127.0.0.1."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loopback import CLUSTER_ENV, ray_cluster
from studies import ONE_STUDY_AT_A_TIME, history, quick_smoke, trial_runs

from tuner.resume import RESUMED, STAND_IN, named_of, saved_trials
from tuner.run import build_parser
from tuner.scratch import TRIAL_PREFIX
from tuner.storage import checkpoint_number

pytestmark = [pytest.mark.slow, ONE_STUDY_AT_A_TIME]
EPOCHS, SAMPLES = 6, 4
LOST_SAMPLES = 2  # one trial per node: the lost node's trial resumes on the other once that one's is done


def space_file(path, samples):
    """The smoke space without early stopping, so every trial runs all its epochs."""
    return quick_smoke(path, "vgan-cluster-faults", tune={"num_samples": samples, "grace_period": EPOCHS,
                                                          "max_failures": 1}, train={"epochs": EPOCHS})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cfaults")
    (root / "tmp").mkdir()  # the nodes' temp dir, where trials keep their scratch folders
    with ray_cluster(root / "ray", nodes=2, cpus_per_node=1, env={"TMPDIR": str(root / "tmp")}) as c:
        yield root, c


def argv(root, cluster, name, *extra, samples=SAMPLES):
    space = space_file(root / f"{name}.yaml", samples)
    return [sys.executable, "-m", "tuner.run", "--space", str(space), "--name", name,
            "--address", cluster.address, "--storage", f"file://{root}/shared", "--no-register",
            "--tracking-uri", f"sqlite:///{root}/mlflow.db", *extra]


ENV = {**os.environ, **CLUSTER_ENV, "PYTHONUNBUFFERED": "1"}


def runs_of(root, study):
    return trial_runs(f"sqlite:///{root}/mlflow.db", "vgan-cluster-faults", study)


def wait_until(predicate, timeout, proc, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the study ended ({proc.returncode}) before {what}")
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"no {what} after {timeout} s")


def saved_state(root) -> list:
    """The trials of the study's newest state saved in storage: what a resumed driver reads."""
    import pyarrow.fs

    try:
        return saved_trials(pyarrow.fs.LocalFileSystem(), str(root / "shared" / "killed"))
    except (ValueError, OSError):  # not saved yet, or half written as it was read
        return []


def named_in(state, root) -> list[Path]:
    """The folders of the trials of a saved state Ray would resume whose checkpoints it names."""
    named = (named_of(t, str(root / "shared" / "killed")) for t in state if t.status in RESUMED)
    return [Path(n.folder) for n in named if n.checkpoints]


def test_driver_killed_mid_study_resumes_losing_nothing(cluster, capsys):
    root, c = cluster
    log = (root / "driver.log").open("w")
    driver = subprocess.Popen(argv(root, c, "killed"), cwd=root, env=ENV, stdout=log, stderr=subprocess.STDOUT)

    # Killed when Ray's saved state says so, not MLflow: the driver projects into MLflow from a queue that
    # ends each trial with its model, and it lags Ray by more than a whole trial on a busy machine
    def one_done_one_midway():
        state = saved_state(root)  # one read: the conditions hold of one saved state
        return any(t.status == "TERMINATED" for t in state) and any(
            t.status in RESUMED and t.run_metadata.last_result.get("epoch", 0) >= 2 for t in state) \
            and named_in(state, root)

    try:
        wait_until(one_done_one_midway, 300, driver, "a finished trial and one midway")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    killed_at = time.time() * 1000
    state = saved_state(root)
    finished = {t.trial_id for t in state if t.status == "TERMINATED"}
    midway = {t.trial_id for t in state if t.status in RESUMED}
    client, before = runs_of(root, "killed")
    logged = {r.data.tags["trial_id"]: history(client, r) for r in before}  # what MLflow had of each at the kill
    # Ray's race, made certain: its saved state names checkpoints of a trial that its num_to_keep deleted
    # since, the trial's newer ones in storage (tuner.resume)
    lagging = named_in(state, root)[0]
    lagging_id = lagging.name.split("_")[2]
    for path in sorted(lagging.glob("checkpoint_*"), reverse=True):
        path.rename(path.with_name(f"checkpoint_{checkpoint_number(str(path)) + 10:06d}"))
    # and a trial it began after its last saved state, killed as its first checkpoint was being copied
    begun = root / "shared" / "killed" / "train_vgan_0badf00d_9_optim_lr_g=0.0010_2026-12-07_10-31-00"
    (begun / "checkpoint_000000").mkdir(parents=True)
    (begun / "params.json").write_text("{}")

    # the command the study printed as it began, for a driver that dies before it can say how to go on
    (line,) = [ln for ln in (root / "driver.log").read_text().splitlines() if "should its driver die" in ln]
    command = shlex.split(line.split(" it goes on with: ", 1)[1])
    assert command[:3] == ["python", "-m", "tuner.run"] and \
        build_parser().parse_args(command[3:]) == build_parser().parse_args(argv(root, c, "killed", "--resume")[3:])
    t0 = time.perf_counter()
    resumed = subprocess.run([sys.executable, *command[1:]], cwd=root, env=ENV, capture_output=True, text=True,
                             timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:] + "\n" + c.gcs_errors()
    stand_ins = next((line for line in resumed.stdout.splitlines() if "stand-ins take their place" in line), "")
    assert f"trial {lagging_id}: checkpoint_" in stand_ins, resumed.stdout[-3000:]
    assert not list((root / "shared" / "killed").glob(f"*/*/{STAND_IN}")), "stand-ins left in storage"
    client, after = runs_of(root, "killed")
    left = [(r.data.tags.get("trial_id"), r.data.tags.get("status"), r.data.tags.get("kind")) for r in after
            if r.info.status == "RUNNING"]
    assert not left, f"no run left RUNNING: (trial_id, status tag, kind) {left}\n{resumed.stdout[-3000:]}"
    completed = [r for r in after if r.data.tags["status"] == "completed"]
    assert len(completed) == SAMPLES
    # a trial the killed driver had started but not yet saved in its state is not Ray's to
    # resume (the searcher proposes anew): its run is closed as KILLED
    assert all(r.info.status == "KILLED" for r in after if r not in completed)
    by_trial = {r.data.tags["trial_id"]: r for r in completed}
    assert finished | midway <= set(by_trial), (finished, midway, set(by_trial))
    for trial_id in finished:  # not re-run: each epoch once, trained before the kill, what MLflow had kept
        now = history(client, by_trial[trial_id])
        assert [s for s, _ in now] == list(range(1, EPOCHS + 1)), now
        assert all(ts < killed_at for _, ts in now), now
        assert set(logged.get(trial_id, [])) <= set(now)
    rerun = 0
    for trial_id in midway:  # continued from a checkpoint: every epoch, nothing logged lost
        now = history(client, by_trial[trial_id])
        assert sorted({s for s, _ in now}) == list(range(1, EPOCHS + 1)), now
        assert set(logged.get(trial_id, [])) <= set(now), "epochs logged before the kill are kept"
        # MLflow holds every report, so an epoch trained again after the kill shows as a second value:
        # counted, not asserted away (some kill timings still re-run an epoch; see stop 22's note)
        rerun += len(now) - EPOCHS
    known = {t.trial_id for t in state} | set(by_trial)
    removed = next((line for line in resumed.stdout.splitlines() if "removed the folders of" in line), "")
    assert removed.endswith("0badf00d") or "0badf00d, " in removed, resumed.stdout[-3000:]
    assert not begun.exists()
    for folder in (root / "shared" / "killed").glob("train_vgan_*"):  # numbered on after the kill, never over
        # one the killed driver began after its last saved state is not resumed (the searcher proposes anew):
        # the resume removed it (tuner.resume.unsaved_trials), a checkpoint it was copying perhaps an empty folder
        assert folder.name.split("_")[2] in known, (folder.name, removed)
        epochs = [json.loads((c / "trial.json").read_text())["report"]["epoch"]
                  for c in sorted(folder.glob("checkpoint_*"))]
        assert epochs == sorted(set(epochs)), (folder.name, epochs)
        # Ray's num_to_keep (2) deletes the checkpoints its state knows, a resumed trial those written after
        # the state's last save; a trial that had finished keeps its last (no next one supersedes it)
        assert len(epochs) <= (2 if folder.name.split("_")[2] in midway else 3), (folder.name, epochs)
    with capsys.disabled():
        print(f"\nepochs trained again after the kill: {rerun} (of {len(midway)} trial(s) then running)")

    import optuna

    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{root}/shared/optuna.db")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == SAMPLES and set(states) <= {"COMPLETE", "FAIL"}, states
    with capsys.disabled():
        print(f"\ndriver SIGKILL: {len(finished)} finished trial(s) kept, {len(midway)} resumed from checkpoints, "
              f"resume took {time.perf_counter() - t0:.1f} s in all, epochs re-run: {rerun}")
        print(stand_ins)
        print(removed)


def scratch_folders(root) -> list[Path]:
    return sorted((root / "tmp").glob(f"{TRIAL_PREFIX}*"))


def test_lost_worker_node_reschedules_its_trial(cluster, capsys):
    root, c = cluster
    log = (root / "lost.log").open("w")
    driver = subprocess.Popen(argv(root, c, "lost", samples=LOST_SAMPLES), cwd=root, env=ENV, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        def two_nodes_busy():
            client, runs = runs_of(root, "lost")
            busy = [r for r in runs if r.info.status == "RUNNING" and len(history(client, r)) >= 2]
            return len({r.data.tags["node_id"] for r in busy}) == 2

        wait_until(two_nodes_busy, 300, driver, "trials on both nodes")
        client, runs = runs_of(root, "lost")
        placed = {r.data.tags["trial_id"]: (r.data.tags["node_id"], history(client, r))
                  for r in runs if r.info.status == "RUNNING"}
        lost_at = time.time()
        c.kill_node(1)
        left = scratch_folders(root)  # the lost node's trial's among them, which nothing of that node removes
        code = driver.wait(timeout=900)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert code == 0, (root / "lost.log").read_text()[-3000:] + "\n" + c.gcs_errors()
    client, runs = runs_of(root, "lost")
    assert len(runs) == LOST_SAMPLES and all(r.data.tags["status"] == "completed" for r in runs)
    moved = [r for r in runs if r.data.tags["trial_id"] in placed
             and r.data.tags["node_id"] != placed[r.data.tags["trial_id"]][0]]
    assert len(moved) == 1, "the trial of the lost node finished on the other one"
    (m,) = moved
    assert m.data.tags["retries"] == "1"
    steps = history(client, m)
    assert [s for s, _ in steps] == list(range(1, EPOCHS + 1))
    before = placed[m.data.tags["trial_id"]][1]
    assert steps[: len(before)] == before, "resumed from its checkpoint, not from scratch"
    first_new = min(ts for s, ts in steps if s > len(before)) / 1000
    assert len(left) == LOST_SAMPLES and not scratch_folders(root), "the trial started after the loss swept"
    with capsys.disabled():
        print(f"\nworker node lost: trial {m.data.tags['trial_id']} rescheduled after epoch {len(before)}, "
              f"next epoch logged {first_new - lost_at:.1f} s after the kill, epochs re-run: 0")
