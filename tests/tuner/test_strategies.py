"""Search strategies end to end on the synthetic data: PBT (exploits recorded in MLflow, the
champion's schedule reproducible from them) and a time budget that ends a study cleanly."""

import itertools
import json
import os
import subprocess
import sys

import pytest
from studies import ONE_STUDY_AT_A_TIME, history, quick_smoke, trial_runs

from tuner.space import PBT_KEEP

pytestmark = [pytest.mark.slow, ONE_STUDY_AT_A_TIME]


def run_study(work, space, name, *extra):
    return subprocess.run(
        [sys.executable, "-m", "tuner.run", "--space", str(space), "--name", name, "--storage", str(work / "ray"),
         "--tracking-uri", f"sqlite:///{work}/mlflow.db", *extra],
        cwd=work, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=900)


def pbt_record(client, runs, tmp_path):
    """Per trial: its schedule of lr_g (step, value), its pbt_exploits tag and its policy log's lines."""
    record = {}
    for r in runs:
        schedule = [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, "hp.optim.lr_g")]
        lines = []
        if any(a.path == "pbt" for a in client.list_artifacts(r.info.run_id)):
            folder = client.download_artifacts(r.info.run_id, "pbt", str(tmp_path / r.info.run_id))
            lines = [json.loads(ln) for f in sorted(os.listdir(folder)) for ln in open(os.path.join(folder, f))]
        record[r.data.tags["trial_id"]] = (schedule, int(r.data.tags.get("pbt_exploits", 0)), lines)
    return record


def stored_results(study, trial_id):
    """A trial's folder in Ray's storage and the results it holds (its result.json rows)."""
    (folder,) = study.glob(f"train_vgan_{trial_id}_*")
    return folder, [json.loads(ln) for ln in (folder / "result.json").read_text().splitlines()]


def numeric(config):
    return {k: v for k, v in config.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def study_exploits(client, study_run_id, tmp_path):
    path = client.download_artifacts(study_run_id, "pbt/pbt_global.txt", str(tmp_path / "global"))
    return [json.loads(ln) for ln in open(path)]


def test_pbt_study_records_its_exploits_and_the_schedule(tmp_path):
    space = quick_smoke(tmp_path / "pbt.yaml", "vgan-pbt", train={"epochs": 4},
                        tune={"scheduler": "pbt", "pbt_interval": 1, "num_samples": 4, "max_concurrent_trials": None})
    proc = run_study(tmp_path, space, "pbt")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # each checkpoint registered once, though a top trial's report and PBT's save both hand it over (CheckpointOnce)
    assert "Error handling checkpoint" not in proc.stdout + proc.stderr, proc.stdout[-3000:] + proc.stderr[-3000:]
    client, runs = trial_runs(f"sqlite:///{tmp_path}/mlflow.db", "vgan-pbt")
    assert len(runs) == 4 and {r.data.tags["status"] for r in runs} == {"completed"}
    record = pbt_record(client, runs, tmp_path)
    exploits = study_exploits(client, runs[0].data.tags["mlflow.parentRunId"], tmp_path)
    # the best trial's config says whether PBT trained its weights on a schedule of values (then these are its last)
    parent = client.get_run(runs[0].data.tags["mlflow.parentRunId"])
    (best,) = [r for r in runs if r.data.tags["trial_id"] == parent.data.tags["best_trial_id"]]
    header = open(client.download_artifacts(parent.info.run_id, "best_config.yaml", str(tmp_path))).read()
    assert ("PBT trained its weights on a schedule" in header) == (int(best.data.tags.get("pbt_exploits", 0)) > 0)
    assert exploits and all(len(ln) == 6 for ln in exploits)  # [target, clone, epochs, old config, new config]
    assert sum(n for _, n, _ in record.values()) == len(exploits), "every exploit of the study is on its trial's run"
    said = f"{len(exploits)} PBT exploit{'' if len(exploits) == 1 else 's'}"
    assert f"0 failed; {said}; trial compute" in proc.stdout  # the summary counts them
    new_values = {round(ln[5]["optim.lr_g"], 12) for ln in exploits}
    for trial_id, (schedule, n, lines) in record.items():
        # its own exploits (Ray numbers a trial's id and tag alike: 00002 and "2_..."), each counted, though one
        # that drew the same perturbation of the trial it cloned before leaves the values as they were
        own = [ln[5] for ln in exploits if ln[0].split("_")[0] == str(int(trial_id.rsplit("_", 1)[1]))]
        assert n == len(own)
        _, stored = stored_results(tmp_path / "ray" / "pbt", trial_id)
        values = [numeric(stored[0]["config"]), *map(numeric, own)]  # the config its first epoch trained with
        changes = sum(after != before for before, after in itertools.pairwise(values))
        # the schedule: the value epoch 1 trained with, then each change's at the first epoch trained with it
        assert schedule[0][0] == 1 and len(schedule) == 1 + changes
        assert {round(v, 12) for _, v in schedule[1:]} <= new_values
        assert [s for s, _ in schedule] == sorted(s for s, _ in schedule)
        if n:
            # a trial's own policy log is the lineage of its final weights: its last line is the
            # trial's last exploit, the lines before it the exploits of the trials it came from
            assert lines and lines[-1][5]["optim.lr_g"] == schedule[-1][1]
            assert all(ln in exploits for ln in lines)

    # Ray's results hold every epoch the driver saw, though PBT paused and restarted trials; the run
    # holds each of them once (an epoch a clone trains again too), but an end the trial said again
    epochs = {}
    for r in runs:
        folder, stored = stored_results(tmp_path / "ray" / "pbt", r.data.tags["trial_id"])
        own = {(row["epoch"], row["wall_time"]) for row in stored}
        reports = sorted((row["epoch"], int(row["wall_time"] * 1000)) for row in stored
                         if (row["epoch"], row.get("repeats")) not in own)
        epochs[r.data.tags["trial_id"]] = history(client, r, "epoch_s")
        assert epochs[r.data.tags["trial_id"]] == reports
        # stamped by the trial below the second and never back in time (a clone of a finished trial
        # says the clone's end again), as the schedule's order by time needs
        stamps = [row["wall_time"] for row in stored]
        assert all(isinstance(t, float) for t in stamps) and stamps == sorted(stamps), stamps
        # no more checkpoints than kept: none left by an exploit (tuner.pbt.TidyPBT)
        assert len(list(folder.glob("checkpoint_*"))) <= PBT_KEEP, sorted(p.name for p in folder.glob("checkpoint_*"))

    # tuner.replay into a fresh store: the same schedules, counts and logs from Ray's results alone
    replayed = subprocess.run(
        [sys.executable, "-m", "tuner.replay", "--space", str(space), "--name", "pbt", "--storage",
         str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path}/replayed.db"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert replayed.returncode == 0, replayed.stdout[-3000:] + replayed.stderr[-3000:]
    client2, runs2 = trial_runs(f"sqlite:///{tmp_path}/replayed.db", "vgan-pbt")
    assert pbt_record(client2, runs2, tmp_path / "replayed") == record
    assert {r.data.tags["trial_id"]: history(client2, r, "epoch_s") for r in runs2} == epochs
    assert study_exploits(client2, runs2[0].data.tags["mlflow.parentRunId"], tmp_path / "replayed") == exploits
    import optuna

    db = tmp_path / "ray" / "optuna.db"  # PBT samples with Ray: no Optuna study
    assert not db.exists() or "pbt" not in optuna.get_all_study_names(f"sqlite:///{db}")
    assert "registered vgan-pbt version 1 (challenger, champion)" in proc.stdout


def test_a_time_budget_ends_the_study_cleanly(tmp_path):
    """Trials of 300 epochs (minutes each) and a 30 s budget: the budget, not the trials, ends the
    study; what it stopped is `stopped` in MLflow (not pruned: no scheduler judged it), in Optuna pruned at its
    last epoch (FAIL, left out by the samplers, where it reported none), and the best so far is registered."""
    import optuna

    space = quick_smoke(tmp_path / "budget.yaml", "vgan-budget", train={"epochs": 300},
                        tune={"num_samples": 20, "grace_period": 300})
    # A first epoch reports about 8 s into the study on 2 idle cores; 15 s saw none with the CPU shared
    proc = run_study(tmp_path, space, "budget", "--time-budget", "30s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "time budget 30 s (spent" in proc.stdout
    client, runs = trial_runs(f"sqlite:///{tmp_path}/mlflow.db", "vgan-budget")
    assert runs and all(r.info.status == "FINISHED" and r.data.tags["status"] == "stopped" for r in runs)
    trials = optuna.load_study(study_name="budget", storage=f"sqlite:///{tmp_path}/ray/optuna.db").trials
    by_ray_id = {t.user_attrs["ray_trial_id"]: t for t in trials}
    for r in runs:
        t = by_ray_id[r.data.tags["trial_id"]]
        epoch = r.data.tags["stopped_at_epoch"]
        assert t.user_attrs["stopped"] == f"by the time budget at epoch {epoch}"
        assert t.state.name == ("PRUNED" if int(epoch) else "FAIL") and len(t.intermediate_values) == int(epoch)
    assert "KILLED" not in proc.stdout and "registered vgan-budget version 1 (challenger, champion)" in proc.stdout
    assert "stopped at epoch" in proc.stdout and "pruned at" not in proc.stdout  # the trial-end lines say it
    assert f"{len(runs)} stopped by the time budget" in proc.stdout


def test_a_budget_no_epoch_fits_in_says_so(tmp_path):
    """Epochs of minutes and a 20 s budget: the trials start, none reports, and the study says why; their
    runs end stopped and their Optuna trials FAIL (no evidence for the samplers), not as the leftovers of a
    killed driver."""
    import optuna

    space = quick_smoke(tmp_path / "budget.yaml", "vgan-budget", steps=2000, tune={"num_samples": 2})
    proc = run_study(tmp_path, space, "budget", "--time-budget", "20s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no trial reported an epoch within the time budget (20 s): nothing to register; give the study " \
           "more time (--time-budget, tune.time_budget_s)" in proc.stdout
    assert "registered" not in proc.stdout and "There are no complete trials" not in proc.stderr
    assert "left running" not in proc.stdout
    client, runs = trial_runs(f"sqlite:///{tmp_path}/mlflow.db", "vgan-budget")
    assert runs and {(r.info.status, r.data.tags["status"]) for r in runs} == {("FINISHED", "stopped")}
    trials = optuna.load_study(study_name="budget", storage=f"sqlite:///{tmp_path}/ray/optuna.db").trials
    assert trials and {(t.state.name, t.user_attrs["stopped"]) for t in trials} == {
        ("FAIL", "by the time budget at epoch 0")}
