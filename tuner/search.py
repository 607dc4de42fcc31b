"""Assembling the search: Optuna TPE (RDB study) + ASHA + the MLflow status callback."""

from __future__ import annotations

import functools
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import optuna
import pyarrow.fs
from mlflow.entities import RunTag
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from tuner.replay import sync_trial
from tuner.space import SearchSpace, define_by_run
from tuner.storage import checkpoint_dirs
from tuner.tracking import TrackingInfo, close_trial_run, trial_run_id, wait_for_server
from tuner.trainable import TrialContext, train_vgan


class PruneAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about trials ASHA stopped.

    Ray hands a stopped trial to the searcher as complete with its last (early-epoch)
    score; TPE would then learn from a value the trial never reached. A trial that ended
    before its last epoch without an error is told as PRUNED (its per-epoch values are
    already in the study as intermediate values).
    """

    def __init__(self, *args, max_epochs: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # finished in Optuna before a driver was killed: a resumed trial reports its end again

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id not in self._completed_trials and self._ended_in_optuna(trial_id):
            # A driver killed after telling Optuna, before saving its own state, leaves a trial that
            # ends twice; Optuna keeps the first ending.
            self._completed_trials.add(trial_id)
            return
        self._tell(trial_id, result, error)

    def _ended_in_optuna(self, trial_id: str) -> bool:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            return False
        ended = self._ot_study.get_trials(deepcopy=False, states=(
            optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL))
        return any(t.number == ot_trial.number for t in ended)

    def _tell(self, trial_id: str, result: dict | None, error: bool) -> None:
        if result is not None and result.get("diverged") and trial_id not in self._completed_trials:
            ot_trial = self._ot_trials[trial_id]
            ot_trial.set_user_attr("error", str(result.get("error", "diverged")))
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
            self._completed_trials.add(trial_id)
            return
        stopped_early = not error and result is not None and result.get("epoch", self.max_epochs) < self.max_epochs
        if not stopped_early or trial_id in self._completed_trials:
            return super().on_trial_complete(trial_id, result, error)
        ot_trial = self._ot_trials[trial_id]
        # Ray hands the last result to on_trial_complete, not on_trial_result: record it too.
        if self.metric in result:
            ot_trial.report(result[self.metric], result["training_iteration"])
        self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
        self._completed_trials.add(trial_id)


def make_searcher(space: SearchSpace, study_name: str, storage_url: str) -> PruneAwareOptunaSearch:
    t = space.tune
    return PruneAwareOptunaSearch(
        functools.partial(define_by_run, params=space.params, base=space.base),
        metric=t.metric, mode=t.mode, study_name=study_name,
        storage=optuna.storages.RDBStorage(storage_url),
        sampler=optuna.samplers.TPESampler(seed=t.seed),
        max_epochs=space.epochs,
    )


def make_scheduler(space: SearchSpace) -> ASHAScheduler:
    t = space.tune
    return ASHAScheduler(time_attr="epoch", max_t=space.epochs, grace_period=t.grace_period,
                         reduction_factor=t.reduction_factor)


class StatusCallback(tune.Callback):
    """Closes each trial's MLflow run with its final status (only the driver sees pruning)."""

    def __init__(self, tracking: TrackingInfo, max_epochs: int, window_s: float = 600.0):
        self.tracking = tracking
        self.max_epochs = max_epochs
        self.window_s = window_s
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; threads do not pickle.
        return {**self.__dict__, "_pool": None, "_pending": []}

    def _submit(self, fn, *args) -> None:
        if self._pool is None:
            # Logging a pruned trial's model takes seconds: off Tune's event loop, or slots sit idle.
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-finish")
        self._pending.append(self._pool.submit(fn, *args))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info):
        result = trial.last_result or {}
        run_id = result.get("mlflow_run_id")
        epoch = int(result.get("epoch", 0))
        if result.get("diverged"):
            status, tags = "failed", {"error": str(result.get("error", "diverged"))}
        elif epoch >= self.max_epochs:
            status, tags = "completed", {}
        else:
            status, tags = "pruned", {"pruned_at_epoch": str(epoch)}
        storage = (trial.storage.storage_filesystem, trial.path) if trial.storage is not None else None
        results = (pyarrow.fs.LocalFileSystem(), trial.local_path) if trial.local_path else None
        self._submit(self._finish, run_id, status, tags, storage, results)

    def _finish(self, run_id: str | None, status: str, tags: dict[str, str], storage, results) -> None:
        """Off the event loop: MLflow gets every epoch and the best model of the trial (from Ray's
        results, so epochs a tracking-server outage held back arrive too), then the final status.
        A pruned trial's checkpoints are deleted afterwards: its model is in MLflow."""
        try:
            if not wait_for_server(self.tracking.uri, self.window_s):
                print(f"MLflow at {self.tracking.uri} unreachable for {self.window_s:.0f} s: trial left to "
                      "`python -m tuner.replay`", flush=True)
                return
            if storage is not None:
                run_id = sync_trial(self.tracking, *storage, results=results)["run_id"] or run_id
            self._close(run_id, status, tags)
            if status == "pruned" and storage is not None:
                delete_checkpoints(*storage)
        except Exception:  # never let bookkeeping take the study down
            traceback.print_exc()

    def on_experiment_end(self, trials: list, **info):
        self.wait()

    def wait(self) -> None:
        for f in self._pending:
            f.result()
        self._pending.clear()

    def on_trial_recover(self, iteration: int, trials: list, trial, **info):
        """A trial that raised is retried from its last checkpoint: say so on its run."""
        run_id = (trial.last_result or {}).get("mlflow_run_id")
        if run_id is None:
            return
        try:
            from mlflow.tracking import MlflowClient

            MlflowClient(self.tracking.uri).log_batch(run_id, tags=[
                RunTag("retries", str(trial.num_failures)),
                RunTag("last_error", _last_line(trial_error(trial))[:5000])])
        except Exception:
            traceback.print_exc()

    def on_trial_error(self, iteration: int, trials: list, trial, **info):
        message = _last_line(trial_error(trial))
        run_id = (trial.last_result or {}).get("mlflow_run_id")
        if run_id is None:  # failed before its first report: its run may exist already, or not
            from mlflow.tracking import MlflowClient

            run_id, _ = trial_run_id(MlflowClient(self.tracking.uri), self.tracking, trial.trial_id)
        self._close(run_id, "failed", {"error": message})

    def _close(self, run_id: str | None, status: str, tags: dict[str, str]) -> None:
        if run_id is None:
            return
        try:
            close_trial_run(self.tracking.uri, run_id, status, tags)
        except Exception:  # never let bookkeeping take the study down
            traceback.print_exc()


def delete_checkpoints(fs, trial_path: str) -> None:
    """Remove a trial's checkpoints from Ray's storage (local, shared or object store)."""
    for path in checkpoint_dirs(fs, trial_path):
        fs.delete_dir(path)


def trial_error(trial) -> str:
    """The trial's error log as the driver just wrote it (the copy in storage is synced later
    and can still hold an earlier attempt's error)."""
    try:
        path = Path(trial.error_file) if trial.error_file else None
        if path is not None and path.is_file():
            return path.read_text()
    except OSError:
        pass
    return str(trial.get_error() or "unknown error")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else text


def make_trainable(space: SearchSpace, tracking: TrackingInfo):
    ctx = TrialContext(base=space.base, tracking=tracking, checkpoint_every=space.tune.checkpoint_every,
                       metric=space.tune.metric, mode=space.tune.mode, outage_window_s=space.mlflow.outage_window_s)
    resources = {"cpu": space.resources.cpu, "gpu": space.resources.gpu}
    return tune.with_resources(tune.with_parameters(train_vgan, ctx=ctx), resources)


def build_tuner(space: SearchSpace, tracking: TrackingInfo, storage: str, name: str, storage_url: str) -> tune.Tuner:
    t = space.tune
    return tune.Tuner(
        make_trainable(space, tracking),
        tune_config=tune.TuneConfig(
            metric=t.metric, mode=t.mode,
            search_alg=make_searcher(space, name, storage_url),
            scheduler=make_scheduler(space),
            num_samples=t.num_samples,
            max_concurrent_trials=t.max_concurrent_trials,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            callbacks=[StatusCallback(tracking, space.epochs, space.mlflow.outage_window_s)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=t.checkpoint_keep),
            failure_config=tune.FailureConfig(max_failures=t.max_failures),
            verbose=1,
        ),
    )
