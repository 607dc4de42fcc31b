"""The MLflow projection of trials, on a real SQLite store: one run per trial, each epoch once,
outcomes as tuner.outcome decides them, idempotent for a resumed driver and for tuner.replay."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.fs
import pytest
import torch
from conftest import TINY
from faults import Killed, kill

from tuner.outcome import decide
from tuner.projection import MlflowCallback, Projection, TrialRecord, project_trials
from tuner.storage import BEST_DIR, METRICS_FILE
from tuner.tracking import Study, resolve_tracking_uri
from tuner.trainable import BestEpoch
from vgan.config import config_from_dict
from vgan.data import load_train_val
from vgan.errors import ConfigError
from vgan.trainer import Trainer

EPOCHS = 3


@pytest.fixture
def study(tmp_path):
    return Study.start(f"sqlite:///{tmp_path}/mlflow.db", "projection-test", "s1", {}, resume=False)


def projection(study):
    return Projection(study.info, config_from_dict(TINY).to_dict(), EPOCHS)


def rows(*scores):
    return [{"trial_id": "t1", "epoch": e, "epoch_s": 0.1, "val_auc_roc": s, "best_val_auc_roc": max(scores[:e]),
             "loss_g": float("nan") if e == 1 else 0.5, "timestamp": 1_700_000_000 + e}
            for e, s in enumerate(scores, 1)]


def test_one_run_per_trial_whoever_asks_first(study):
    p = projection(study)
    run_id = p.open("t1", {"optim.lr_g": 0.01})
    # a resumed driver (a fresh projection) or tuner.replay finds the same run
    assert projection(study).open("t1", {"optim.lr_g": 0.01}, running=False) == run_id
    run = study.client.get_run(run_id)
    assert run.data.params == {"optim.lr_g": "0.01"} and run.data.tags["trial_id"] == "t1"
    assert run.data.tags["mlflow.parentRunId"] == study.info.parent_run_id
    with open(study.client.download_artifacts(run_id, "config.yaml")) as f:
        assert f.read().count("lr_g: 0.01") == 1  # base config + sampled params
    assert p.open("t2", {}) != run_id and len(study.child_runs()) == 2


def test_a_run_found_unlinked_is_linked_to_its_optuna_trial(study, tmp_path):
    """A driver (or a replay) that died between creating a trial's run and linking it: the next one to find the
    run links it, and tells Optuna's running trial its run."""
    import optuna

    run_id = projection(study).open("t1", {})  # no Optuna study: an unlinked run
    url = f"sqlite:///{tmp_path}/optuna.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study(study_name="s1", storage=url).ask()
    trial.set_user_attr("ray_trial_id", "t1")
    linked = Projection(study.info, config_from_dict(TINY).to_dict(), EPOCHS, (url, "s1"))
    assert linked.open("t1", {}) == run_id
    assert study.client.get_run(run_id).data.tags["optuna_trial_number"] == "0"
    assert optuna.load_study(study_name="s1", storage=url).trials[0].user_attrs["mlflow_run_id"] == run_id


@pytest.mark.parametrize("write", ["_log_params", "_log_config"])
def test_a_run_whose_creating_driver_died_gets_its_params_and_config_from_the_next(study, write, monkeypatch):
    """Killed after creating a trial's run, before its params (or its config.yaml): the next driver to open it
    writes what is missing, once."""
    p = projection(study)


    monkeypatch.setattr(p, write, kill)
    with pytest.raises(Killed):
        p.open("t1", {"optim.lr_g": 0.01})
    monkeypatch.undo()
    run_id = projection(study).open("t1", {"optim.lr_g": 0.01})
    complete = projection(study)  # a run with its params has its config.yaml: not asked for again
    monkeypatch.setattr(complete.client, "list_artifacts", kill)
    assert complete.open("t1", {"optim.lr_g": 0.01}) == run_id and len(study.child_runs()) == 1
    run = study.client.get_run(run_id)
    assert run.data.params == {"optim.lr_g": "0.01"}
    assert [a.path for a in study.client.list_artifacts(run_id)] == ["config.yaml"]
    with open(study.client.download_artifacts(run_id, "config.yaml")) as f:
        assert f.read().count("lr_g: 0.01") == 1


def test_each_epoch_once_with_the_epoch_as_step(study):
    p = projection(study)
    p.open("t1", {})
    assert p.log_epochs("t1", rows(0.7, 0.8)[:1]) == 1
    assert p.log_epochs("t1", rows(0.7, 0.8)) == 1  # epoch 1 again: not twice
    again = projection(study)  # a resumed driver asks the run what it holds
    again.open("t1", {})
    assert again.log_epochs("t1", rows(0.7, 0.8, 0.75)) == 1
    history = study.client.get_metric_history(p._runs["t1"], "val_auc_roc")
    assert [(m.step, m.value) for m in history] == [(1, 0.7), (2, 0.8), (3, 0.75)]
    best = study.client.get_metric_history(p._runs["t1"], "best_val_auc_roc")
    assert [m.value for m in best] == [0.7, 0.8, 0.8], "the trial's score is logged with every epoch"
    assert [m.step for m in study.client.get_metric_history(p._runs["t1"], "loss_g")] == [2, 3]  # NaN not logged


def test_an_epoch_trained_again_is_a_second_value_and_an_end_said_again_is_not(study):
    """A PBT clone of a trial one epoch behind trains epoch 2 again: both reports are on the run, the
    newer its value. A finished trial restarted says its last report again (`repeats`): nothing new
    on its own run, the end on a PBT clone's run that lacks it. Live, resumed and replayed alike."""
    trained = [{**r, "wall_time": r["timestamp"] + 0.25} for r in rows(0.7, 0.8)]
    retrained = {**rows(0.7, 0.75)[1], "wall_time": trained[-1]["wall_time"] + 3.5}
    said_again = {**retrained, "wall_time": retrained["wall_time"] + 1.0, "repeats": retrained["wall_time"]}
    reports = [*trained, retrained, said_again]
    cb = MlflowCallback(projection(study), window_s=5)

    class Trial:
        trial_id, config, storage = "t1", {}, None

    cb.log_trial_start(Trial)
    for r in reports:  # the live driver: Tune's results as the trial reported them, Ray's keys added
        cb.log_trial_result(r["epoch"], Trial, {**r, "done": False, "time_total_s": 1.0})
    assert cb.drain(5)
    (run,) = study.child_runs()
    history = study.client.get_metric_history(run.info.run_id, "val_auc_roc")
    assert sorted((m.step, m.value, m.timestamp) for m in history) == [
        (1, 0.7, int(trained[0]["wall_time"] * 1000)), (2, 0.75, int(retrained["wall_time"] * 1000)),
        (2, 0.8, int(trained[1]["wall_time"] * 1000))]
    assert run.data.metrics["val_auc_roc"] == 0.75, "the newer report of an epoch is the run's value"
    resumed = projection(study)  # a resumed driver's end-of-study pass over Ray's stored rows
    resumed.open("t1", {}, running=False)
    assert resumed.log_epochs("t1", reports) == 0
    replay = Study.start(study.info.uri, "projection-test", "s2", {}, resume=False)
    fresh = projection(replay)
    run2 = fresh.open("t1", {}, running=False)
    assert fresh.log_epochs("t1", reports) == 3
    assert sorted((m.step, m.value, m.timestamp) for m in replay.client.get_metric_history(run2, "val_auc_roc")) \
        == sorted((m.step, m.value, m.timestamp) for m in history)
    # a PBT clone of the finished trial says its end again: that end is new to the clone's run
    clone = fresh.open("t2", {})
    assert fresh.log_epochs("t2", [trained[0], said_again]) == 2 and fresh.log_epochs("t2", [said_again]) == 0
    assert [m.step for m in replay.client.get_metric_history(clone, "epoch_s")] == [1, 2]


def schedule_rows():
    """Rows as Ray's results hold them under PBT: exploited after epochs 2 and 4, the second time
    cloning a trial one epoch behind (the epoch goes back to 4); the GAN's kind is a string."""
    a = {"optim.lr_g": 0.01, "loss.adv_weight": 0.1, "loss.adversarial": "vanilla"}
    b, c = {**a, "optim.lr_g": 0.008}, {**a, "optim.lr_g": 0.0096, "loss.adv_weight": 0.12}
    return [{**row, "epoch": epoch, "config": cfg}
            for row, epoch, cfg in zip(rows(*[0.7] * 6), [1, 2, 3, 4, 4, 5], [a, a, b, b, c, c], strict=True)]


def hp_history(study, run_id, key="optim.lr_g"):
    return [(m.step, m.value) for m in study.client.get_metric_history(run_id, f"hp.{key}")]


def test_the_schedule_is_each_change_once_whoever_logs_it(study):
    p = projection(study)
    run_id = p.open("t1", {})
    assert p.log_schedule("t1", schedule_rows()) == 3
    assert hp_history(study, run_id) == [(1, 0.01), (3, 0.008), (4, 0.0096)]
    assert hp_history(study, run_id, "loss.adv_weight") == [(1, 0.1), (3, 0.1), (4, 0.12)]
    assert "hp.loss.adversarial" not in study.client.get_run(run_id).data.metrics
    assert p.log_schedule("t1", schedule_rows()) == 0, "replayed: nothing twice"
    # the live driver, resumed: it sees the last config again, which the run holds
    again = projection(study)
    again.open("t1", {})
    assert again.log_schedule("t1", schedule_rows()[-1:]) == 0 and len(hp_history(study, run_id)) == 3

    # live up to the first exploit, then an outage: tuner.replay adds only what is missing
    other = Study.start(study.info.uri, "projection-test", "s2", {}, resume=False)
    live = Projection(other.info, config_from_dict(TINY).to_dict(), EPOCHS)
    run2 = live.open("t1", {})
    for r in schedule_rows()[:3]:
        live.log_schedule("t1", [r])
    assert hp_history(other, run2) == [(1, 0.01), (3, 0.008)]
    replay = Projection(other.info, config_from_dict(TINY).to_dict(), EPOCHS)
    replay.open("t1", {}, running=False)
    assert replay.log_schedule("t1", schedule_rows()) == 1
    assert hp_history(other, run2) == hp_history(study, run_id)

    # rows Ray's storage lost (a sync behind a restart): what is left agrees with the run, adds nothing
    lossy = projection(study)
    lossy.open("t1", {}, running=False)
    assert lossy.log_schedule("t1", [schedule_rows()[i] for i in (1, 3, 5)]) == 0
    assert hp_history(study, run_id) == [(1, 0.01), (3, 0.008), (4, 0.0096)]


def test_an_exploit_and_the_clones_first_epoch_in_one_second_are_one_change(study):
    """Ray stamps results in whole seconds: the row that made the trial exploit (old config) and the
    clone's first row (new config) can share one. Live and replayed, that is one change, not a
    change, a change back and the change again (the count PBT studies once got 2 too high)."""
    same_second = schedule_rows()[:4]
    same_second[2]["timestamp"] = same_second[1]["timestamp"]
    p = projection(study)
    run_id = p.open("t1", {})
    assert [p.log_schedule("t1", [r]) for r in same_second] == [1, 0, 1, 0]  # the live driver, row by row
    assert p.log_schedule("t1", same_second) == 0, "then project_trials over Ray's stored rows"
    assert hp_history(study, run_id) == [(1, 0.01), (3, 0.008)]
    replay = Study.start(study.info.uri, "projection-test", "s2", {}, resume=False)
    fresh = projection(replay)
    run2 = fresh.open("t1", {}, running=False)
    assert fresh.log_schedule("t1", same_second) == 2 and hp_history(replay, run2) == hp_history(study, run_id)


def test_a_trial_without_configs_in_its_rows_logs_no_schedule(study):
    p = projection(study)
    run_id = p.open("t1", {})
    assert p.log_schedule("t1", rows(0.7, 0.8)) == 0 and hp_history(study, run_id) == []


def test_outcomes_are_decided_once():
    assert str(decide({"epoch": 6}, None, 6)) == "completed"
    assert decide({"epoch": 2}, None, 6).tags == {"status": "pruned", "pruned_at_epoch": "2"}
    diverged = decide({"epoch": 1, "diverged": 1, "error": "diverged at epoch 1 (loss_d = nan)"}, None, 6)
    assert diverged.tags == {"status": "failed", "error": "diverged at epoch 1 (loss_d = nan)"}
    crashed = decide({"epoch": 2}, "Traceback (most recent call last):\n  ...\nRuntimeError: boom\n", 6)
    assert crashed.status == "failed" and crashed.error == "RuntimeError: boom" and crashed.epoch == 2
    assert decide(None, None, 6).tags == {"status": "pruned", "pruned_at_epoch": "0"}
    # the study's time budget, not the scheduler, ended it: no judgement of its config
    stopped = decide({"epoch": 2}, None, 6, stopped=True)
    assert stopped.tags == {"status": "stopped", "stopped_at_epoch": "2"}
    assert stopped.name("t1") == "t1 stopped at epoch 2"
    assert decide({"epoch": 6}, None, 6, stopped=True).status == "completed"  # its last epoch was in
    assert decide({"epoch": 2}, "RuntimeError: boom", 6, stopped=True).status == "failed"


def trial_folder(tmp_path, scores, error=None):
    """A trial folder as Ray's storage holds it: params, result.json, a checkpoint with best/."""
    folder = tmp_path / "study" / "train_vgan_t1"
    ckpt = folder / "checkpoint_000001"
    cfg = config_from_dict(TINY)
    trainer = Trainer(cfg, *load_train_val(cfg.data), torch.device("cpu"))
    best = BestEpoch(tmp_path / "work" / BEST_DIR)
    best.keep(trainer, trainer.run_epoch())
    ckpt.mkdir(parents=True)
    best.copy_into(ckpt / BEST_DIR, trainer)
    (folder / "params.json").write_text(json.dumps({"optim.lr_g": 0.01}))
    reported = rows(*scores)
    best_epoch = json.loads((ckpt / BEST_DIR / METRICS_FILE).read_text())
    reported[0].update({k: v for k, v in best_epoch.items() if k.startswith("val_")})  # epoch 1 is best/'s
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in reported))
    if error:
        (folder / "error.txt").write_text(error)
    return TrialRecord.read(pyarrow.fs.LocalFileSystem(), str(folder))


def test_project_trials_puts_a_finished_trial_into_mlflow_once(study, tmp_path):
    record = trial_folder(tmp_path, [0.7, 0.8])  # stopped at epoch 2 of 3: pruned
    source = {"mlflow.source.name": "python -m tuner.run", "mlflow.source.git.commit": "c0ffee", "git_dirty": "true",
              "resumed_git_commits": "decaf (edited)"}
    study.set_tags(source)  # what ran the study (tuner.run tags its run so): its trials' runs say the same
    said = []
    project_trials(projection(study), [record], said.append)
    (run,) = study.child_runs()
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "pruned"
    assert source.items() <= run.data.tags.items()
    assert run.data.tags["pruned_at_epoch"] == "2" and run.data.tags["best_model_uri"].startswith("models:/")
    assert said == ["t1: 2 epoch(s) added, pruned at epoch 2"]
    history = study.client.get_metric_history(run.info.run_id, "val_auc_roc")
    assert [m.step for m in history] == [1, 2], "the best epoch once in the run, though its model carries it too"
    model = study.client.get_logged_model(run.data.tags["best_model_uri"].removeprefix("models:/"))
    (linked,) = [m for m in model.metrics if m.key == "val_auc_roc"]
    assert linked.step == int(run.data.tags["best_epoch"]) and linked.dataset_name.endswith("-val")
    assert model.params == run.data.params == {"optim.lr_g": "0.01"}  # the models table compares them too
    assert linked.value == history[linked.step - 1].value
    logged = {a.path for a in study.client.list_artifacts(run.info.run_id, "best")}
    assert {"best/roc.png", "best/pr.png", "best/previews", "best/metrics.json"} <= logged, logged
    previews = study.client.list_artifacts(run.info.run_id, "best/previews")
    assert len(previews) == TINY["data"]["val_count"], "one preview per validation image, rendered by the driver"
    assert not (tmp_path / "study" / "train_vgan_t1" / "checkpoint_000001").exists(), \
        "a pruned trial's checkpoints go once its model is in MLflow"
    project_trials(projection(study), [record], said.append)  # again: nothing new
    assert said[-1] == "t1: 0 epoch(s) added, pruned at epoch 2" and len(study.child_runs()) == 1


def test_a_trial_the_time_budget_stopped_is_projected_as_stopped(study, tmp_path):
    record = trial_folder(tmp_path, [0.7, 0.8])  # 2 epochs of 3, then the study's budget ran out
    said = []
    project_trials(projection(study), [record], said.append, stopped={"t1": 2})
    (run,) = study.child_runs()
    assert run.info.run_name == "t1 stopped at epoch 2" and run.info.status == "FINISHED"
    assert run.data.tags["status"] == "stopped" and run.data.tags["stopped_at_epoch"] == "2"
    assert "pruned_at_epoch" not in run.data.tags and run.data.tags["best_model_uri"].startswith("models:/")
    assert said == ["t1: 2 epoch(s) added, stopped at epoch 2"]
    assert not (tmp_path / "study" / "train_vgan_t1" / "checkpoint_000001").exists(), "no trial continues it"


def test_the_best_model_carries_its_own_epochs_report(study, tmp_path):
    """Epoch 1 trained twice (a PBT clone of a trial behind), best/ from the first time: the model's
    metrics are that report's values, and the run keeps two reports of epoch 1, not a third."""
    record = trial_folder(tmp_path, [0.7, 0.8])
    record.results.append({**record.results[0], "val_auc_roc": 0.5, "timestamp": record.results[-1]["timestamp"] + 1})
    project_trials(projection(study), [record])
    (run,) = study.child_runs()
    history = study.client.get_metric_history(run.info.run_id, "val_auc_roc")
    assert sorted((m.step, m.value) for m in history) == sorted([(1, record.results[0]["val_auc_roc"]), (1, 0.5),
                                                                 (2, 0.8)])
    model = study.client.get_logged_model(run.data.tags["best_model_uri"].removeprefix("models:/"))
    (linked,) = [m for m in model.metrics if m.key == "val_auc_roc"]
    assert (linked.step, linked.value) == (1, record.results[0]["val_auc_roc"])


def test_project_trials_puts_a_pbt_trials_schedule_and_policy_log_into_mlflow(study, tmp_path):
    """What tuner.replay gives a PBT trial: the schedule from result.json's configs and PBT's
    policy log, which Ray keeps in the study folder, beside the trial folders."""
    record = trial_folder(tmp_path, [0.7] * 6)
    folder = Path(record.path)
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in schedule_rows()))
    policy = '["0", "1_lr=0.01", 2, 2, {"optim.lr_g": 0.01}, {"optim.lr_g": 0.008}]\n'
    (folder.parent / "pbt_policy_t1.txt").write_text(policy)
    record = TrialRecord.read(pyarrow.fs.LocalFileSystem(), str(folder))
    assert record.policy == policy
    p = projection(study)
    project_trials(p, [record])
    exploits = policy + ('["1_lr=0.01", "0", 3, 3, {"optim.lr_g": 0.008}, {"optim.lr_g": 0.0064}]\n'
                         '["0", "1_lr=0.01", 4, 3, {"optim.lr_g": 0.008}, {"optim.lr_g": 0.0096}]\n')
    p.log_exploits(exploits, {"t1": policy + exploits.splitlines(keepends=True)[-1]})
    (run,) = study.child_runs()
    assert hp_history(study, run.info.run_id) == [(1, 0.01), (3, 0.008), (4, 0.0096)]
    assert run.data.tags["pbt_exploits"] == "2", "the other line of PBT's log is an exploit of the trial it cloned"
    with open(study.client.download_artifacts(study.info.parent_run_id, "pbt/pbt_global.txt", str(tmp_path))) as f:
        assert f.read() == exploits
    with open(study.client.download_artifacts(run.info.run_id, "pbt/pbt_policy_t1.txt", str(tmp_path))) as f:
        assert f.read() == policy


def test_every_exploit_is_counted_though_it_left_the_values_as_they_were(study, tmp_path):
    """A trial that clones the same trial twice can draw the same perturbation (or clip_to_space bring both
    to a bound): its schedule changes once, its pbt_exploits tag says 2. Counted from PBT's log of every
    exploit, whose lines name a trial by its tag (the perturbed one after a resume): live, from the driver's
    folder as the log grows, and at the study's end from there, else from the study's storage (a resumed
    session that wrote none)."""
    a = {"optim.lr_g": 0.01, "loss.adv_weight": 0.1}
    b = {"optim.lr_g": 0.008, "loss.adv_weight": 0.12}
    line = lambda target, clone, epoch, old, new: json.dumps([target, clone, epoch, epoch, old, new]) + "\n"  # noqa: E731
    first, other = line("1_lr=0.01", "0", 2, a, b), line("2_lr=0.02", "0", 2, a, a)
    again = line("1_lr=0.01@perturbed[optim.lr_g=0.008]", "0", 4, a, b)  # after a resume: the tag it had then
    staging, stored = tmp_path / "staging", tmp_path / "stored"
    staging.mkdir(), stored.mkdir()
    for folder, logs in ((stored, {"pbt_global.txt": first + other + again, "pbt_policy_t1.txt": first + again}),
                         (staging, {"pbt_global.txt": first + other, "pbt_policy_t1.txt": first})):
        for name, text in {**logs, "pbt_policy_t2.txt": other}.items():
            (folder / name).write_text(text)

    class Storage:
        storage_filesystem, experiment_fs_path = pyarrow.fs.LocalFileSystem(), str(stored)

    def trial(trial_id):
        return type("Trial", (), {"trial_id": trial_id, "config": {}, "storage": Storage,
                                  "local_experiment_path": str(staging)})

    def tags():
        return {r.data.tags["trial_id"]: r.data.tags.get("pbt_exploits") for r in study.child_runs()}

    trials = [trial("t0"), trial("t1"), trial("t2")]
    cb = MlflowCallback(projection(study), window_s=5)
    for t in trials:
        cb.log_trial_start(t)
    configs = [a, a, b, b, b, b]  # exploited after epochs 2 and 4, to the same values
    for r, config in zip(schedule_rows(), configs, strict=True):
        cb.log_trial_result(r["epoch"], trials[1], {**r, "config": config})
    assert cb.drain(5)
    assert tags() == {"t0": None, "t1": "1", "t2": "1"}, "live, as the driver's log stands"
    cb.on_experiment_end(trials)
    assert cb.drain(5)
    assert tags()["t1"] == "1", "the driver's own logs, where it wrote them, are the ones counted"

    # the second exploit was a later session's, which ended with no log in its driver's folder: storage's is read
    for f in staging.iterdir():
        f.unlink()
    resumed = MlflowCallback(projection(study), window_s=5)
    resumed.on_experiment_end(trials)
    assert resumed.drain(5)
    assert tags() == {"t0": None, "t1": "2", "t2": "1"}
    (run_id,) = [r.info.run_id for r in study.child_runs() if r.data.tags["trial_id"] == "t1"]
    assert hp_history(study, run_id) == [(1, 0.01), (3, 0.008)]


def test_a_run_ended_by_model_logging_but_not_given_its_outcome_is_ended_again(study, tmp_path):
    """Logging a model ends the run (MLflow's start_run context); a driver killed before the outcome
    was written leaves a FINISHED run tagged 'running'. The outcome tag decides, and orphans are
    found by it too."""
    record = trial_folder(tmp_path, [0.7, 0.8, 0.9])
    p = projection(study)
    run_id = p.open("t1", record.params)
    study.client.set_terminated(run_id, "FINISHED")  # what the kill left
    orphan = p.open("t2", {})
    study.client.set_terminated(orphan, "FINISHED")
    project_trials(projection(study), [record])
    assert study.client.get_run(run_id).data.tags["status"] == "completed"
    assert study.close_orphans() == ["t2"]
    assert study.client.get_run(orphan).info.status == "KILLED"



@pytest.mark.parametrize("write", ["set_tags", "update_run", "set_terminated"])
def test_a_driver_killed_at_any_write_of_a_trials_end_leaves_a_run_the_next_pass_ends(study, tmp_path, write,
                                                                                       monkeypatch):
    """The killed driver's last writes of an ended trial (its model logged): the outcome's tags, the run's name,
    its state. Whichever the kill came before, the resumed driver's pass ends the run, and no run stays
    RUNNING (CI met a run tagged `completed` and RUNNING once: the tags were written before the state)."""
    record = trial_folder(tmp_path, [0.7, 0.8, 0.9])
    p = projection(study)
    p.open("t1", record.params)


    target = p if write == "set_tags" else p.client
    monkeypatch.setattr(target, write, kill)
    with pytest.raises(Killed):
        p.end("t1", record.params, decide(record.results[-1], None, EPOCHS), record.fs, record.path)
    monkeypatch.undo()
    project_trials(projection(study), [record])
    assert study.close_orphans() == []
    (run,) = study.child_runs()
    assert (run.info.status, run.data.tags["status"], run.info.run_name) == ("FINISHED", "completed", "t1 completed"), \
        (run.info.status, run.data.tags)
    assert len(study.client.search_logged_models([study.info.experiment_id])) == 1, "the model once"


def test_a_completed_run_opened_again_and_left_running_is_ended_by_the_next_pass(study, tmp_path):
    """A resumed driver restarts a trial its killed predecessor had ended in MLflow (Ray's saved state had it
    running) and opens its run again; stopped before the trial ends, it leaves the run RUNNING under its old
    outcome. The next pass ends it from storage."""
    record = trial_folder(tmp_path, [0.7, 0.8, 0.9])
    p = projection(study)
    run_id = p.open("t1", record.params)
    p.end("t1", record.params, decide(record.results[-1], None, EPOCHS), record.fs, record.path)
    assert projection(study).open("t1", record.params) == run_id
    assert study.client.get_run(run_id).info.status == "RUNNING"
    project_trials(projection(study), [record])
    run = study.client.get_run(run_id)
    assert (run.info.status, run.data.tags["status"]) == ("FINISHED", "completed")


def test_an_interrupted_trials_run_waits_for_its_resume_not_as_an_orphan(study):
    """Ctrl-C: the runs of trials the study leaves to its resume are KILLED `interrupted`; close_orphans leaves
    them, and the resumed driver's projection, which opens them again as the trials go on, says running."""
    goes_on, orphan = projection(study).open("t1", {}), projection(study).open("t2", {})
    assert study.close_orphans(waiting={"t1": 2}) == ["t2"]
    orphan = study.client.get_run(orphan)
    assert orphan.info.status == "KILLED" and orphan.data.tags["status"] == "killed"
    run = study.client.get_run(goes_on)
    assert run.info.status == "KILLED" and run.data.tags["status"] == "interrupted"
    assert projection(study).open("t1", {}) == goes_on  # the resumed study's driver
    run = study.client.get_run(goes_on)
    assert run.info.status == "RUNNING" and run.data.tags["status"] == "running"


@pytest.mark.parametrize("write", ["set_tag", "set_terminated"])
def test_a_driver_killed_while_closing_an_orphan_leaves_it_to_the_next_pass(study, write, monkeypatch):
    orphan = projection(study).open("t2", {})


    monkeypatch.setattr(study.client, write, kill)
    with pytest.raises(Killed):
        study.close_orphans()
    monkeypatch.undo()
    assert study.close_orphans() == ["t2"]
    run = study.client.get_run(orphan)
    assert (run.info.status, run.data.tags["status"]) == ("KILLED", "killed")


def test_a_trial_that_raised_ends_failed_with_the_last_line(study, tmp_path):
    record = trial_folder(tmp_path, [0.7], error="Traceback ...\nRuntimeError: injected\n")
    project_trials(projection(study), [record])
    (run,) = study.child_runs()
    assert run.info.status == "FAILED" and run.data.tags["error"] == "RuntimeError: injected"


def test_the_callback_survives_pickling_and_drains(study):
    import pickle

    cb = MlflowCallback(projection(study), window_s=5)
    one_trial(cb)
    assert cb.drain(5)
    (run,) = study.child_runs()
    assert run.data.tags["node_id"] == "node-a" and run.data.tags["status"] == "pruned"
    restored = pickle.loads(pickle.dumps(cb))  # Tune pickles callbacks with the experiment state
    assert restored.projection.info == study.info and restored._queue is None


def test_a_trials_run_says_where_it_trains_and_where_it_went_on(study):
    """A trial's reports say its node and what it trains on there: its run's tags, changed only where a restart
    took it elsewhere (a cluster's nodes may hold other GPUs), and never logged as metrics."""
    cb = MlflowCallback(projection(study), window_s=5)
    cb.log_trial_start(FakeTrial)
    there = {"node_id": "node-a", "environment": "torch 2.11.0+cu130 on NVIDIA H100 80GB HBM3"}
    first, second, third = rows(0.6, 0.7, 0.8)
    cb.log_trial_result(1, FakeTrial, {**first, **there, "trial_id": "t9", "done": False})
    assert cb.drain(5)
    (run,) = study.child_runs()
    assert {k: run.data.tags[k] for k in there} == there
    cb.log_trial_result(2, FakeTrial, {**second, **there, "trial_id": "t9", "done": False})
    moved = {"node_id": "node-b", "environment": "torch 2.11.0+cu130 on NVIDIA H200"}
    cb.log_trial_result(3, FakeTrial, {**third, **moved, "trial_id": "t9", "done": False})
    cb.log_trial_end(FakeTrial)
    assert cb.drain(5)
    run = study.client.get_run(run.info.run_id)
    assert {k: run.data.tags[k] for k in moved} == moved
    assert not {"node_id", "environment"} & set(run.data.metrics)
    assert [m.step for m in study.client.get_metric_history(run.info.run_id, "val_auc_roc")] == [1, 2, 3]


class FakeTrial:
    trial_id, config, storage, last_result = "t9", {"optim.lr_g": 0.02}, None, {"epoch": 1}


def one_trial(cb: MlflowCallback) -> None:
    """A trial's start, one epoch's report and its end, as Tune hands them to the callback."""
    cb.log_trial_start(FakeTrial)
    cb.log_trial_result(1, FakeTrial, {**rows(0.6)[0], "trial_id": "t9", "node_id": "node-a", "done": False})
    cb.log_trial_end(FakeTrial)


@pytest.mark.parametrize("write", ["_log_params", "_link_optuna"])
def test_a_write_the_store_refuses_once_is_tried_again_and_nothing_is_lost(study, write, monkeypatch, capsys):
    """The store refuses one write of a trial's start (SQLite's "database is locked", as a loaded machine's
    Optuna database beside the searcher gave it): the callback tries it again, and the run is whole. Dropped, it
    left the run made but unknown to the callback: no params, epochs, node or outcome, each a traceback."""
    import sqlalchemy.exc

    p = projection(study)
    real, refusals = getattr(p, write), []

    def refused_once(*args):
        if not refusals:
            refusals.append(args)
            raise sqlalchemy.exc.OperationalError("INSERT INTO ...", {}, Exception("database is locked"))
        return real(*args)

    monkeypatch.setattr(p, write, refused_once)
    cb = MlflowCallback(p, window_s=5, poll_s=0.05)
    one_trial(cb)
    assert cb.drain(5) and refusals
    (run,) = study.child_runs()
    assert run.data.params == {"optim.lr_g": "0.02"} and run.data.tags["node_id"] == "node-a"
    assert run.data.tags["status"] == "pruned" and run.info.status == "FINISHED"
    assert [m.step for m in study.client.get_metric_history(run.info.run_id, "val_auc_roc")] == [1]
    assert "Traceback" not in capsys.readouterr().err


def test_a_write_the_store_refuses_every_time_is_said_and_the_rest_goes_on(study, monkeypatch, capsys):
    p = projection(study)

    def refused(*args):
        raise ValueError("refused for good")

    monkeypatch.setattr(p, "log_epochs", refused)
    cb = MlflowCallback(p, window_s=5, poll_s=0.05)
    one_trial(cb)
    assert cb.drain(5)
    (run,) = study.child_runs()
    assert run.data.tags["node_id"] == "node-a" and run.data.tags["status"] == "pruned"
    err = capsys.readouterr().err
    assert err.count("ValueError: refused for good") == 1, err  # said once, after its tries


def test_trials_never_import_mlflow():
    """A worker running trials needs no tracking server and no MLflow client."""
    code = "import sys, tuner.trainable; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_resume_finds_the_parent_run(study):
    again = Study.start(study.info.uri, "projection-test", "s1", {}, resume=True)
    assert again.info.parent_run_id == study.info.parent_run_id


def test_tracking_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path}/mlflow.db"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    with pytest.raises(ConfigError, match="no file store"):
        resolve_tracking_uri("./mlruns")
