"""The quick start's main command as a newcomer runs it: the shipped smoke space, a whole search for real (Ray,
Optuna, ASHA, MLflow and the registry), and what it leaves to look at."""

import json
import os
import shlex
import subprocess
import sys

import pytest
import yaml
from studies import BESIDE_THE_STUDIES, SMOKE

from tuner.tracking import use_tracking_uri
from vgan.provenance import code_version, cpu_name

pytestmark = BESIDE_THE_STUDIES


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory, ray_tmpdir):
    work = tmp_path_factory.mktemp("smoke")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmpdir)}
    proc = subprocess.run(
        [sys.executable, "-m", "tuner.run", "--space", str(SMOKE), "--name", "smoke",
         "--storage", str(work / "ray"), "--tracking-uri", f"sqlite:///{work}/mlflow.db"],
        cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work, proc.stdout


@pytest.mark.slow
def test_smoke_study_end_to_end(smoke_study):
    import mlflow.pytorch
    import optuna
    import torch
    from mlflow.tracking import MlflowClient

    work, out = smoke_study
    space = yaml.safe_load(SMOKE.read_text())
    epochs = space["train"]["epochs"]

    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{work}/ray/optuna.db")
    trials = study.trials
    assert len(trials) >= 6
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, [t.state for t in trials]
    assert all(max(t.intermediate_values) < epochs for t in pruned)

    client = MlflowClient(f"sqlite:///{work}/mlflow.db")
    exp = client.get_experiment_by_name(space["mlflow"]["experiment"])
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("kind") == "study"]
    assert len(parents) == 1
    # what ran the study, as the run page's Source shows it, and the same commit on the version it registered
    commit, dirty = code_version()
    tags, version = parents[0].data.tags, client.get_model_version("vgan-generator-synthetic", "1").tags
    assert tags["mlflow.source.name"] == "python -m tuner.run" and tags["mlflow.source.git.commit"] == commit
    assert version["git_commit"] == commit and tags.get("git_dirty") == version.get("git_dirty") == \
        ("true" if dirty else None)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == len(trials)
    statuses = {r.data.tags["status"] for r in children}
    assert "pruned" in statuses and statuses <= {"completed", "pruned", "failed"}
    for r in children:
        assert r.data.tags["node_id"] and r.data.tags["trial_id"] and r.data.tags["mlflow.source.git.commit"] == commit
        # what it trained on: this CPU, each trial with its resources.cpu's threads
        assert r.data.tags["environment"].startswith(f"torch {torch.__version__} on {cpu_name()}, "), r.data.tags
        history = client.get_metric_history(r.info.run_id, "val_auc_roc")
        steps = sorted(m.step for m in history)
        assert steps == list(range(1, len(steps) + 1)) and steps
        if r.data.tags["status"] == "pruned":
            assert int(r.data.tags["pruned_at_epoch"]) == steps[-1] < epochs
        else:
            assert steps[-1] == epochs
        assert r.data.tags.get("best_model_uri"), "every trial logs its best generator"
        assert "optim.lr_g" in r.data.params

    # one score everywhere: Optuna's best trial, the study's best (the registered one) and the MLflow
    # column best_val_auc_roc name the same trial, and Optuna's value is that trial's best epoch
    by_trial = {r.data.tags["trial_id"]: r for r in children}
    best_optuna = study.best_trial
    best_id = parents[0].data.tags["best_trial_id"]
    assert best_optuna.user_attrs["ray_trial_id"] == best_id
    assert version["environment"] == by_trial[best_id].data.tags["environment"]
    scores = {t: r.data.metrics["best_val_auc_roc"] for t, r in by_trial.items() if r.data.tags["status"] != "failed"}
    assert max(scores, key=scores.get) == best_id
    assert best_optuna.value == pytest.approx(scores[best_id]) == float(parents[0].data.tags["best_val_auc_roc"])
    history = [m.value for m in client.get_metric_history(by_trial[best_id].info.run_id, "val_auc_roc")]
    assert scores[best_id] == pytest.approx(max(history)), "the score is the best epoch's, not the last one's"
    # Optuna's trials and MLflow's runs name each other
    for t in trials:
        run = by_trial[t.user_attrs["ray_trial_id"]]
        assert run.data.tags["optuna_trial_number"] == str(t.number)
        assert t.user_attrs.get("mlflow_run_id", run.info.run_id) == run.info.run_id
    assert sum("mlflow_run_id" in t.user_attrs for t in trials) >= len(trials) // 2

    parent_artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"trials.csv", "best_config.yaml", "optuna"} <= parent_artifacts
    with open(client.download_artifacts(parents[0].info.run_id, "trials.csv", str(work))) as f:
        first = [line.split(",")[0] for line in f.read().splitlines()]
    assert first[0] == "trial" and all(" " in name for name in first[1:])  # never a number to MLflow's viewer

    with use_tracking_uri(f"sqlite:///{work}/mlflow.db"):  # as a user points MLflow at the study's store
        champion = mlflow.pytorch.load_model("models:/vgan-generator-synthetic@champion")
    probs = champion(torch.rand(1, 3, 584, 565))
    assert probs.shape == (1, 1, 584, 565) and 0 <= probs.min() and probs.max() <= 1
    assert "registered vgan-generator-synthetic version 1 (challenger, champion)" in out


def test_the_study_reads_at_a_glance_in_mlflow(smoke_study):
    """What the UI shows, asserted through the API: a model-training experiment, runs and logged models
    named after their trial and outcome, metrics on the logged models linked to their split, no config tag."""
    from mlflow.tracking import MlflowClient

    work, out = smoke_study
    client = MlflowClient(f"sqlite:///{work}/mlflow.db")
    exp = client.get_experiment_by_name("vgan-smoke")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = [r for r in client.search_runs([exp.experiment_id], max_results=100) if r.data.tags.get("kind") != "study"]
    assert len(runs) >= 6
    models = {m.source_run_id: m for m in client.search_logged_models([exp.experiment_id], max_results=100)}
    for r in runs:
        status, trial = r.data.tags["status"], r.data.tags["trial_id"]
        label = f"pruned at epoch {r.data.tags['pruned_at_epoch']}" if status == "pruned" else status
        assert r.info.run_name == f"{trial} {label}"
        model = models[r.info.run_id]
        assert model.name == r.info.run_name
        linked = {(m.key, m.dataset_name) for m in model.metrics}
        assert ("val_auc_roc", "synthetic-val") in linked
    # the link the study prints opens MLflow's UI on a view of its trials (an experiment tag the UI reads)
    view = json.loads(exp.tags["mlflow.sharedViewState.smoke"])
    assert {r.info.run_id for r in client.search_runs([exp.experiment_id], view["searchFilter"])} == \
        {r.info.run_id for r in runs}
    assert "metrics.`best_val_auc_roc`" in view["selectedColumns"] and "params.`optim.lr_g`" in view["selectedColumns"]
    assert f"#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning&viewStateShareKey=smoke" in out
    mv = client.get_model_version_by_alias("vgan-generator-synthetic", "champion")
    assert "config" not in mv.tags and mv.description and mv.tags["decision"] == "promoted"
    champion_model = client.get_logged_model(mv.source.removeprefix("models:/"))
    assert ("test_auc_roc", "synthetic-test") in {(m.key, m.dataset_name) for m in champion_model.metrics}


def test_the_console_says_what_a_user_needs_and_the_logs_keep_the_rest(smoke_study, tmp_path, monkeypatch):
    work, out = smoke_study
    lines = out.splitlines()
    assert len(lines) < 40, out
    ends = [ln for ln in lines if ln.startswith("trial ")]
    assert len(ends) >= 6 and all(": best_val_auc_roc " in ln for ln in ends), ends
    assert any(" pruned at epoch " in ln for ln in ends) and any(" completed: " in ln for ln in ends)
    for noise in ("Checkpoint successfully created", "TensorBoard", "Downloading artifacts", "╭"):
        assert noise not in out
    log = (work / "ray" / "smoke.log").read_text()
    assert "== Status ==" in log and "Trial name" in log and lines[0] in log  # Ray's table, and the console
    trial_dirs = [d for d in (work / "ray" / "smoke").iterdir() if d.is_dir() and d.name.startswith("train_vgan")]
    assert trial_dirs and all((d / "stdout").is_file() and (d / "stderr").is_file() for d in trial_dirs)
    # what its trials trained is kept with the study, for a resume to be checked against
    from tuner.space import load_space, trial_recipe

    assert json.loads((work / "ray" / "smoke" / "recipe.json").read_text()) == trial_recipe(load_space(SMOKE))
    # and where its Optuna study is, for a resume or a replay given another database to be told
    assert (work / "ray" / "smoke" / "study_db.txt").read_text() == f"sqlite:///{work}/ray/optuna.db\n"
    # the champion's export it gives runs as given, where the study ran (its store the default one there)
    from tuner.export import main as export_main
    from vgan.export import read_metadata

    given = next(ln for ln in lines if "python -m tuner.export" in ln).split("python -m tuner.export", 1)[1]
    monkeypatch.chdir(work)
    assert export_main(shlex.split(given.replace("FILE.onnx", str(tmp_path / "champion.onnx")))) == 0
    assert read_metadata(tmp_path / "champion.onnx")["source"] == "models:/vgan-generator-synthetic/1"


@pytest.mark.slow
def test_ray_session_goes_with_a_study_that_ends_and_stays_named_after_a_crash(smoke_study, ray_tmpdir, tmp_path):
    assert list(ray_tmpdir.iterdir()) == [], "the smoke study ended: its Ray session folder is gone"
    crash = ("import sys, tuner.run as run\n"
             "def crash(plan): raise RuntimeError('boom')\n"
             "run._run = crash\n"
             f"sys.exit(run.main(['--space', {str(SMOKE)!r}, '--storage', {str(tmp_path / 'ray')!r}, "
             f"'--tracking-uri', 'sqlite:///{tmp_path}/mlflow.db']))")
    proc = subprocess.run([sys.executable, "-c", crash], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RAY_TMPDIR": str(ray_tmpdir)})
    assert proc.returncode == 1 and "RuntimeError: boom" in proc.stderr, proc.stderr[-3000:]
    (kept,) = ray_tmpdir.iterdir()
    assert f"Ray's own logs of this study: {kept / 'session_latest' / 'logs'}" in proc.stderr
    assert (kept / "session_latest" / "logs" / "raylet.out").is_file(), "what it names holds Ray's logs"
