"""Ray trials as the driver holds them (Trial, StorageContext, checkpoint manager), and their saved state as
TuneController writes it: for the tuner's code that reads or mends what Ray keeps, without a study."""

import json

import pyarrow.fs
from ray import tune
from ray.train._internal.session import _TrainingResult
from ray.train._internal.storage import StorageContext
from ray.tune.experiment.trial import Trial
from ray.tune.utils.serialization import TuneFunctionEncoder

from tuner.trainable import STATE_FILE

FS = pyarrow.fs.LocalFileSystem()
KEEP = 2  # the trials' num_to_keep: tune.checkpoint_keep's default (tuner.space)


def ray_trial(root, name, status="RUNNING", config=None, trial_id=None):
    storage = StorageContext(storage_path=str(root), experiment_dir_name="exp", trial_dir_name=name)
    trial = Trial("train_vgan", config=config or {}, trial_id=trial_id, stub=True, storage=storage,
                  checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP),
                  placement_group_factory=tune.PlacementGroupFactory([{"CPU": 1}]))
    trial.create_placement_group_factory()  # as TuneController.add_trial does
    trial.set_status(status)
    return trial


def checkpoint_written(trial, number, content=b"weights", files=None, callbacks=()):
    """The trial writes checkpoint_<number> (`files`: {relative path: bytes}, by default its state) in its storage,
    whichever filesystem that is, and the driver registers it (deleting beyond num_to_keep), after telling
    `callbacks` as TuneController does."""
    fs = trial.storage.storage_filesystem
    path = f"{trial.storage.trial_fs_path}/checkpoint_{number:06d}"
    fs.create_dir(path)
    for name, data in (files or {STATE_FILE: content}).items():
        with fs.open_output_stream(f"{path}/{name}") as f:
            f.write(data)
    checkpoint_saved(trial, path, callbacks)
    return path


def checkpoint_saved(trial, path, callbacks=()):
    """A save of the trial's checkpoint at `path` handed to the driver (TuneController._process_trial_save): its
    callbacks are told, then the trial registers it."""
    checkpoint = tune.Checkpoint(path=path, filesystem=trial.storage.storage_filesystem)
    for c in callbacks:
        c.on_checkpoint(iteration=0, trials=[trial], trial=trial, checkpoint=checkpoint)
    trial.on_checkpoint(_TrainingResult(checkpoint=checkpoint, metrics={}))


def state_saved(root, *trials, stamp="2026-12-03_12-00-00"):
    """TuneController.save_to_dir's file, as Tuner.restore reads it."""
    state = {"trial_data": [t.get_json_state() for t in trials], "runner_data": {}, "stats": {}}
    (root / "exp" / f"experiment_state-{stamp}.json").write_text(json.dumps(state, cls=TuneFunctionEncoder))
