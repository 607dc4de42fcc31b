"""benchmarks.ui_shots finds the pages a user opens from the store itself (the best trial the study
recorded), and names what is missing."""

from pathlib import Path

import pytest

from benchmarks.ui_shots import pages
from tuner.tracking import Study, use_tracking_uri


@pytest.fixture
def client(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    study = Study.start(uri, "vgan-smoke", "s1", {}, resume=False)
    c, exp = study.client, study.info.experiment_id
    # the study ranks by its 3-epoch signal, on which b is best (on its best single epoch, c is)
    for trial, mean3, best in (("a", 0.90, 0.91), ("b", 0.96, 0.97), ("c", 0.93, 0.99)):
        run = c.create_run(exp, tags={"mlflow.parentRunId": study.info.parent_run_id, "trial_id": trial,
                                      "study": "s1"})
        c.log_metric(run.info.run_id, "best_val_auc_roc_mean3", mean3)
        c.log_metric(run.info.run_id, "best_val_auc_roc", best)
        if trial == "b":
            best_run = run.info.run_id
    study.set_tags({"best_trial_id": "b", "best_val_auc_roc_mean3": "0.96"})  # as tuner.run's summary does
    other = Study.start(uri, "vgan-smoke", "s0", {}, resume=False)  # another study's trial b, scored higher
    run = c.create_run(exp, tags={"mlflow.parentRunId": other.info.parent_run_id, "trial_id": "b", "study": "s0"})
    c.log_metric(run.info.run_id, "best_val_auc_roc_mean3", 0.99)
    other.set_tags({"best_trial_id": "b"})
    Study.start(uri, "vgan-smoke", "running", {}, resume=False)
    c.create_registered_model("m")
    v = c.create_model_version("m", "runs:/x/model", run_id=best_run)
    c.set_registered_model_alias("m", "champion", v.version)
    return c, exp, best_run


def test_the_pages_are_the_study_view_its_best_trial_and_the_champion(client):
    c, exp, best = client
    urls = pages(c, "vgan-smoke", "s1", "m", "http://h")
    assert urls["runs"] == f"http://h/#/experiments/{exp}/runs?workflowType=machine_learning&viewStateShareKey=s1"
    assert urls["trial"] == f"http://h/#/experiments/{exp}/runs/{best}?workflowType=machine_learning"
    assert urls["version"] == "http://h/#/models/m/versions/1"
    assert "batches" not in urls  # no batch recorded in this store
    assert "champion_model" not in urls  # version 1 was registered from a run's folder, not a logged model
    logged = c.create_logged_model(exp, name="b completed")
    with use_tracking_uri(c.tracking_uri):  # MLflow resolves a models:/ source through its global store
        v = c.create_model_version("m", f"models:/{logged.model_id}", run_id=best)
    c.set_registered_model_alias("m", "champion", v.version)
    urls = pages(c, "vgan-smoke", "s1", "m", "http://h")
    assert urls["version"] == "http://h/#/models/m/versions/2"
    assert urls["champion_model"] == f"http://h/#/experiments/{exp}/models/{logged.model_id}"
    from tuner.batches import BatchRun

    BatchRun.start(c.tracking_uri, "vgan-predictions", Path("maps"), ["m/1"], None, {})
    batches = c.get_experiment_by_name("vgan-predictions").experiment_id
    assert pages(c, "vgan-smoke", "s1", "m", "http://h")["batches"] == \
        f"http://h/#/experiments/{batches}/runs?workflowType=machine_learning&viewStateShareKey=batches"


@pytest.mark.parametrize("experiment, study, model, fragment", [
    ("nope", "s1", "m", "--experiment: no experiment 'nope'"),
    ("vgan-smoke", "s2", "m", "--study: no study 's2' in experiment 'vgan-smoke'"),
    ("vgan-smoke", "running", "m", "--study: study 'running' has no best trial yet"),
    ("vgan-smoke", "s1", "other", "--model: no version of 'other' is aliased champion"),
])
def test_what_is_missing_is_named(client, experiment, study, model, fragment):
    with pytest.raises(SystemExit, match=fragment):
        pages(client[0], experiment, study, model, "http://h")
