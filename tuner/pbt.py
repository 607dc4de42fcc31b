"""Population-based training as the search runs it: Ray's PBT, with what an exploit leaves made safe and tidy
(TidyPBT), and its schedule kept across a resume. make_scheduler (tuner.search) builds it from the space."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ray import tune
from ray.tune.schedulers import PopulationBasedTraining

from tuner.projection import PBT_GLOBAL, policy_name
from tuner.storage import base_name, checkpoint_dirs, in_folder, newest_index, read_text

CHECKPOINT_DIR_NAME = "checkpoint_dir_name"  # in a result that came with a checkpoint, Ray adds its folder's name


class TidyPBT(PopulationBasedTraining):
    """Ray's PBT, with what an exploit leaves made safe and tidy, and its logs kept across a resume.

    - The checkpoint an exploited trial reported with the result that had it exploited is deleted. Ray registers
      a result's checkpoint only when the trial goes on (TuneController skips it for a trial paused), and an
      exploit stops the trial without a save: that checkpoint stayed in storage, unknown to num_to_keep, never to
      be restored. One per exploit: a smoke study of 8 epochs kept up to 6 checkpoints a trial with
      checkpoint_keep 3, and a long GPU study would keep hundreds.
    - The cloned checkpoint is copied into the exploited trial's own folder and registered as its newest
      (adopt_clone). Ray points the trial at the other trial's checkpoint, which that trial's num_to_keep deletes
      a few checkpoints on: a trial restored any later than at once (its study interrupted and resumed) failed,
      "Could not recover from checkpoint as it does not exist on storage anymore".
    - Ray writes pbt_global.txt and each trial's policy log in the driver's staging folder, one per session,
      and uploads it over the study's: a resumed study's logs began again, the exploits before it gone. The
      study's logs are copied into a session's staging folder before its first exploit is logged.
    - A trial at its perturbation point goes on where the cluster holds every unfinished trial at once (`slots`:
      how many it holds now); Ray paused it for any other paused or pending, and restarted it from its checkpoint.
    - A trial cloned after its checkpoint_keep deleted the checkpoint saved at its perturbation point (it trained on
      faster than the trial cloning it) is cloned from its newest (_exploit): Ray pointed the exploited trial at
      the deleted one, and it failed, "Could not recover from checkpoint" (PBT's paper copies a member's current
      weights too).
    - A resumed study's trials start from the perturbation points their reports reached (`reports`,
      last_perturbation): Ray saves no scheduler state, and after a resume every trial perturbed at its first
      report, off its schedule, ranked against the few trials that had reported since. (A clone source is saved
      at a trial's own perturbation point, as in a study that ran through.)"""

    slots: Callable[[], int] | None = None  # (a study pickled before it was written resumes without it)
    reports: dict[str, list[dict]] | None = None  # a resumed study's reports by trial id (given by restore_tuner)

    def __init__(self, *args, slots: Callable[[], int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.slots = slots

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        rows = (self.reports or {}).pop(trial.trial_id, None)  # read once: a long study's reports are many
        if rows:
            state = self._trial_state[trial]
            state.last_perturbation_time, last = last_perturbation(rows, self._perturbation_interval, self._metric)
            state.last_train_time = state.last_perturbation_time
            if last is not None:
                state.last_score, state.last_result = self._metric_op * last[self._metric], last

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == self.PAUSE and self.slots is not None and trial.status != trial.PAUSED:
            # Ray pauses a trial at its perturbation point whenever another is pending or paused, to give it the
            # slot; but where the whole population fits side by side, the other (one just exploited, restarting)
            # has a slot of its own, and the pause only restarts this trial from its checkpoint.
            unfinished = [t for t in tune_controller.get_trials() if t.status not in (t.TERMINATED, t.ERROR)]
            if len(unfinished) <= self.slots():
                decision = self.CONTINUE
        path = left_by_exploit(trial, result)
        if path is not None:
            try:
                trial.storage.storage_filesystem.delete_dir(path)
            except OSError as e:  # disk space, not the study's work, is lost
                print(f"could not delete {path}, left by trial {trial.trial_id}'s exploit: {e}")
        if trial.status == trial.PAUSED and cloned(trial):
            try:
                adopt_clone(trial)
            except OSError as e:  # the trial goes on from the other's, as Ray left it
                print(f"could not copy the checkpoint trial {trial.trial_id} cloned into its folder: {e}")
        return decision

    def _exploit(self, tune_controller, trial, trial_to_clone) -> None:
        source = self._trial_state[trial_to_clone]
        manager = trial_to_clone.run_metadata.checkpoint_manager
        newest = manager.latest_checkpoint_result
        kept = {r.checkpoint.path for r in manager.best_checkpoint_results}
        # (Ray calls this with the clone's source resolved to a checkpoint: _checkpoint_or_exploit)
        if source.last_checkpoint.path not in kept and newest is not None:
            # the clone's checkpoint_keep deleted the one saved at its perturbation point: it is cloned as it is now
            source.last_checkpoint, source.last_result = newest.checkpoint, newest.metrics
        super()._exploit(tune_controller, trial, trial_to_clone)

    def _log_config_on_step(self, trial_state, new_state, trial, trial_to_clone, new_config) -> None:
        staging = Path(trial.local_experiment_path)
        if not (staging / PBT_GLOBAL).exists():  # the session's first exploit: a resumed study's logs are in storage
            names = [PBT_GLOBAL, *(policy_name(t.trial_id) for t in self._trial_state)]
            copy_pbt_logs(trial.storage.storage_filesystem, trial.storage.experiment_fs_path, staging, names)
        super()._log_config_on_step(trial_state, new_state, trial, trial_to_clone, new_config)


def last_perturbation(rows: list[dict], interval: int, metric: str) -> tuple[int, dict | None]:
    """A trial's last perturbation point, as Ray's async PBT reached it over the trial's reports (oldest first):
    its epoch, and the report it was made at (None: none yet). A trial perturbs at its first report `interval`
    epochs after the last; an exploited one goes on from the clone's checkpoint, saved at the clone's perturbation
    point, and takes that point as its own: its next report trains the epoch after it, with the clone's config."""
    last, at, config = 0, None, None
    for row in rows:
        if metric not in row or "epoch" not in row:
            continue  # Ray's PBT passes over a report without them
        if config is not None and row.get("config") != config:
            last = row["epoch"] - 1
        config = row.get("config")
        if row["epoch"] - last >= interval:
            last, at = row["epoch"], row
    return last, at


def cloned(trial) -> bool:
    """Whether Ray's latest checkpoint of the trial is another trial's (what an exploit leaves)."""
    return trial.checkpoint is not None and not in_folder(trial.checkpoint.path, trial.storage.trial_fs_path)


def adopt_clone(trial) -> str:
    """The other trial's checkpoint that the trial cloned, copied into the trial's own folder under its next
    checkpoint name and registered as its newest (its older ones beyond num_to_keep deleted, as any new
    checkpoint's registration does); returns the copy's path. File by file within the storage's filesystem
    (pyarrow's copy_file: local, NFS or an object store)."""
    import pyarrow.fs
    from ray.train._internal.session import _TrainingResult
    from ray.train._internal.storage import StorageContext

    fs, own = trial.storage.storage_filesystem, trial.storage.trial_fs_path.rstrip("/")
    source = trial.checkpoint.path.rstrip("/")
    number = newest_index(trial.storage.current_checkpoint_index, checkpoint_dirs(fs, own)) + 1
    dest = f"{own}/{StorageContext._make_checkpoint_dir_name(number)}"
    files = fs.get_file_info(pyarrow.fs.FileSelector(source, recursive=True))  # raises where it is gone already
    fs.create_dir(dest)
    for info in files:
        target = dest + info.path[len(source):]
        if info.type == pyarrow.fs.FileType.Directory:
            fs.create_dir(target)
        else:
            fs.copy_file(info.path, target)
    trial.storage.current_checkpoint_index = number - 1  # on_checkpoint counts this one
    metrics = trial.run_metadata.checkpoint_manager.latest_checkpoint_result.metrics
    trial.on_checkpoint(_TrainingResult(checkpoint=tune.Checkpoint(path=dest, filesystem=fs), metrics=metrics))
    return dest


def copy_pbt_logs(fs, experiment_path: str, staging: Path, names: list[str]) -> None:
    """The study's PBT logs `names` from its storage into a driver staging folder that lacks them (a resumed
    session's): Ray appends to them there and uploads them over the study's."""
    for name in names:
        text = read_text(fs, f"{experiment_path.rstrip('/')}/{name}")
        if text and not (staging / name).exists():
            staging.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(text)


def left_by_exploit(trial, result: dict) -> str | None:
    """The folder of the checkpoint `result` came with if Ray will never restore it: the trial is paused
    with no save pending, to go on from another trial's checkpoint, and Ray did not register this one."""
    name = result.get(CHECKPOINT_DIR_NAME)
    if not name or trial.status != trial.PAUSED or trial.is_saving or not cloned(trial):
        return None
    own = trial.storage.trial_fs_path
    kept = {base_name(r.checkpoint.path) for r in trial.run_metadata.checkpoint_manager.best_checkpoint_results
            if in_folder(r.checkpoint.path, own)}
    return None if name in kept else f"{own.rstrip('/')}/{name}"
