"""Search strategies end to end on the synthetic data: PBT (exploits recorded in MLflow, the
champion's schedule reproducible from them) and a time budget that ends a study cleanly."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, write_yaml
from studies import trial_runs

pytestmark = pytest.mark.slow
SMOKE = REPO / "search_spaces" / "smoke.yaml"


def run_study(work, space, name, *extra):
    return subprocess.run(
        [sys.executable, "-m", "tuner.run", "--space", str(space), "--name", name, "--storage", str(work / "ray"),
         "--tracking-uri", f"sqlite:///{work}/mlflow.db", *extra],
        cwd=work, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=900)


def smoke(work, experiment, **tune):
    values = yaml.safe_load(SMOKE.read_text())
    values["tune"].update(tune)
    values["mlflow"] = {"experiment": experiment, "registered_model": experiment}
    return write_yaml(work / f"{experiment}.yaml", values)


def test_pbt_study_records_its_exploits_and_the_schedule(tmp_path):
    space = smoke(tmp_path, "vgan-pbt", scheduler="pbt", pbt_interval=1, num_samples=4)
    proc = run_study(tmp_path, space, "pbt")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client, runs = trial_runs(f"sqlite:///{tmp_path}/mlflow.db", "vgan-pbt")
    assert len(runs) == 4 and {r.data.tags["status"] for r in runs} == {"completed"}
    exploited = [r for r in runs if int(r.data.tags.get("pbt_exploits", 0)) >= 1]
    assert exploited, "PBT cloned at least one trial"
    for r in exploited:
        # the schedule: every hyperparameter's value from epoch 1 on, a new value where PBT changed it
        history = client.get_metric_history(r.info.run_id, "hp.optim.lr_g")
        assert history[0].step == 1 and len(history) == 1 + int(r.data.tags["pbt_exploits"])
        policy = client.download_artifacts(r.info.run_id, "pbt", str(tmp_path / r.info.run_id))
        lines = [json.loads(ln) for f in os.listdir(policy) for ln in open(os.path.join(policy, f))]
        assert lines and all(len(ln) == 6 for ln in lines)  # [target, clone, epochs, old config, new config]
        assert {round(h.value, 12) for h in history[1:]} <= {round(ln[5]["optim.lr_g"], 12) for ln in lines}
    import optuna

    db = tmp_path / "ray" / "optuna.db"  # PBT samples with Ray: no Optuna study
    assert not db.exists() or "pbt" not in optuna.get_all_study_names(f"sqlite:///{db}")
    assert "registered vgan-pbt version 1 (challenger, champion)" in proc.stdout


def test_a_time_budget_ends_the_study_cleanly(tmp_path):
    """Trials of 300 epochs (minutes each) and a 30 s budget: the budget, not the trials, ends the
    study; what it stopped is pruned in MLflow and in Optuna, and the best so far is registered."""
    import optuna

    values = yaml.safe_load(SMOKE.read_text())
    values["train"]["epochs"] = 300
    values["tune"].update(num_samples=20, grace_period=300)
    values["mlflow"] = {"experiment": "vgan-budget", "registered_model": "vgan-budget"}
    proc = run_study(tmp_path, write_yaml(tmp_path / "budget.yaml", values), "budget", "--time-budget", "30s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "time budget 30 s (spent" in proc.stdout
    client, runs = trial_runs(f"sqlite:///{tmp_path}/mlflow.db", "vgan-budget")
    assert runs and all(r.info.status == "FINISHED" and r.data.tags["status"] == "pruned" for r in runs)
    trials = optuna.load_study(study_name="budget", storage=f"sqlite:///{tmp_path}/ray/optuna.db").trials
    ray_ids = {t.user_attrs["ray_trial_id"]: t.state.name for t in trials}
    assert {ray_ids[r.data.tags["trial_id"]] for r in runs} == {"PRUNED"}, ray_ids
    assert "KILLED" not in proc.stdout and "registered vgan-budget version 1 (challenger, champion)" in proc.stdout
    assert "pruned at epoch" in proc.stdout  # the trial-end lines say what the budget did
