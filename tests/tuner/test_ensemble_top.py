"""`mlflow.ensemble_top` (tuner/ensemble.py; named apart from tests/vgan/test_ensemble.py, as pytest
needs): a study's best trials as one candidate, the mean map of the first k, k chosen on validation, logged
as one model that loads, scores and serves as a single generator does."""

import mlflow.pyfunc
import mlflow.pytorch
import numpy as np
import pytest
import torch
import yaml
from conftest import TINY
from faults import Killed, kill

from tuner import flavor
from tuner.ensemble import Trial, log_ensemble, select
from tuner.registry import score_model
from tuner.tracking import Study, use_tracking_uri
from vgan.config import apply_overrides, config_from_dict
from vgan.data import load_train_val
from vgan.scale import recorded_fov
from vgan.trainer import Trainer


def logged_trial(study: Study, seed: int, **overrides) -> Trial:
    """A tiny generator trained one epoch (seed `seed`), logged on a trial run of `study` as
    `tuner.tracking.log_best_model` logs a trial's best."""
    cfg = apply_overrides(config_from_dict(TINY), {"train.seed": seed, **overrides}, "test")
    t = Trainer(cfg, *load_train_val(cfg.data), torch.device("cpu"))
    t.run_epoch()
    run = study.client.create_run(study.info.experiment_id, tags={
        "mlflow.parentRunId": study.info.parent_run_id, "trial_id": f"t{seed}", "study": study.info.study_name})
    with use_tracking_uri(study.info.uri):
        info = flavor.log_model(t.G, f"t{seed}", run.info.run_id, cfg.to_dict())
    study.client.set_tag(run.info.run_id, "best_model_uri", info.model_uri)
    return Trial(f"t{seed}", run.info.run_id, info.model_uri, cfg)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ensemble")
    s = Study.start(f"sqlite:///{folder}/mlflow.db", "ensemble-test", "s", {}, resume=False)
    return s, [logged_trial(s, seed) for seed in (0, 1, 2)]


def test_the_candidate_is_the_prefix_validation_scores_best(study):
    s, trials = study
    sel = select(s.info.uri, trials, "auc_roc")
    assert [t.trial_id for t in sel.trials] == ["t0", "t1", "t2"] and not sel.skipped
    scores = [m["auc_roc"] for m in sel.scores]
    assert sel.k == 1 + scores.index(max(scores)) and all(x < max(scores) for x in scores[: sel.k - 1])
    # k = 1 is the first trial's generator alone, as the registry would score it on validation
    _, val = load_train_val(trials[0].cfg.data)
    with use_tracking_uri(s.info.uri):
        first = mlflow.pytorch.load_model(trials[0].model_uri)
    assert sel.scores[0] == score_model(first, val).metrics


def test_a_tie_takes_the_fewer_members(study):
    s, trials = study
    sel = select(s.info.uri, [trials[1], trials[1]], "auc_roc")  # the mean of a map and itself is the map
    assert sel.scores[0]["auc_roc"] == pytest.approx(sel.scores[1]["auc_roc"], abs=1e-12) and sel.k == 1


def test_trials_of_other_validation_images_or_scales_are_passed_over(study):
    s, trials = study
    other_split = Trial("t9", trials[2].run_id, trials[2].model_uri,
                        apply_overrides(trials[2].cfg, {"data.split_seed": 5}, "test"))
    other_scale = logged_trial(s, 3, **{"data.fov_diameter": 64.0})
    sel = select(s.info.uri, [trials[0], other_split, other_scale, trials[1]], "auc_roc")
    assert [t.trial_id for t in sel.trials] == ["t0", "t1"] and len(sel.scores) == 2
    assert "trial t9: data.split_seed is 5 where trial t0 has 0" in sel.skipped[0]
    with use_tracking_uri(s.info.uri):
        fov = recorded_fov(mlflow.pytorch.load_model(trials[0].model_uri))
    assert sel.skipped[1].startswith(f"trial t3: trained at a FOV of 64.0 px where trial t0 was at {fov}")


def test_the_logged_ensemble_is_the_mean_map_and_scores_as_selected(study):
    s, trials = study
    sel = select(s.info.uri, trials, "auc_roc")
    sel.k = 3  # whatever validation chose: the model of three
    run_id, uri = log_ensemble(s, sel)
    with use_tracking_uri(s.info.uri):
        model = mlflow.pytorch.load_model(uri)
        members = [mlflow.pytorch.load_model(t.model_uri) for t in trials]
        info = mlflow.models.get_model_info(uri)
        served = mlflow.pyfunc.load_model(uri)
        config = yaml.safe_load(open(f"{mlflow.artifacts.download_artifacts(uri)}/config.yaml"))
    x = torch.rand(2, 3, 50, 61)
    torch.testing.assert_close(model(x), sum(m(x) for m in members) / 3, rtol=0, atol=1e-6)
    assert score_model(model, sel.val).metrics == pytest.approx(sel.scores[2], abs=1e-5)  # float32 sums
    assert info.metadata["ensemble_members"] == 3
    assert info.metadata["trained_fov_diameter_px"] == recorded_fov(members[0]) == recorded_fov(model)
    assert [m["trial_id"] for m in config["ensemble"]] == ["t0", "t1", "t2"]
    image = (sel.val.images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # as a user has it
    want = model(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)  # at its training scale already
    np.testing.assert_allclose(served.predict(image), want.numpy(), atol=1e-6)
    run = s.client.get_run(run_id)
    assert run.data.tags["kind"] == "ensemble" and run.data.tags["ensemble_members"] == "t0,t1,t2"
    assert run.data.metrics["val_auc_roc"] == pytest.approx(sel.scores[2]["auc_roc"])
    assert s.client.get_run(s.info.parent_run_id).data.tags["ensemble_model_uri"] == uri
    assert log_ensemble(s, sel) == (run_id, uri), "the same members: the model logged before"



@pytest.mark.parametrize("before", ["the model", "the run's end", "the study's tags"])
def test_an_ensemble_whose_logging_was_cut_short_is_ended_by_the_resume(tmp_path, before, monkeypatch):
    """A driver stopped while it logged the ensemble: the resumed study's log_ensemble gives back the model logged
    (the run's best_model_uri said so) or logs it anew, and no ensemble run is left RUNNING."""
    from mlflow.tracking import MlflowClient

    s = Study.start(f"sqlite:///{tmp_path}/mlflow.db", "ensemble-cut", "s", {}, resume=False)
    sel = select(s.info.uri, [logged_trial(s, seed) for seed in (0, 1)], "auc_roc")
    sel.k = 2


    target, name = {"the model": (flavor, "log_model"),
                    "the run's end": (MlflowClient, "set_terminated"),
                    "the study's tags": (Study, "set_tags")}[before]
    monkeypatch.setattr(target, name, kill)
    with pytest.raises(Killed):
        log_ensemble(s, sel)
    monkeypatch.undo()
    run_id, uri = log_ensemble(s, sel)
    runs = s.client.search_runs([s.info.experiment_id], "tags.kind = 'ensemble'")
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []
    logged = [r for r in runs if "best_model_uri" in r.data.tags]
    assert [r.info.run_id for r in logged] == [run_id] and logged[0].info.status == "FINISHED"
    assert len(runs) == (2 if before == "the model" else 1), "a run cut short before its model: KILLED, beside"
    assert s.client.get_run(s.info.parent_run_id).data.tags["ensemble_model_uri"] == uri
    assert log_ensemble(s, sel) == (run_id, uri)
