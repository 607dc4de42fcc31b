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

def exploited(root, cloned=True, saving=False):
    """Trial t: checkpoints 0-2 registered, 3 reported with the result on which PBT paused it (never
    registered); Ray's latest checkpoint of it made the donor's, as PBT's exploit does."""
    from ray.train._internal.session import _FutureTrainingResult, _TrainingResult
    from ray_trials import FS, checkpoint_written, ray_trial

    donor, t = ray_trial(root, "donor"), ray_trial(root, "t")
    given = checkpoint_written(donor, 0)
    for i in range(3):
        checkpoint_written(t, i)
    left = f"{t.storage.trial_fs_path}/checkpoint_000003"
    FS.create_dir(left)
    if cloned:
        t.run_metadata.checkpoint_manager._latest_checkpoint_result = _TrainingResult(
            checkpoint=donor.run_metadata.checkpoint_manager.latest_checkpoint_result.checkpoint, metrics={})
        assert t.checkpoint.path == given
    t.set_status("PAUSED")
    if saving:
        t.temporary_state.saving_to = _FutureTrainingResult(None)
    return t, left


def test_pbt_deletes_the_checkpoint_an_exploit_left_unregistered(tmp_path):
    from tuner.search import left_by_exploit

    t, left = exploited(tmp_path)
    assert left_by_exploit(t, {"epoch": 4, "checkpoint_dir_name": "checkpoint_000003"}) == left
    assert left_by_exploit(t, {"epoch": 3, "checkpoint_dir_name": "checkpoint_000002"}) is None  # Ray's own
    assert left_by_exploit(t, {"epoch": 4}) is None  # a report without a checkpoint


@pytest.mark.parametrize("case", ["restored from its own", "a save pending", "still running"])
def test_pbt_keeps_a_checkpoint_that_may_be_restored(tmp_path, case):
    from tuner.search import left_by_exploit

    t, _ = exploited(tmp_path, cloned=case != "restored from its own", saving=case == "a save pending")
    if case == "still running":
        t.set_status("RUNNING")
    assert left_by_exploit(t, {"epoch": 4, "checkpoint_dir_name": "checkpoint_000003"}) is None


def tidy_pbt(*trials, slots=None, reports=None):
    from types import SimpleNamespace

    from tuner.search import TidyPBT

    pbt = TidyPBT(time_attr="epoch", perturbation_interval=2, hyperparam_mutations={"optim.lr_g": [1e-3, 2e-3]},
                  slots=slots)
    pbt.reports = reports  # as restore_tuner gives a resumed study's
    pbt.set_search_properties("best_val_auc_roc", "max")
    for t in trials:
        pbt.on_trial_add(SimpleNamespace(search_alg=None), t)
    return pbt


def test_a_trial_whose_perturbation_checkpoint_is_gone_is_cloned_as_it_is_now(tmp_path):
    """A top trial's clone source is the checkpoint saved at its perturbation point, which its checkpoint_keep
    deletes once it has trained on that many newer ones: a trial cloning it later (one behind it) was pointed at the
    deleted one and failed, "Could not recover from checkpoint" (one trial in each of 2 runs of a 16-epoch 4-trial
    smoke study at pbt_interval 4, checkpoint_keep 3). It is cloned from its newest checkpoint."""
    from types import SimpleNamespace

    from ray import tune
    from ray_trials import FS, KEEP, checkpoint_written, ray_trial

    from tuner.search import adopt_clone

    donor, t = (ray_trial(tmp_path, n, config={"optim.lr_g": 1e-3}) for n in ("donor", "t"))
    pbt = tidy_pbt(donor, t)
    pbt._log_config = False  # its logs: test_a_resumed_pbt_study_appends_to_its_exploit_logs
    source = checkpoint_written(donor, 0)  # saved at its perturbation point, where it ranked at the top
    pbt._trial_state[donor].last_checkpoint = tune.Checkpoint(path=source, filesystem=FS)
    for trial, score in ((donor, 0.9), (t, 0.5)):
        pbt._trial_state[trial].last_score, pbt._trial_state[trial].last_result = score, {"epoch": 1}
    for n in range(1, KEEP + 1):  # it trains on, and its checkpoint_keep deletes the source
        newest = checkpoint_written(donor, n, content=b"newest")
    assert not FS.get_file_info(source).is_file and FS.get_file_info(source).type.name == "NotFound"
    pbt._exploit(SimpleNamespace(pause_trial=lambda trial, should_checkpoint: trial.set_status("PAUSED")), t, donor)
    assert t.checkpoint.path == newest
    copy = adopt_clone(t)  # as TidyPBT.on_trial_result does next
    with FS.open_input_stream(f"{copy}/state.pt") as f:
        assert f.read() == b"newest"


@pytest.mark.parametrize(("slots", "decision"), [(3, "CONTINUE"), (2, "PAUSE")])
def test_a_pbt_trial_yields_its_slot_only_to_a_trial_that_has_none(tmp_path, slots, decision):
    """Ray pauses a trial at its perturbation point whenever another is paused or pending, to let it run; where the
    whole population fits side by side that other has a slot already (a trial just exploited, restarting), and
    the pause restarted every trial from its checkpoint at every interval: 8 to 16 restarts (2 to 5 of them
    exploits) in a 10-epoch 4-trial PBT smoke study, 1 to 2 (its exploits) when it goes on."""
    from types import SimpleNamespace

    from ray_trials import ray_trial

    ended, paused, other, trial = (ray_trial(tmp_path, n, status=s) for n, s in [
        ("ended", "TERMINATED"), ("paused", "PAUSED"), ("other", "RUNNING"), ("t", "RUNNING")])
    pbt = tidy_pbt(ended, paused, other, trial, slots=lambda: slots)
    controller = SimpleNamespace(get_trials=lambda: [ended, paused, other, trial])
    assert pbt.on_trial_result(controller, trial, {"epoch": 2, "best_val_auc_roc": 0.5}) == decision
    assert trial.status == "RUNNING"  # no exploit: too few scores yet to rank


def test_an_exploited_trial_goes_on_from_its_own_copy_of_what_it_cloned(tmp_path):
    """PBT points an exploited trial at the donor's checkpoint, which the donor's num_to_keep deletes a few
    checkpoints on: a trial restored later failed ("Could not recover from checkpoint as it does not exist on
    storage anymore": one trial of four in a PBT smoke study Ctrl-C'd at epoch 6 and resumed). The clone is copied
    into the trial's own folder and registered as its newest, where the donor's deletions cannot reach it."""
    from ray_trials import FS, KEEP

    from tuner.storage import checkpoint_dirs
    from tuner.trainable import STATE_FILE

    t, left = exploited(tmp_path)
    donor = t.checkpoint.path
    own = t.storage.trial_fs_path
    pbt = tidy_pbt(t)
    # before its perturbation interval: Ray's PBT decides nothing, TidyPBT tidies what the exploit left
    pbt.on_trial_result(None, t, {"epoch": 1, "best_val_auc_roc": 0.5, "checkpoint_dir_name": "checkpoint_000003"})
    copy = f"{own}/checkpoint_000003"  # the next name: the unregistered one the exploit left was deleted first
    assert t.checkpoint.path == copy and t.storage.current_checkpoint_index == 3
    FS.delete_dir(donor)  # the donor goes on, and its num_to_keep deletes what was cloned
    with FS.open_input_stream(f"{copy}/{STATE_FILE}") as f:
        assert f.read() == b"weights"
    # registered as Ray registers a reported one: the trial's older ones beyond num_to_keep went
    assert [p.rsplit("/", 1)[1] for p in checkpoint_dirs(FS, own)] == [
        f"checkpoint_{n:06d}" for n in range(4 - KEEP, 4)]
    pbt.on_trial_result(None, t, {"epoch": 1, "best_val_auc_roc": 0.5})  # its own now: nothing more is copied
    assert t.checkpoint.path == copy and len(checkpoint_dirs(FS, own)) == KEEP and left == copy


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


def test_a_resumed_pbt_study_appends_to_its_exploit_logs(tmp_path, monkeypatch):
    """Ray writes pbt_global.txt and the policy logs in the session's driver staging folder and uploads them
    over the study's: a resumed study's began again, its exploits before the resume gone. They are copied into
    the staging folder first (the other files of the study are not)."""
    from ray.tune.experiment.trial import Trial
    from ray.tune.schedulers.pbt import _PBTTrialState
    from ray_trials import ray_trial

    t, donor = ray_trial(tmp_path, "t"), ray_trial(tmp_path, "donor")
    staging = tmp_path / "staging"
    monkeypatch.setattr(Trial, "local_experiment_path", property(lambda self: str(staging)))
    study = tmp_path / "exp"
    (study / "pbt_global.txt").write_text('["before the resume"]\n')
    (study / f"pbt_policy_{t.trial_id}.txt").write_text('["its lineage"]\n')
    (study / "experiment_state-x.json").write_text("{}")
    pbt = tidy_pbt(t)
    states = [_PBTTrialState(t), _PBTTrialState(donor)]
    pbt._log_config_on_step(*states, t, donor, {"optim.lr_g": 2e-3})
    pbt._log_config_on_step(*states, t, donor, {"optim.lr_g": 1e-3})  # copied once: the session's lines stay
    lines = (staging / "pbt_global.txt").read_text().splitlines()
    assert lines[0] == '["before the resume"]' and len(lines) == 3, lines
    assert (staging / f"pbt_policy_{t.trial_id}.txt").read_text().startswith('["its lineage"]')
    assert sorted(p.name for p in staging.iterdir()) == ["pbt_global.txt", f"pbt_policy_{t.trial_id}.txt"]


def test_a_resumed_pbt_study_goes_on_from_the_perturbation_points_its_trials_reached(tmp_path):
    """Ray saves no scheduler state: after a resume every PBT trial perturbed at its first report, off its schedule,
    ranked against the few trials that had reported since. Seeded from the trials' reports, each trial's state
    (last perturbation point, the score and report it was ranked by there) is the one the study had."""
    from types import SimpleNamespace

    from ray_trials import ray_trial

    from tuner.search import last_perturbation

    def population(root):
        return [ray_trial(root, n, trial_id=n, config={"optim.lr_g": 1e-3}) for n in "abcd"]

    def state(pbt):
        return {t.trial_id: (s.last_perturbation_time, s.last_train_time, s.last_score, s.last_result)
                for t, s in pbt._trial_state.items()}

    trials, reports = population(tmp_path / "live"), {}
    live = tidy_pbt(*trials)
    # a top trial is asked to save, and no clone source is there yet: nobody is exploited
    controller = SimpleNamespace(get_trials=lambda: trials, _schedule_trial_save=lambda trial, result=None: None)
    for t, epochs in zip(trials, [5, 4, 3, 1], strict=True):  # the study as it ran, interrupted this far
        for e in range(1, epochs + 1):
            row = {"epoch": e, "best_val_auc_roc": 0.5 + e / 100 + len(reports) / 10, "config": dict(t.config)}
            reports.setdefault(t.trial_id, []).append(row)
            assert live.on_trial_result(controller, t, row) == "CONTINUE"
    restored, before = population(tmp_path / "restored"), population(tmp_path / "before")
    seeded, unseeded = tidy_pbt(*restored, reports=reports), tidy_pbt(*before)
    assert state(seeded) == state(live) and state(live)["a"][0] == 4 and state(live)["d"][2] is None
    # the resumed study's first report: "c" trains epoch 3 again, 1 past its perturbation point
    for pbt, t in ((seeded, restored[2]), (unseeded, before[2])):
        pbt.on_trial_result(controller, t, {"epoch": 3, "best_val_auc_roc": 0.9, "config": {}})
    assert state(seeded)["c"][0] == 2 and state(unseeded)["c"][0] == 3  # what the resume did before: it perturbed

    # exploited at 4 by a trial perturbed at 6: it trains epoch 7 on, with the clone's config, its point 6
    rows = [{"epoch": e, "best_val_auc_roc": 0.5, "config": {"optim.lr_g": 1e-3 if e < 7 else 2e-3}}
            for e in [1, 2, 3, 4, 7, 8]]
    assert last_perturbation(rows[:5], 2, "best_val_auc_roc") == (6, rows[3])
    assert last_perturbation(rows, 2, "best_val_auc_roc") == (8, rows[5])
    assert last_perturbation([{"epoch": 1}], 2, "best_val_auc_roc") == (0, None)


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
