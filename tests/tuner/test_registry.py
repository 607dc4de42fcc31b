import pytest
import torch
from conftest import TINY

from tuner.registry import CHALLENGER, CHAMPION, decide, register_candidate
from tuner.tracking import Study, log_best_model, use_tracking_uri
from tuner.trainable import BestEpoch
from vgan.config import config_from_dict
from vgan.data import load_train_val
from vgan.trainer import Trainer


def test_gate_decisions():
    assert decide(None, 0.9, 0.0) == (True, "first champion")
    promoted, reason = decide(("3", 0.95), 0.96, 0.005)
    assert promoted and "beats champion v3" in reason
    promoted, reason = decide(("3", 0.95), 0.953, 0.005)
    assert not promoted and "does not beat champion v3 (0.9500) by more than 0.005" in reason


def trial_with_best(tmp_path):
    """A tiny trained trial's best/ folder and its child run in a fresh study: (cfg, store uri, study, run id)."""
    cfg = config_from_dict(TINY)
    train, val = load_train_val(cfg.data)
    t = Trainer(cfg, train, val, torch.device("cpu"))
    best = BestEpoch(tmp_path / "work" / "best")
    best.keep(t, t.run_epoch())
    best.copy_into(tmp_path / "best", t)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    study = Study.start(uri, "registry-test", "study", {}, resume=False)
    run = study.client.create_run(study.info.experiment_id, tags={"mlflow.parentRunId": study.info.parent_run_id})
    return cfg, uri, study, run.info.run_id


@pytest.fixture
def logged_model(tmp_path):
    """The best generator logged the way trials log theirs: (client, run_id, model_uri, cfg, store uri)."""
    cfg, uri, study, run_id = trial_with_best(tmp_path)
    model_uri = log_best_model(uri, run_id, tmp_path / "best", load_train_val(cfg.data)[1])
    return study.client, run_id, model_uri, cfg, uri


def test_promotion_gate_both_ways(logged_model, monkeypatch):
    client, run_id, model_uri, cfg, uri = logged_model
    first = register_candidate(uri, "vgan-generator", model_uri, run_id, cfg, {"auc_roc": 0.9}, 0.0, "s")
    assert first.promoted and first.reason == "first champion"
    assert str(client.get_model_version_by_alias("vgan-generator", CHAMPION).version) == first.version
    tags = client.get_model_version("vgan-generator", first.version).tags
    assert {"test_auc_roc", "val_auc_roc", "git_commit", "data_split_hash", "config"} <= set(tags)

    from tuner.registry import registered_version

    assert registered_version(client, "vgan-generator", model_uri) == first.version
    assert registered_version(client, "vgan-generator", "models:/m-other") is None

    # the same model again does not beat the champion: challenger only, reason tagged
    second = register_candidate(uri, "vgan-generator", model_uri, run_id, cfg, {"auc_roc": 0.9}, 0.0, "s")
    assert not second.promoted and "does not beat" in second.reason
    assert str(client.get_model_version_by_alias("vgan-generator", CHALLENGER).version) == second.version
    assert str(client.get_model_version_by_alias("vgan-generator", CHAMPION).version) == first.version
    assert client.get_model_version("vgan-generator", second.version).tags["promotion"] == second.reason

    # a champion with a lower test score is replaced
    client.set_model_version_tag("vgan-generator", first.version, "test_auc_roc", "0.1")
    third = register_candidate(uri, "vgan-generator", model_uri, run_id, cfg, {"auc_roc": 0.9}, 0.0, "s")
    assert third.promoted
    assert str(client.get_model_version_by_alias("vgan-generator", CHAMPION).version) == third.version


def test_registered_model_takes_any_size(logged_model):
    import mlflow.pytorch

    client, run_id, model_uri, cfg, uri = logged_model
    with use_tracking_uri(uri):
        model = mlflow.pytorch.load_model(model_uri)
    for shape in [(1, 3, 584, 565), (2, 3, 37, 64)]:
        out = model(torch.rand(*shape))
        assert out.shape == (shape[0], 1, *shape[2:]) and 0 <= out.min() and out.max() <= 1


def test_promote_by_hand(logged_model, capsys):
    from tuner.promote import main

    client, run_id, model_uri, cfg, uri = logged_model
    register_candidate(uri, "vgan-generator", model_uri, run_id, cfg, {}, 0.0, "s")
    v2 = register_candidate(uri, "vgan-generator", model_uri, run_id, cfg, {}, 0.0, "s")
    assert main(["--version", v2.version, "--tracking-uri", uri]) == 0
    assert str(client.get_model_version_by_alias("vgan-generator", CHAMPION).version) == v2.version
    assert main(["--version", "99", "--tracking-uri", uri]) == 2
    assert "--version 99: no such version" in capsys.readouterr().err


def test_logging_and_registering_leave_the_global_tracking_uri_alone(tmp_path):
    """Trials and the registry name their store explicitly; a user's global MLflow setting is theirs."""
    import mlflow

    cfg, uri, study, run_id = trial_with_best(tmp_path)
    elsewhere = f"sqlite:///{tmp_path}/elsewhere.db"
    mlflow.set_tracking_uri(elsewhere)
    try:
        model_uri = log_best_model(uri, run_id, tmp_path / "best", load_train_val(cfg.data)[1])
        assert mlflow.get_tracking_uri() == elsewhere
        reg = register_candidate(uri, "scoped-model", model_uri, run_id, cfg, {}, 0.0, "s")
        assert mlflow.get_tracking_uri() == elsewhere
        assert reg.promoted and reg.test_metrics["auc_roc"] > 0
    finally:
        mlflow.set_tracking_uri(None)
