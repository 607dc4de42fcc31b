"""Faults provoked for real in real studies: a trial that raises (retried from its checkpoint,
then out of retries), a GAN that diverges (absurd learning rate), and nothing lost."""

import copy
import os
import subprocess
import sys

import pytest
from conftest import REPO, TINY, write_yaml
from studies import ONE_STUDY_AT_A_TIME, history, steps, trial_runs

pytestmark = [pytest.mark.slow, ONE_STUDY_AT_A_TIME]
EPOCHS = 4
SECRET = "s3cr3t-value-that-must-not-leak"


def faults_space(path, seed=8, samples=3, concurrent=1, epochs=EPOCHS):
    """TINY with a critic learning rate that is either sane or absurd (it overflows for real). The
    first trial is the base config (sane); then, with seed 8, the sampler proposes absurd, sane."""
    v = copy.deepcopy(TINY)
    v["model"]["disc_norm"] = "none"
    v["optim"] = {"lr_d": 2.0e-4}
    v["train"].update(epochs=epochs, steps_per_epoch=3, preview_every=0)
    v["search"] = {"optim.lr_d": {"type": "categorical", "choices": [2.0e-4, 1.0e+30]}}
    v["tune"] = {"num_samples": samples, "max_concurrent_trials": concurrent, "seed": seed,
                 "grace_period": epochs, "reduction_factor": 2, "max_failures": 1}
    v["resources"] = {"cpu": 1, "gpu": 0}
    v["mlflow"] = {"experiment": "vgan-faults", "registered_model": "vgan-faults"}
    return write_yaml(path, v)


def run_study(work, space, *extra, env=None, timeout=900):
    """tuner.run, with faults injected into Ray's workers by tests/support/faults.py."""
    path = os.pathsep.join([str(REPO / "tests" / "support"), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "faults", "--space", str(space), "--name", "faults", "--storage", str(work / "ray"),
         "--tracking-uri", f"sqlite:///{work}/mlflow.db", *extra],
        cwd=work, env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **(env or {})},
        capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def faulty_study(tmp_path_factory):
    work = tmp_path_factory.mktemp("faults")
    faults = work / "faults"
    faults.mkdir()
    # the first sane trial raises halfway through epoch 2 (retried from its epoch-1 checkpoint),
    # then in epoch 3: its one retry is spent, so it fails; the study must go on
    (faults / "raise-at-2.a").touch()
    (faults / "raise-at-3.a").touch()
    secrets = {"AWS_SECRET_ACCESS_KEY": SECRET, "MLFLOW_TRACKING_PASSWORD": SECRET, "RAY_AUTH_TOKEN": SECRET}
    proc = run_study(work, faults_space(work / "space.yaml"), env={"VGAN_FAULTS": str(faults), **secrets})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work, proc.stdout, faults


def child_runs(work):
    return trial_runs(f"sqlite:///{work}/mlflow.db", "vgan-faults")


def test_each_trial_ends_with_what_happened_and_nothing_is_lost(faulty_study, capsys):
    work, out, faults = faulty_study
    client, runs = child_runs(work)
    assert len(runs) == 3, "one MLflow run per trial, retries included"
    by_status = {}
    for r in runs:
        by_status.setdefault(r.data.tags["status"], []).append(r)
    assert sorted(by_status) == ["completed", "failed"] and len(by_status["failed"]) == 2
    diverged = [r for r in by_status["failed"] if r.data.tags["error"].startswith("diverged at epoch 1 (loss_")]
    crashed = [r for r in by_status["failed"] if "injected fault in epoch 3" in r.data.tags["error"]]
    assert len(diverged) == 1 and len(crashed) == 1, [r.data.tags["error"] for r in by_status["failed"]]
    assert all(r.info.status == "FAILED" for r in by_status["failed"])

    # retried from the epoch-1 checkpoint into the same run: every epoch it finished, once
    (c,) = crashed
    assert c.data.tags["retries"] == "1" and "injected fault in epoch 2" in c.data.tags["last_error"]
    assert steps(client, c) == [1, 2]
    (done,) = by_status["completed"]
    assert steps(client, done) == list(range(1, EPOCHS + 1)) and done.data.tags["best_model_uri"]
    assert not list(faults.iterdir()), "both injected faults happened"
    retry = [t for _, t in history(client, c)]
    normal = [t for _, t in history(client, done)]
    with capsys.disabled():
        print(f"\ntrial raised mid-epoch 2: epoch 2 logged {(retry[1] - retry[0]) / 1000:.1f} s after epoch 1 "
              f"(normally {(normal[1] - normal[0]) / 1000:.1f} s); half an epoch re-run")
    assert "registered vgan-faults version 1" in out  # the best non-failed trial


def test_optuna_hears_fail_for_diverged_and_crashed_trials(faulty_study):
    import optuna

    work, _, _ = faulty_study
    trials = optuna.load_study(study_name="faults", storage=f"sqlite:///{work}/ray/optuna.db").trials
    states = sorted(t.state.name for t in trials)
    assert states == ["COMPLETE", "FAIL", "FAIL"]
    errors = [t.user_attrs.get("error", "") for t in trials if t.state.name == "FAIL"]
    assert any(e.startswith("diverged at epoch 1") for e in errors)


def test_no_environment_secret_reaches_mlflow(faulty_study):
    work, out, _ = faulty_study
    client, runs = child_runs(work)
    exp = client.get_experiment_by_name("vgan-faults")
    for r in client.search_runs([exp.experiment_id], max_results=100):
        logged = {**r.data.params, **r.data.tags}
        assert not [k for k, v in logged.items() if SECRET in str(v)]
        config = client.download_artifacts(r.info.run_id, "config.yaml", str(work)) if "trial_id" in r.data.tags \
            else None
        assert config is None or SECRET not in open(config).read()
    assert SECRET not in out
