"""Stand-ins for the checkpoints a study's lagging saved state names but Ray's num_to_keep deleted, and the
folders of trials begun after it, read from a state written as Ray writes it (its Trial, checkpoint manager and
TuneController's file)."""

import json
import shutil
from pathlib import Path

import pyarrow.fs
import pytest
import torch
from conftest import TINY
from ray import tune
from ray.train._internal.session import _TrainingResult
from ray.train._internal.storage import StorageContext, _exists_at_fs_path
from ray_trials import FS, checkpoint_written, ray_trial, state_saved

from tuner.resume import (
    STAND_IN,
    describe,
    named_checkpoints,
    place_stand_ins,
    remove_stand_ins,
    remove_unsaved,
    saved_trials,
    unfinished_trials,
    unsaved_trials,
)
from tuner.trainable import STATE_FILE, TRIAL_FILE, restore
from vgan.config import config_from_dict
from vgan.data import load_train_val
from vgan.trainer import Trainer


def names(paths):
    return sorted(p.rsplit("/", 1)[-1] for p in paths)


def folders(trial):
    return sorted(p.base_name for p in FS.get_file_info(pyarrow.fs.FileSelector(trial.storage.trial_fs_path)))


def lagging_study(root):
    """Trial t1's state saved at checkpoint 2 of 0..4 (its kept 1 and 2 since deleted by num_to_keep), the
    driver killed before the next save."""
    t1 = ray_trial(root, "t1")
    for i in range(3):
        checkpoint_written(t1, i)
    state_saved(root, t1)
    for i in (3, 4):
        checkpoint_written(t1, i)
    return t1


def restored(root, trial):
    """The trial as Tuner.restore rebuilds it from the newest saved state."""
    return next(t for t in saved_trials(FS, str(root / "exp")) if t.trial_id == trial.trial_id)


def test_saved_trials_are_the_newest_states_with_their_status_and_last_result(tmp_path):
    assert saved_trials(FS, str(tmp_path / "exp")) == []  # nothing saved yet
    running, done = ray_trial(tmp_path, "running"), ray_trial(tmp_path, "done", "TERMINATED")
    running.update_last_result({"epoch": 2})
    state_saved(tmp_path, running, stamp="2026-12-03_12-00-00")
    running.update_last_result({"epoch": 3})
    done.update_last_result({"epoch": 6})
    state_saved(tmp_path, running, done, stamp="2026-12-03_12-00-05")

    saved = {t.trial_id: t for t in saved_trials(FS, str(tmp_path / "exp"))}

    # Ray saves a running trial as PENDING: what Tuner.restore will run again
    assert {i: (t.status, t.last_result["epoch"]) for i, t in saved.items()} == {
        running.trial_id: ("PENDING", 3), done.trial_id: ("TERMINATED", 6)}


def test_the_trials_an_interrupted_study_leaves_to_its_resume_are_those_saved_unfinished(tmp_path):
    """Ctrl-C: Ray saves the study's state, then stops its trials; a time budget stops them first (TERMINATED)."""
    running, paused, done = (ray_trial(tmp_path, "running"), ray_trial(tmp_path, "paused", "PAUSED"),
                             ray_trial(tmp_path, "done", "TERMINATED"))
    running.update_last_result({"epoch": 2})
    state_saved(tmp_path, running, paused, done)
    assert unfinished_trials(FS, str(tmp_path / "exp")) == {running.trial_id: 2, paused.trial_id: 0}
    assert unfinished_trials(FS, str(tmp_path / "nothing")) == {}


def test_a_gone_checkpoint_the_state_names_gets_a_stand_in_where_a_newer_one_is_there(tmp_path):
    t1 = lagging_study(tmp_path)
    assert folders(t1) == ["checkpoint_000003", "checkpoint_000004"]
    latest = restored(tmp_path, t1).checkpoint
    assert not _exists_at_fs_path(FS, latest.path)  # what Ray's Trainable.restore refuses

    stand_ins = place_stand_ins(FS, str(tmp_path / "exp"))

    assert names(s.path for s in stand_ins) == ["checkpoint_000001", "checkpoint_000002"]
    assert {s.newest.rsplit("/", 1)[-1] for s in stand_ins} == {"checkpoint_000004"}
    assert _exists_at_fs_path(FS, latest.path)
    assert (tmp_path / "exp" / "t1" / "checkpoint_000002" / STAND_IN).is_file()
    assert describe(stand_ins) == f"trial {t1.trial_id}: checkpoint_000001, checkpoint_000002 (it resumes from " \
                                  "checkpoint_000004)"


def test_rays_num_to_keep_deletes_the_stand_ins_as_the_trial_goes_on(tmp_path):
    t1 = lagging_study(tmp_path)
    again = restored(tmp_path, t1)
    with pytest.raises(FileNotFoundError):  # without stand-ins: Ray cannot delete what it named
        checkpoint_written(again, 5)

    t1 = lagging_study(tmp_path / "mended")
    place_stand_ins(FS, str(tmp_path / "mended" / "exp"))
    again = restored(tmp_path / "mended", t1)
    checkpoint_written(again, 5)
    checkpoint_written(again, 6)
    assert "checkpoint_000001" not in folders(again) and "checkpoint_000002" not in folders(again)


def test_the_trainable_restores_the_newest_checkpoint_when_ray_names_a_stand_in(tmp_path):
    cfg = config_from_dict(TINY)
    data = load_train_val(cfg.data)
    trainer = Trainer(cfg, *data, torch.device("cpu"))
    t1 = ray_trial(tmp_path, "t1")
    for i in range(4):
        trainer.run_epoch()
        path = Path(checkpoint_written(t1, i))
        trainer.save_checkpoint(path / STATE_FILE)
        (path / TRIAL_FILE).write_text(json.dumps({"report": {"epoch": trainer.epoch}}))
        if i == 1:
            state_saved(tmp_path, t1)
    place_stand_ins(FS, str(tmp_path / "exp"))

    resumed = Trainer(cfg, *data, torch.device("cpu"))
    named = restored(tmp_path, t1).checkpoint
    saved = restore(named, resumed, tmp_path / "best", StorageContext(
        storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name="t1", current_checkpoint_index=1))

    assert named.path.endswith("checkpoint_000001") and resumed.epoch == 4 == saved["report"]["epoch"]


def test_the_study_may_have_moved_since_its_state_was_saved(tmp_path):
    lagging_study(tmp_path / "then")
    shutil.move(tmp_path / "then", tmp_path / "now")

    stand_ins = place_stand_ins(FS, str(tmp_path / "now" / "exp"))

    assert names(s.path for s in stand_ins) == ["checkpoint_000001", "checkpoint_000002"]
    assert all(s.path.startswith(str(tmp_path / "now" / "exp" / "t1")) for s in stand_ins)


@pytest.mark.parametrize("status", ["TERMINATED", "ERROR"])
def test_trials_ray_will_not_run_again_get_none(tmp_path, status):
    t1 = ray_trial(tmp_path, "t1", status)
    for i in range(3):
        checkpoint_written(t1, i)
    state_saved(tmp_path, t1)
    for i in (3, 4):
        checkpoint_written(t1, i)

    assert named_checkpoints(FS, str(tmp_path / "exp")) == []
    assert place_stand_ins(FS, str(tmp_path / "exp")) == []


def test_none_without_a_newer_checkpoint_or_for_another_trials(tmp_path):
    donor = ray_trial(tmp_path, "donor")
    given = checkpoint_written(donor, 0)
    clone = ray_trial(tmp_path, "clone")  # PBT: the clone goes on from the donor's checkpoint
    clone.on_checkpoint(_TrainingResult(checkpoint=tune.Checkpoint(path=given, filesystem=FS), metrics={}))
    lost = ray_trial(tmp_path, "lost")
    checkpoint_written(lost, 0)
    state_saved(tmp_path, donor, clone, lost)
    FS.delete_dir(given)
    FS.delete_dir(f"{lost.storage.trial_fs_path}/checkpoint_000000")  # and nothing newer: the work is gone
    FS.create_dir(f"{clone.storage.trial_fs_path}/checkpoint_000003")

    named = named_checkpoints(FS, str(tmp_path / "exp"))

    assert {n.folder.rsplit("/", 1)[-1]: names(n.checkpoints) for n in named} == {
        "donor": ["checkpoint_000000"], "clone": [], "lost": ["checkpoint_000000"]}
    assert [n.trial_id for n in named] == [donor.trial_id, clone.trial_id, lost.trial_id]
    assert place_stand_ins(FS, str(tmp_path / "exp")) == []  # Ray says what is gone, as it would


def test_stand_ins_left_are_removed_and_found_again_by_a_later_resume(tmp_path):
    t1 = lagging_study(tmp_path)
    first = place_stand_ins(FS, str(tmp_path / "exp"))
    again = place_stand_ins(FS, str(tmp_path / "exp"))  # a resume killed before its fit returned left them
    assert again == first

    remove_stand_ins(FS, again)
    assert folders(t1) == ["checkpoint_000003", "checkpoint_000004"]
    remove_stand_ins(FS, again)  # gone already (Ray's num_to_keep): nothing to do


def saved_names(exp):
    return {t.storage.trial_dir_name for t in saved_trials(FS, str(exp))}


def test_the_folders_of_trials_begun_after_the_last_saved_state_are_found_and_nothing_else(tmp_path):
    running, done = ray_trial(tmp_path, "running"), ray_trial(tmp_path, "done", "TERMINATED")
    for i in range(2):
        checkpoint_written(running, i)
    checkpoint_written(done, 0)
    pending = ray_trial(tmp_path, None, "PENDING")  # added by the searcher, not started when the state was saved
    assert pending.storage.trial_dir_name is None  # no folder yet
    state_saved(tmp_path, running, done, pending)
    exp = tmp_path / "exp"
    # after the save, the killed driver began `pending` and a new trial, was copying another's first checkpoint,
    # and had made a fourth's folder
    begun = exp / f"train_vgan_{pending.trial_id}_3_lr=0.1_2026-12-07_10-31-00"
    late = exp / "train_vgan_1a2b3c4d_4_lr=0.2_2026-12-07_10-31-02"
    cut = exp / "train_vgan_5e6f7a8b_5_lr=0.3_2026-12-07_10-31-03"
    bare = exp / "train_vgan_9c0d1e2f_6_lr=0.4_2026-12-07_10-31-04_ab12"
    for folder in (begun, late):
        folder.mkdir()
        (folder / "params.json").write_text("{}")
        (folder / "result.json").write_text('{"epoch": 1}\n')
    (cut / "checkpoint_000000").mkdir(parents=True)
    bare.mkdir()
    (exp / "notes").mkdir()  # not Ray's
    (exp / "notes" / "todo.txt").write_text("keep")
    (exp / "empty").mkdir()
    resumed = exp / "train_vgan_7b8c9d0e_7_lr=0.5_2026-12-07_11-00-00"  # a trial of the resumed fit
    resumed.mkdir()
    (resumed / "params.json").write_text("{}")

    unsaved = unsaved_trials(FS, str(exp), saved_names(exp) | {resumed.name})

    assert names(u.path for u in unsaved) == sorted(f.name for f in (begun, late, cut, bare))
    assert sorted(u.trial_id for u in unsaved) == sorted([pending.trial_id, "1a2b3c4d", "5e6f7a8b", "9c0d1e2f"])
    remove_unsaved(FS, unsaved)
    assert sorted(p.name for p in exp.iterdir() if p.is_dir()) == ["done", "empty", "notes", "running", resumed.name]
    assert folders(running) == ["checkpoint_000000", "checkpoint_000001"] and folders(done) == ["checkpoint_000000"]
    assert unsaved_trials(FS, str(exp), saved_names(exp) | {resumed.name}) == []


def test_where_no_state_was_saved_every_trial_folder_is_unsaved(tmp_path):
    started = ray_trial(tmp_path, "started")
    checkpoint_written(started, 0)
    (tmp_path / "exp" / "recipe.json").write_text("{}")
    assert saved_names(tmp_path / "exp") == set()
    assert names(u.path for u in unsaved_trials(FS, str(tmp_path / "exp"), set())) == ["started"]
    assert unsaved_trials(FS, str(tmp_path / "nothing"), set()) == []


def test_a_resume_removes_the_unsaved_folders_or_says_why_it_could_not(tmp_path, monkeypatch, capsys):
    """tuner.run's step once the resumed fit returned: a storage error there costs disk, not the study."""
    from types import SimpleNamespace

    import tuner.resume
    from tuner.run import remove_unsaved_trials

    kept = ray_trial(tmp_path, "kept")
    checkpoint_written(kept, 0)
    late = tmp_path / "exp" / "train_vgan_1a2b3c4d_4_lr=0.2_2026-12-07_10-31-02"
    (late / "checkpoint_000000").mkdir(parents=True)
    plan = SimpleNamespace(name="s", storage=SimpleNamespace(folder=lambda name: (FS, str(tmp_path / "exp"))))
    fit = [SimpleNamespace(path=kept.storage.trial_fs_path), SimpleNamespace(path=None)]  # one never started

    def refused(fs, unsaved):
        raise OSError("[Errno 13] Permission denied")

    monkeypatch.setattr(tuner.resume, "remove_unsaved", refused)
    remove_unsaved_trials(plan, fit)
    assert "study s: could not remove the folders of trials its dead driver had begun after Ray last saved its " \
           "state ([Errno 13] Permission denied); a later --resume tries again" in capsys.readouterr().out
    assert late.exists()
    monkeypatch.undo()
    remove_unsaved_trials(plan, fit)
    assert capsys.readouterr().out.endswith("(its searcher proposed anew): 1a2b3c4d\n")
    assert not late.exists() and folders(kept) == ["checkpoint_000000"]
    remove_unsaved_trials(plan, fit)
    assert capsys.readouterr().out == ""  # nothing left to say
