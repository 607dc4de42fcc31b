"""Where a restarted trial goes on from: its checkpoints in Ray's storage, as a killed driver leaves them."""

import json

import pyarrow.fs
import pytest
import torch
from conftest import TINY
from ray import tune
from ray.train._internal.storage import StorageContext

from tuner.trainable import ORPHAN, STATE_FILE, TRIAL_FILE, WALL_TIME, restore
from vgan.config import config_from_dict
from vgan.data import load_train_val
from vgan.trainer import Trainer

FS = pyarrow.fs.LocalFileSystem()


@pytest.fixture(scope="module")
def data():
    return load_train_val(config_from_dict(TINY).data)


def trainer(data) -> Trainer:
    return Trainer(config_from_dict(TINY), *data, torch.device("cpu"))


def trial_folder(folder, data, epochs, cut_short=()):
    """`folder/checkpoint_00000<i>` after epoch i + 1, as the trainable writes them; those in `cut_short`
    lack trial.json, as a checkpoint copied when the kill came."""
    t = trainer(data)
    for i in range(epochs):
        t.run_epoch()
        d = folder / f"checkpoint_{i:06d}"
        t.save_checkpoint(d / STATE_FILE)
        if i not in cut_short:
            (d / TRIAL_FILE).write_text(json.dumps({"report": {"epoch": t.epoch, WALL_TIME: float(i)}}))
    return folder


def checkpoint(path):
    return tune.Checkpoint(path=str(path), filesystem=FS)


def storage_of(tmp_path, trial, index=-1):
    """The trial's Ray StorageContext, its folder `tmp_path/exp/<trial>`, at the driver's saved `index`."""
    return StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name=trial,
                          current_checkpoint_index=index)


def test_a_restart_goes_on_from_the_newest_complete_checkpoint_of_its_own(tmp_path, data):
    """The driver's state named none, or an older one: the newest whole one is taken, and said unseen."""
    folder = trial_folder(tmp_path / "exp" / "t", data, 3, cut_short={2})
    for recorded in (None, checkpoint(folder / "checkpoint_000000")):
        t = trainer(data)
        saved = restore(recorded, t, tmp_path / "best", storage_of(tmp_path, "t"))
        assert (t.epoch, saved["report"]["epoch"], saved["unseen"]) == (2, 2, True)
    t = trainer(data)  # the newest named: nothing unseen
    saved = restore(checkpoint(folder / "checkpoint_000001"), t, tmp_path / "best", storage_of(tmp_path, "t"))
    assert t.epoch == 2 and "unseen" not in saved
    assert restore(None, trainer(data), tmp_path / "best", storage_of(tmp_path, "none-yet")) == {}


def test_a_checkpoint_the_kill_cut_short_is_deleted_and_a_whole_unreadable_one_kept(tmp_path, data):
    """Its copy into storage cut short (as a clean-clone CI run's killed-driver test left one: checkpoint_000000
    holding best/ alone), nothing superseded it and it stayed for good beside the trial's later checkpoints. Now
    it is deleted as the trial restarts, whether an older one loads or none does; one whole but unreadable (a
    storage error, not the kill's) is skipped and kept."""
    folder = trial_folder(tmp_path / "exp" / "t", data, 3, cut_short={2})
    t = trainer(data)
    saved = restore(None, t, tmp_path / "best", storage_of(tmp_path, "t"))
    assert t.epoch == 2 and saved[ORPHAN] == str(folder / "checkpoint_000001")
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint_000001"]

    only = tmp_path / "exp" / "only" / "checkpoint_000000" / "best"  # its best/ copied, then the kill
    only.mkdir(parents=True)
    storage = storage_of(tmp_path, "only")
    assert restore(None, trainer(data), tmp_path / "best", storage) == {}
    assert not list(only.parent.parent.iterdir())
    storage._update_checkpoint_index({})
    assert storage.checkpoint_dir_name == "checkpoint_000001"  # numbered on after it all the same

    whole = trial_folder(tmp_path / "exp" / "whole", data, 2)
    (whole / "checkpoint_000001" / STATE_FILE).write_bytes(b"not a checkpoint")
    t = trainer(data)
    saved = restore(None, t, tmp_path / "best", storage_of(tmp_path, "whole"))
    assert t.epoch == 1 and sorted(p.name for p in whole.iterdir()) == ["checkpoint_000000", "checkpoint_000001"]


def test_a_pbt_clone_starts_from_the_checkpoint_it_was_given(tmp_path, data):
    """PBT's exploit names a checkpoint of the trial copied, which trained on since: not its newer one."""
    top = trial_folder(tmp_path / "exp" / "top", data, 2)
    t = trainer(data)
    saved = restore(checkpoint(top / "checkpoint_000000"), t, tmp_path / "best", storage_of(tmp_path, "clone"))
    assert t.epoch == 1 and saved["report"]["epoch"] == 1 and "unseen" not in saved


def test_the_next_checkpoint_is_named_after_the_newest_folder(tmp_path, data):
    """Ray names it from the driver's saved index, which lags the folder after a kill: the trial wrote
    over its own older checkpoints (checkpoint_000002 would hold epoch 5 here, beside 000003's epoch 4)."""
    folder = trial_folder(tmp_path / "exp" / "t", data, 4)
    storage = storage_of(tmp_path, "t", index=1)
    restore(checkpoint(folder / "checkpoint_000001"), trainer(data), tmp_path / "best", storage)
    storage._update_checkpoint_index({})  # what Ray does as the trial reports its next checkpoint
    assert storage.checkpoint_dir_name == "checkpoint_000004"

    fresh = storage_of(tmp_path, "new")
    restore(None, trainer(data), tmp_path / "best", fresh)  # a trial with no folder yet starts at Ray's first
    fresh._update_checkpoint_index({})
    assert fresh.checkpoint_dir_name == "checkpoint_000000"


def test_checkpoints_ray_does_not_know_are_deleted_once_superseded(tmp_path, data):
    """Written after the driver's last saved state, they are not Ray's to delete (num_to_keep counts those
    it knows): the older ones go at once, the one loaded is named for the trial to delete after its next."""
    folder = trial_folder(tmp_path / "exp" / "t", data, 5)
    t = trainer(data)
    saved = restore(checkpoint(folder / "checkpoint_000001"), t, tmp_path / "best", storage_of(tmp_path, "t", 1))
    assert t.epoch == 5 and saved[ORPHAN] == str(folder / "checkpoint_000004")
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint_000000", "checkpoint_000001",
                                                        "checkpoint_000004"]
    # the checkpoint Ray named is the newest: every one is Ray's, nothing deleted or named
    saved = restore(checkpoint(folder / "checkpoint_000004"), trainer(data), tmp_path / "best",
                    storage_of(tmp_path, "t", 4))
    assert ORPHAN not in saved and len(list(folder.iterdir())) == 3
    # a PBT clone's own older checkpoints are Ray's (of its life before the exploit): kept
    top = trial_folder(tmp_path / "exp" / "top", data, 1)
    clone = trial_folder(tmp_path / "exp" / "clone", data, 2)
    saved = restore(checkpoint(top / "checkpoint_000000"), trainer(data), tmp_path / "best",
                    storage_of(tmp_path, "clone", 1))
    assert ORPHAN not in saved and len(list(clone.iterdir())) == 2


def test_a_trial_stopped_at_the_report_that_supersedes_its_orphan_leaves_it_to_the_driver(tmp_path, data, monkeypatch):
    """The resumed trial's checkpoint Ray does not know (the orphan) is superseded by its next one; Ray stops a
    trial at the report of its last epoch (or an ASHA rung, or the time budget) and what the trial would run
    after that report never runs: the report names the orphan, and the driver deletes it on seeing the report."""
    from types import SimpleNamespace

    import tuner.trainable as trainable
    from tuner.search import SupersededDeleted

    folder = trial_folder(tmp_path / "exp" / "t", data, 5)
    values = {**TINY, "train": {**TINY["train"], "epochs": 6, "preview_every": 0}}
    cfg = config_from_dict(values)
    reports = []

    class Stopped(Exception):
        pass

    def report(metrics, checkpoint=None):
        reports.append(metrics)
        if checkpoint is not None and metrics["epoch"] == 6:
            raise Stopped  # Ray stops the trial at the report of its last epoch

    monkeypatch.setattr(trainable.tune, "report", report)
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: checkpoint(folder / "checkpoint_000001"))
    monkeypatch.setattr(trainable, "_storage", lambda: storage_of(tmp_path, "t", 1))
    (tmp_path / "work").mkdir()
    with pytest.raises(Stopped):
        trainable._train(cfg, trainable.TrialContext(cfg.to_dict(), checkpoint_every=1),
                         Trainer(cfg, *data, torch.device("cpu")), tmp_path / "work")
    orphan = str(folder / "checkpoint_000004")
    assert reports[-1]["epoch"] == 6 and reports[-1][trainable.SUPERSEDES] == orphan
    assert all(trainable.SUPERSEDES not in r for r in reports[:-1])
    trial = SimpleNamespace(storage=storage_of(tmp_path, "t", 1))
    SupersededDeleted().on_trial_result(0, [], trial, reports[-1])
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint_000000", "checkpoint_000001"]
    SupersededDeleted().on_trial_result(0, [], trial, reports[-1])  # seen again (a resumed driver): nothing to do
