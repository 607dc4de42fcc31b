"""TidyPBT: Ray's PBT with what an exploit leaves made safe and tidy, and its schedule kept across a resume, on trials
as the driver holds them (tests/support/ray_trials.py); a whole PBT study is in test_strategies.py."""

import pytest


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
    from tuner.pbt import left_by_exploit

    t, left = exploited(tmp_path)
    assert left_by_exploit(t, {"epoch": 4, "checkpoint_dir_name": "checkpoint_000003"}) == left
    assert left_by_exploit(t, {"epoch": 3, "checkpoint_dir_name": "checkpoint_000002"}) is None  # Ray's own
    assert left_by_exploit(t, {"epoch": 4}) is None  # a report without a checkpoint


@pytest.mark.parametrize("case", ["restored from its own", "a save pending", "still running"])
def test_pbt_keeps_a_checkpoint_that_may_be_restored(tmp_path, case):
    from tuner.pbt import left_by_exploit

    t, _ = exploited(tmp_path, cloned=case != "restored from its own", saving=case == "a save pending")
    if case == "still running":
        t.set_status("RUNNING")
    assert left_by_exploit(t, {"epoch": 4, "checkpoint_dir_name": "checkpoint_000003"}) is None


def tidy_pbt(*trials, slots=None, reports=None):
    from types import SimpleNamespace

    from tuner.pbt import TidyPBT

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

    from tuner.pbt import adopt_clone

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

    from tuner.pbt import last_perturbation

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


def test_a_study_pickled_before_tuner_pbt_resumes_with_its_scheduler():
    """tuner.pkl holds the scheduler as the study began, by its class's module and name: those of a study begun
    before tuner.pbt was written name tuner.search.TidyPBT."""
    import pickle

    from tuner.pbt import TidyPBT

    before = pickle.dumps(tidy_pbt(), protocol=2).replace(b"ctuner.pbt\nTidyPBT\n", b"ctuner.search\nTidyPBT\n")
    assert b"tuner.search" in before
    restored = pickle.loads(before)
    assert type(restored) is TidyPBT and restored._perturbation_interval == 2
