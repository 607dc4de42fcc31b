"""benchmarks.ui_shots finds the pages a user opens from the store itself, and names what is missing."""

import pytest
from mlflow.tracking import MlflowClient

from benchmarks.ui_shots import pages


@pytest.fixture
def client(tmp_path):
    c = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = c.create_experiment("vgan-smoke")
    parent = c.create_run(exp, tags={"kind": "study", "study": "s1"})
    for trial, score in (("a", 0.91), ("b", 0.97), ("c", 0.95)):
        run = c.create_run(exp, tags={"mlflow.parentRunId": parent.info.run_id, "trial_id": trial})
        c.log_metric(run.info.run_id, "best_val_auc_roc", score)
        if trial == "b":
            best = run.info.run_id
    c.create_registered_model("m")
    v = c.create_model_version("m", "runs:/x/model", run_id=best)
    c.set_registered_model_alias("m", "champion", v.version)
    return c, exp, best


def test_the_pages_are_the_study_view_its_best_trial_and_the_champion(client):
    c, exp, best = client
    urls = pages(c, "vgan-smoke", "s1", "m", "http://h")
    assert urls["runs"] == f"http://h/#/experiments/{exp}/runs?workflowType=machine_learning&viewStateShareKey=s1"
    assert urls["trial"] == f"http://h/#/experiments/{exp}/runs/{best}?workflowType=machine_learning"
    assert urls["version"] == "http://h/#/models/m/versions/1"


@pytest.mark.parametrize("experiment, study, model, fragment", [
    ("nope", "s1", "m", "--experiment: no experiment 'nope'"),
    ("vgan-smoke", "s2", "m", "--study: no study 's2' in experiment 'vgan-smoke'"),
    ("vgan-smoke", "s1", "other", "--model: no version of 'other' is aliased champion"),
])
def test_what_is_missing_is_named(client, experiment, study, model, fragment):
    with pytest.raises(SystemExit, match=fragment):
        pages(client[0], experiment, study, model, "http://h")
