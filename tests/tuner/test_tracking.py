import pytest

from tuner.tracking import Study, TrialRun, resolve_tracking_uri, trial_run_id
from vgan.errors import ConfigError


@pytest.fixture
def study(tmp_path):
    return Study.start(f"sqlite:///{tmp_path}/mlflow.db", "tracking-test", "s1", {}, resume=False)


def test_one_run_per_trial_whoever_asks_first(study):
    run = TrialRun.open(study.info, "t1", "node-a", {"optim.lr_g": 0.01}, "train: {}\n")
    # the driver asking for a trial that failed before its first report finds the same run
    assert trial_run_id(study.client, study.info, "t1") == (run.run_id, False)
    # and a trial restarted without a checkpoint continues it, with its params logged once
    again = TrialRun.open(study.info, "t1", "node-b", {"optim.lr_g": 0.01}, "train: {}\n")
    assert again.run_id == run.run_id
    assert study.client.get_run(run.run_id).data.tags["node_id"] == "node-b"
    other, created = trial_run_id(study.client, study.info, "t2")
    assert created and other != run.run_id
    assert len(study.child_runs()) == 2


def test_epoch_metrics_use_the_epoch_as_step(study):
    run = TrialRun.open(study.info, "t1", "n", {}, "")
    run.log_epoch({"epoch": 1, "val_auc_roc": 0.7, "loss_g": float("nan")})
    run.log_epoch({"epoch": 2, "val_auc_roc": 0.8, "loss_g": 0.5})
    history = study.client.get_metric_history(run.run_id, "val_auc_roc")
    assert [(m.step, m.value) for m in history] == [(1, 0.7), (2, 0.8)]
    assert [m.step for m in study.client.get_metric_history(run.run_id, "loss_g")] == [2]  # NaN not logged


def test_resume_finds_the_parent_run(study):
    again = Study.start(study.info.uri, "tracking-test", "s1", {}, resume=True)
    assert again.info.parent_run_id == study.info.parent_run_id


def test_tracking_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path}/mlflow.db"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    with pytest.raises(ConfigError, match="no file store"):
        resolve_tracking_uri("./mlruns")
