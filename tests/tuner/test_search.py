import functools

import optuna
import pytest
import yaml
from conftest import REPO, write_yaml

from tuner.run import end_optuna_trials
from tuner.search import StopWitness, make_searcher
from tuner.space import load_space
from tuner.storage import parse_storage, study_db_url

SMOKE = REPO / "search_spaces" / "smoke.yaml"


def searcher(tmp_path):
    space = load_space(SMOKE)
    return make_searcher(space, "s", study_db_url(parse_storage(str(tmp_path)))), space


def report(s, trial_id, epochs, score=0.5):
    for e in range(1, epochs + 1):
        result = {"best_val_auc_roc": score + e / 100, "training_iteration": e, "epoch": e}
        if e < epochs:
            s.on_trial_result(trial_id, result)
    return result


def states(tmp_path):
    study = optuna.load_study(study_name="s", storage=study_db_url(parse_storage(str(tmp_path))))
    return {t.number: t for t in study.trials}


def test_asha_stopped_trial_is_pruned_with_all_its_epochs(tmp_path):
    s, space = searcher(tmp_path)
    s.suggest("a")
    s.on_trial_complete("a", report(s, "a", 2))  # stopped at epoch 2 of 6
    t = states(tmp_path)[0]
    assert t.state == optuna.trial.TrialState.PRUNED
    assert t.intermediate_values == {1: 0.51, 2: 0.52}


def test_finished_and_failed_trials(tmp_path):
    s, space = searcher(tmp_path)
    s.suggest("done")
    s.on_trial_complete("done", report(s, "done", space.epochs))
    s.suggest("boom")
    s.on_trial_complete("boom", None, error=True)
    t = states(tmp_path)
    assert t[0].state == optuna.trial.TrialState.COMPLETE and t[0].value == pytest.approx(0.5 + space.epochs / 100)
    assert t[1].state == optuna.trial.TrialState.FAIL


def test_a_diverged_trial_is_failed_with_its_error(tmp_path):
    s, space = searcher(tmp_path)
    s.suggest("nan")
    s.on_trial_complete("nan", {"epoch": 1, "training_iteration": 1, "best_val_auc_roc": float("-inf"),
                                "diverged": 1, "error": "diverged at epoch 1 (loss_d = nan)"})
    t = states(tmp_path)[0]
    assert t.state == optuna.trial.TrialState.FAIL and t.user_attrs["error"] == "diverged at epoch 1 (loss_d = nan)"


def test_optuna_trials_name_their_ray_trial(tmp_path):
    s, _ = searcher(tmp_path)
    s.suggest("abc123")
    assert states(tmp_path)[0].user_attrs["ray_trial_id"] == "abc123"


def test_study_lives_in_an_rdb_with_its_name(tmp_path):
    s, _ = searcher(tmp_path)
    s.suggest("a")
    assert (tmp_path / "optuna.db").is_file()
    assert optuna.get_all_study_names(study_db_url(parse_storage(str(tmp_path)))) == ["s"]


def test_define_by_run_is_picklable(tmp_path):
    import pickle

    s, _ = searcher(tmp_path)
    assert isinstance(pickle.loads(pickle.dumps(s._space)), functools.partial)


def space_with(tmp_path, **tune):
    import yaml
    from conftest import write_yaml

    values = yaml.safe_load(SMOKE.read_text())
    values["tune"].update(tune)
    return load_space(write_yaml(tmp_path / "space.yaml", values))


def test_the_base_config_is_the_first_trial_then_the_start_points(tmp_path):
    space = space_with(tmp_path, start_from=[{"optim.lr_g": 0.02, "loss.adversarial": "vanilla"}])
    s = make_searcher(space, "s", study_db_url(parse_storage(str(tmp_path))))
    base = space.trainer_config()
    assert s.suggest("a") == {"optim.lr_g": base.optim.lr_g, "loss.adversarial": base.loss.adversarial,
                              "loss.gp_weight": base.loss.gp_weight, "loss.adv_weight": base.loss.adv_weight}
    # the start point's missing keys come from the base config; gp_weight's condition is not met
    assert s.suggest("b") == {"optim.lr_g": 0.02, "loss.adversarial": "vanilla",
                              "loss.adv_weight": base.loss.adv_weight}
    third = s.suggest("c")
    assert third["optim.lr_g"] not in (base.optim.lr_g, 0.02), "then the sampler proposes"
    assert [t.params["optim.lr_g"] for t in states(tmp_path).values()][:2] == [base.optim.lr_g, 0.02]


def test_random_searcher_is_optuna_random_sampling(tmp_path):
    s = make_searcher(space_with(tmp_path, searcher="random"), "s", study_db_url(parse_storage(str(tmp_path))))
    assert isinstance(s._sampler, optuna.samplers.RandomSampler)


def test_pbt_mutates_what_a_running_trial_can_change_within_the_space(tmp_path):
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.search import BasicVariantGenerator

    from tuner.search import make_scheduler
    from tuner.space import clip_to_space

    space = space_with(tmp_path, scheduler="pbt", pbt_interval=2, max_concurrent_trials=None)
    assert space.searcher is None
    assert isinstance(make_searcher(space, "s", "sqlite:///unused.db"), BasicVariantGenerator)
    pbt = make_scheduler(space)
    assert isinstance(pbt, PopulationBasedTraining)
    # the GAN's kind and the network shapes come from the cloned trial (its checkpoint must fit)
    assert set(pbt._hyperparam_mutations) == {"optim.lr_g", "loss.gp_weight", "loss.adv_weight"}
    clipped = clip_to_space({"optim.lr_g": 0.05, "loss.adv_weight": -0.1, "loss.adversarial": "vanilla"},
                            space.params)
    assert clipped == {"optim.lr_g": 3.0e-2, "loss.adv_weight": 0.0, "loss.adversarial": "vanilla"}



def test_each_result_is_its_trials_own_whatever_actor_it_was_handed(tmp_path):
    """Tune hands a pending trial an actor another trial ended on and asks it for its auto-filled metrics before
    resetting it (TuneController._maybe_reuse_cached_actor); a trial the fit's end stopped in that moment never
    reported, and Ray's result of it was the ended trial's (its id, config and time): the summary named the ended
    trial twice, the stopped one had no run (CI, in a resumed study). Each result is its trial's own."""
    from ray.tune import ResultGrid
    from ray.tune.analysis import ExperimentAnalysis
    from ray.tune.experiment import Trial
    from ray_trials import FS, ray_trial, state_saved

    from tuner.run import result_trial_id, trials_table

    space = load_space(REPO / "search_spaces" / "smoke.yaml")
    ended, reused, waiting = (ray_trial(tmp_path, name, Trial.TERMINATED, {"optim.lr_g": lr})
                              for name, lr in (("ended", 1e-3), ("reused", 2e-3), ("waiting", 3e-3)))
    ended.run_metadata.last_result = {"trial_id": ended.trial_id, "config": ended.config, "epoch": space.epochs,
                                      space.score: 0.9, "time_total_s": 7.0}
    # what Trial.set_ray_actor asked the cached actor for, before its reset to `reused`
    reused._default_result_or_future = {"trial_id": ended.trial_id, "config": ended.config, "time_total_s": 7.0}
    trials = [ended, reused, waiting]
    w = StopWitness()
    w.on_trial_complete(1, trials, ended)
    w.on_experiment_end(trials)  # the budget stopped the other two before their first report
    assert w.stopped == {reused.trial_id: 0, waiting.trial_id: 0}
    state_saved(tmp_path, *trials)  # as tune.run leaves it, before it hands the fit's trials to its ResultGrid
    grid = ResultGrid(ExperimentAnalysis(str(tmp_path / "exp"), storage_filesystem=FS, trials=trials))
    assert [result_trial_id(r) for r in grid] == [ended.trial_id, ended.trial_id, waiting.trial_id]  # Ray's word

    results = w.own_results(grid)
    assert [result_trial_id(r) for r in results] == [t.trial_id for t in trials]
    assert [r.config for r in results] == [t.config for t in trials]  # what MLflow's run of each shows
    assert results[0].metrics[space.score] == 0.9 and "time_total_s" not in results[1].metrics
    rows = trials_table(results, space, {}, stopped=w.stopped)
    assert [(row["trial_id"], row["outcome"], row["param:optim.lr_g"], row["time_s"]) for row in rows] == [
        (ended.trial_id, "completed", 1e-3, 7.0), (reused.trial_id, "stopped at epoch 0", 2e-3, 0.0),
        (waiting.trial_id, "stopped at epoch 0", 3e-3, 0.0)]

def test_a_checkpoint_saved_twice_is_registered_once(tmp_path):
    """PBT asks a top trial to save on the result whose checkpoint Tune saves too, and a function trainable answers
    both with the one checkpoint: registered twice, num_to_keep kept one fewer and deleted its folder twice, the
    second time failing (PBT studies logged "Error handling checkpoint ... FileNotFoundError: Path not found")."""
    from ray_trials import FS, KEEP, checkpoint_saved, checkpoint_written, ray_trial

    from tuner.search import CheckpointOnce
    from tuner.storage import checkpoint_dirs

    t, once = ray_trial(tmp_path, "t"), [CheckpointOnce()]
    checkpoint_saved(t, checkpoint_written(t, 0))  # twice, as a study begun before CheckpointOnce saved it
    for n in range(1, 5):
        checkpoint_saved(t, checkpoint_written(t, n, callbacks=once), callbacks=once)  # and PBT's save
    paths = [r.checkpoint.path for r in t.run_metadata.checkpoint_manager.best_checkpoint_results]
    assert paths == checkpoint_dirs(FS, t.storage.trial_fs_path) == [
        f"{t.storage.trial_fs_path}/checkpoint_{n:06d}" for n in range(5 - KEEP, 5)]
    assert t.checkpoint.path == paths[-1]


@pytest.mark.parametrize("reduction_factor", [2, 3])  # milestones 2, 4 | 2, 6: the last at max_t, never recorded
def test_asha_resumed_holds_new_trials_against_the_rungs_the_study_had(tmp_path, reduction_factor):
    """Ray saves no scheduler state: a resumed study's ASHA began with empty rungs and let a trial go on that
    the study's own rungs stop. Seeded from the trials' reports, in any order, it has the rungs of the study
    that ran them, and decides as it would have."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from tuner.outcome import MODE
    from tuner.search import make_scheduler, seed_rungs

    values = yaml.safe_load(SMOKE.read_text())  # ASHA: grace period 2, 6 epochs
    values["tune"]["reduction_factor"] = reduction_factor
    space = load_space(write_yaml(tmp_path / "space.yaml", values))

    def asha():
        scheduler = make_scheduler(space)
        scheduler.set_search_properties(space.score, MODE)
        return scheduler

    def decide(scheduler, trial_id: str, epoch: int, score: float) -> str:
        trial = SimpleNamespace(trial_id=trial_id)
        if trial_id not in scheduler._trial_info:
            scheduler.on_trial_add(None, trial)
        return scheduler.on_trial_result(None, trial, {"epoch": epoch, space.score: score})

    reports = {t: [{"epoch": e, space.score: 0.5 + 0.1 * k + e / 100, "trial_id": t} for e in range(1, 7)]
               for k, t in enumerate(["a", "b", "c", "d"])}
    live = asha()
    for epoch in range(1, 7):  # the study as it ran: the trials side by side, epoch by epoch
        for t, rows in reports.items():
            decide(live, t, epoch, rows[epoch - 1][space.score])
    seeded = asha()
    seed_rungs(seeded, space.score, dict(reversed(reports.items())))
    assert seeded._brackets[0]._rungs == live._brackets[0]._rungs and live._brackets[0]._rungs[-1][1]
    assert decide(seeded, "late", 2, 0.55) == decide(live, "late", 2, 0.55) == TrialScheduler.STOP
    assert decide(asha(), "late", 2, 0.55) == TrialScheduler.CONTINUE  # what the resume did before


def test_the_trials_a_time_budget_stopped_end_in_optuna_without_judging_their_config(tmp_path):
    """Ray stops them without telling the searcher. One with reports is pruned at its last epoch (evidence, as a
    pruned trial's); one without is FAIL: as PRUNED with no value TPE ranked it below every trial, a config never
    tried (optuna's _get_pruned_trial_score)."""
    s, space = searcher(tmp_path)
    for trial_id in ("asha", "mid", "unstarted"):
        s.suggest(trial_id)
    s.on_trial_complete("asha", report(s, "asha", 2))  # ASHA's stop: told
    report(s, "mid", 4)  # epochs 1-3 reported, then the budget
    url = study_db_url(parse_storage(str(tmp_path)))
    assert end_optuna_trials(url, "s", [], space, {}, {"mid": 3, "unstarted": 0}) == []  # no orphan
    t = states(tmp_path)
    assert t[0].state == optuna.trial.TrialState.PRUNED and "stopped" not in t[0].user_attrs
    assert t[1].state == optuna.trial.TrialState.PRUNED and t[1].intermediate_values == {1: 0.51, 2: 0.52, 3: 0.53}
    assert t[1].user_attrs["stopped"] == "by the time budget at epoch 3"
    assert t[2].state == optuna.trial.TrialState.FAIL and t[2].user_attrs["stopped"] == "by the time budget at epoch 0"


def test_the_trials_an_interrupted_study_leaves_to_its_resume_stay_running_in_optuna(tmp_path):
    s, space = searcher(tmp_path)
    for trial_id in ("goes-on", "stopped"):
        s.suggest(trial_id)
        report(s, trial_id, 3)
    url = study_db_url(parse_storage(str(tmp_path)))
    assert end_optuna_trials(url, "s", [], space, {}, {"stopped": 2}, {"goes-on": 2}) == []
    t = states(tmp_path)
    assert t[0].state == optuna.trial.TrialState.RUNNING, "the resumed searcher tells it"
    assert t[1].state == optuna.trial.TrialState.PRUNED


def test_the_witness_names_the_trials_the_end_stopped_untold(tmp_path):
    from ray.tune.experiment import Trial
    from ray_trials import ray_trial

    def trial(trial_id, status, epoch=None):
        t = ray_trial(tmp_path, trial_id, trial_id=trial_id)
        if epoch is not None:
            t.run_metadata.last_result = {"epoch": epoch}
        t.set_status(status)
        return t

    before = trial("before", Trial.TERMINATED, 6)  # a restored study's: ended in an earlier session
    done, boom, running, pending = (trial("done", Trial.RUNNING, 5), trial("boom", Trial.RUNNING, 1),
                                    trial("running", Trial.RUNNING, 3), trial("pending", Trial.PENDING))
    trials = [before, done, boom, running, pending]
    w = StopWitness(ended_before={"before"})  # SavedStudy.ended
    done.set_status(Trial.TERMINATED)
    w.on_trial_complete(1, trials, done)
    boom.set_status(Trial.ERROR)
    w.on_trial_error(2, trials, boom)
    for t in (running, pending):  # the budget: TuneController._stop_experiment_if_needed
        t.set_status(Trial.TERMINATED)
    w.on_experiment_end(trials)
    assert w.stopped == {"running": 3, "pending": 0}
