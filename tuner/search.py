"""Assembling the search: the searcher (Optuna TPE or random sampling, RDB study), the scheduler
(ASHA, PBT or none), the trainable and the MLflow projection callback, into one Tuner.

Every study starts from what is known to work: the space's base config is its first trial, the
`tune.start_from` points the next ones."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import optuna
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from tuner.cluster import trials_held
from tuner.console import LogFileReporter, Progress
from tuner.outcome import COMPLETED, MODE, PRUNED, decide
from tuner.projection import PBT_GLOBAL, MlflowCallback, Projection, policy_name
from tuner.results import ResultCsv, ResultJson
from tuner.resume import SavedStudy
from tuner.space import MUTABLE, Param, SearchSpace, clip_to_space, define_by_run
from tuner.storage import base_name, checkpoint_dirs, in_folder, newest_index, read_text
from tuner.tracking import TrackingInfo
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

    def suggest(self, trial_id: str):
        suggestion = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if isinstance(suggestion, dict) and ot_trial is not None:
            ot_trial.set_user_attr("ray_trial_id", trial_id)  # the MLflow projection links its run by it
        return suggestion

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
        outcome = decide(result, None, self.max_epochs)
        if error or outcome.status == COMPLETED or trial_id in self._completed_trials:
            return super().on_trial_complete(trial_id, result, error)
        ot_trial = self._ot_trials[trial_id]
        if outcome.status == PRUNED:
            # Ray hands the last result to on_trial_complete, not on_trial_result: record it too.
            if self.metric in result:
                ot_trial.report(result[self.metric], result["training_iteration"])
            state = optuna.trial.TrialState.PRUNED
        else:  # diverged: failed without raising
            ot_trial.set_user_attr("error", outcome.error)
            state = optuna.trial.TrialState.FAIL
        self._ot_study.tell(ot_trial, state=state)
        self._completed_trials.add(trial_id)

    def _ended_in_optuna(self, trial_id: str) -> bool:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            return False
        ended = self._ot_study.get_trials(deepcopy=False, states=(
            optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL))
        return any(t.number == ot_trial.number for t in ended)


def make_searcher(space: SearchSpace, study_name: str, storage_url: str):
    """Optuna (TPE or random) with the study in an RDB; for PBT, Ray's own random sampling."""
    t = space.tune
    if space.searcher is None:
        return BasicVariantGenerator(points_to_evaluate=space.points(), random_state=t.seed)
    sampler = optuna.samplers.TPESampler(seed=t.seed) if space.searcher == "tpe" else \
        optuna.samplers.RandomSampler(seed=t.seed)
    return PruneAwareOptunaSearch(
        functools.partial(define_by_run, params=space.params, base=space.base),
        metric=space.score, mode=MODE, study_name=study_name, points_to_evaluate=space.points(),
        storage=optuna.storages.RDBStorage(storage_url), sampler=sampler, max_epochs=space.epochs,
    )


def ray_domain(p: Param):
    """A search-space distribution as Ray samples it (PBT's initial population and mutations)."""
    if p.type == "categorical":
        return tune.choice(p.choices)
    if p.type == "int":
        return tune.lograndint(p.low, p.high + 1) if p.log else tune.qrandint(p.low, p.high, p.step)
    return tune.loguniform(p.low, p.high) if p.log else tune.uniform(p.low, p.high)


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


def make_scheduler(space: SearchSpace):
    t = space.tune
    if t.scheduler == "asha":
        return ASHAScheduler(time_attr="epoch", max_t=space.epochs, grace_period=t.grace_period,
                             reduction_factor=t.reduction_factor)
    if t.scheduler == "pbt":
        # Ray's GAN example tunes this way: every pbt_interval epochs the bottom quarter clones the
        # weights of a top-quarter trial and perturbs its learning rates and loss weights.
        mutations = {p.key: ray_domain(p) for p in space.params if p.key in MUTABLE}
        return TidyPBT(time_attr="epoch", perturbation_interval=t.pbt_interval, hyperparam_mutations=mutations,
                       quantile_fraction=0.25, resample_probability=0.25,
                       custom_explore_fn=functools.partial(clip_to_space, params=space.params),
                       slots=functools.partial(trials_held, space))
    return FIFOScheduler()


def make_trainable(space: SearchSpace):
    ctx = TrialContext(base=space.base, checkpoint_every=space.tune.checkpoint_every,
                       signal_window=space.tune.signal_window)
    resources = {"cpu": space.resources.cpu, "gpu": space.resources.gpu}
    return tune.with_resources(tune.with_parameters(train_vgan, ctx=ctx), resources)


class ResizedSearch(SearchGenerator):
    """Ray's wrapper of a searcher, taking a resumed study's size and width from the space rather than from
    the study's saved state, which Ray restores over them (SearchGenerator.set_state: the number of trials;
    ConcurrencyLimiter's: how many at once), and which a stopped study saved as finished. More trials: the
    search goes on where it stood; no more than have begun: none new."""

    def __init__(self, searcher, num_samples: int, max_concurrent: int, ended: set[str]):
        super().__init__(ConcurrencyLimiter(searcher, max_concurrent=max_concurrent))
        self.num_samples, self.max_concurrent, self.ended = num_samples, max_concurrent, ended

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self._total_samples = self.num_samples
        limiter = self.searcher
        limiter.max_concurrent = self.max_concurrent
        # A study its time budget stopped was saved as finished (TuneController: stop_all -> set_finished),
        # and with the trials it stopped still live to the limiter (the searcher hears of no trial's end once
        # the search is finished): it would wait for them forever. A searcher with nothing left to suggest
        # says so again at its next suggestion.
        self._finished = False
        limiter.live_trials -= self.ended
        limiter.num_unfinished_live_trials = len(limiter.live_trials)


def seed_rungs(scheduler: ASHAScheduler, score: str, reports: dict[str, list[dict]]) -> None:
    """ASHA's rungs as the study's reports filled them: Ray saves no scheduler state (tuner.pkl holds the
    scheduler as the study began), so after a resume the rungs began empty and the trials that followed were
    held against what ran since. Each trial records, at each milestone, its score at its first report there,
    whatever was decided: replaying the reports in any order gives the rungs the study had."""
    (bracket,) = scheduler._brackets  # ASHAScheduler's one bracket (brackets=1, make_scheduler)
    sign = 1.0 if MODE == "max" else -1.0
    for trial_id, rows in reports.items():
        stub = SimpleNamespace(trial_id=trial_id)
        for row in rows:
            # as ASHAScheduler.on_trial_result records: a report at max_t stops the trial unrecorded
            if score in row and "epoch" in row and row["epoch"] < scheduler._max_t:
                bracket.on_result(stub, row["epoch"], sign * row[score])


class CheckpointOnce(tune.Callback):
    """Each checkpoint in its trial's list once. PBT asks a top trial to save at a perturbation (its clone source),
    on the very result whose checkpoint Tune also saves: a function trainable answers both saves with the one
    checkpoint it last reported, and Tune registered it twice (ray 2.60). num_to_keep then kept one checkpoint fewer
    and, as it fell out of the window, deleted its folder twice: the second time Tune logged "Error handling
    checkpoint ... FileNotFoundError: Path not found" and skipped marking the trial for the study's saved state.
    Tune calls this just before it registers a save: an earlier entry of the same folder (or any entry a resumed
    study's saved state repeats) makes way for it."""

    def on_checkpoint(self, iteration: int, trials: list, trial, checkpoint, **info) -> None:
        manager = trial.run_metadata.checkpoint_manager
        seen, kept = {checkpoint.path}, []
        for r in reversed(manager._checkpoint_results):
            if r.checkpoint.path not in seen:
                seen.add(r.checkpoint.path)
                kept.append(r)
        manager._checkpoint_results = kept[::-1]


class StopWitness(tune.Callback):
    """Which trials the fit's end stopped, and whose each result is (own_results). Tune stops them without telling
    its callbacks, the searcher or the scheduler (TuneController._stop_experiment_if_needed, and cleanup after an
    interrupt), where a trial that completes, is pruned or fails is told to each (stop_trial, on_trial_error). Read
    `stopped` after fit: {trial id: its last reported epoch} of the trials TERMINATED untold, but those of
    `ended_before` (a restored study's trials it will not run again: SavedStudy.ended)."""

    def __init__(self, ended_before: set[str] = frozenset()):
        self.ended_before = set(ended_before)
        self.stopped: dict[str, int] = {}
        self._told: set[str] = set()
        self._trials: dict[str, tuple[str, dict]] = {}  # trial path: (id, config), as the fit's end saw them

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._told.add(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._told.add(trial.trial_id)

    def on_experiment_end(self, trials: list, **info) -> None:
        self.stopped = {t.trial_id: int((t.last_result or {}).get("epoch", 0) or 0) for t in trials
                        if t.status == Trial.TERMINATED and t.trial_id not in self._told | self.ended_before}
        self._trials = {t.path: (t.trial_id, t.config) for t in trials}

    def own_results(self, results):
        """Tune's ResultGrid of the fit, each result's metrics the trial's own. Those of a trial that never reported
        are its actor's auto-filled ones, asked for as Tune hands it the actor; an actor reused from an ended trial
        answers before its reset, with that trial's id, time and config (TuneController._maybe_reuse_cached_actor,
        ray 2.60): a trial the fit's end stopped in that moment was taken for the ended one (a second row of it in
        the summary, no run of its own: CI met it). Such a trial's metrics become its id and config; a trial that
        never reported and got no actor gets its config, as MLflow's run and trials.csv show it."""
        for r in results:
            if r.path not in self._trials:
                continue
            trial_id, config = self._trials[r.path]
            if (r.metrics or {}).get("trial_id") != trial_id:
                r.metrics = {"trial_id": trial_id}
            r.metrics.setdefault("config", config)
        return results


def restore_tuner(space: SearchSpace, path: str, saved: SavedStudy, witness: StopWitness) -> tune.Tuner:
    """A study's Tuner from its saved state (finished trials are not re-run, unfinished ones continue from
    their checkpoints, failed ones stay failed), with the space's num_samples, max_concurrent_trials and
    time_budget_s (tuner.space.RESUMABLE_TUNE): Ray keeps the ones the study began with, and has no public
    way to change them (ray 2.60). A PBT population's size is part of its recipe, refused before. ASHA's rungs
    are seeded from the trials' reports (seed_rungs), and PBT's perturbation points (TidyPBT.reports). `witness`
    replaces the one the study pickled when it began."""
    tuner = tune.Tuner.restore(path, trainable=make_trainable(space), resume_unfinished=True, resume_errored=False)
    run_config = tuner._local_tuner._run_config  # its callbacks are the ones the study began with
    # (a study begun before CheckpointOnce was written resumes with it too)
    run_config.callbacks = [c for c in run_config.callbacks or [] if not isinstance(c, (StopWitness, CheckpointOnce))]
    run_config.callbacks += [CheckpointOnce(), witness]
    t = space.tune
    config = tuner._local_tuner._tune_config  # what Tuner.fit hands tune.run (ray/tune/impl/tuner_internal.py)
    config.time_budget_s = t.time_budget_s  # its clock starts when the resumed fit does
    if space.searcher is not None:  # an Optuna searcher, as the study pickled it when it began
        config.search_alg = ResizedSearch(config.search_alg, t.num_samples, t.max_concurrent_trials, saved.ended)
        config.max_concurrent_trials = None  # the limiter is in place (tune.run would wrap it again)
    if isinstance(config.scheduler, ASHAScheduler):
        seed_rungs(config.scheduler, space.score, saved.reports())
    if isinstance(config.scheduler, TidyPBT):  # the nodes the resumed study runs on (and one begun without it)
        config.scheduler.slots = functools.partial(trials_held, space)
        config.scheduler.reports = saved.reports()
    return tuner


def make_projection(space: SearchSpace, tracking: TrackingInfo, storage_url: str | None) -> Projection:
    linked = storage_url and space.searcher is not None
    return Projection(tracking, space.base, space.epochs, (storage_url, tracking.study_name) if linked else None)


def build_tuner(space: SearchSpace, tracking: TrackingInfo, storage: str, name: str, storage_url: str,
                log: Path, witness: StopWitness, verbose: bool = False) -> tune.Tuner:
    """`log`: where Ray's status table goes (unless verbose: then Ray prints it, and its per-trial boxes)."""
    t = space.tune
    # the console's trial-end lines first, then the projection's summary (it may wait for MLflow)
    callbacks = [ResultJson(), ResultCsv()]  # in place of Ray's own, which lose rows on a restart
    if not verbose:
        callbacks.append(Progress(space.metric, space.score, space.epochs))
    callbacks.append(MlflowCallback(make_projection(space, tracking, storage_url), space.mlflow.outage_window_s))
    callbacks += [CheckpointOnce(), witness]
    return tune.Tuner(
        make_trainable(space),
        # PBT's population is sampled by Ray from the param space; Optuna's searchers have their own
        param_space={p.key: ray_domain(p) for p in space.params} if space.searcher is None else None,
        tune_config=tune.TuneConfig(
            metric=space.score, mode=MODE,
            search_alg=make_searcher(space, name, storage_url),
            scheduler=make_scheduler(space),
            num_samples=t.num_samples,
            max_concurrent_trials=t.max_concurrent_trials,
            time_budget_s=t.time_budget_s,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=t.checkpoint_keep),
            failure_config=tune.FailureConfig(max_failures=t.max_failures),
            # (None is Ray's own reporter, which prints its table to the terminal)
            progress_reporter=None if verbose else LogFileReporter(log, space.metric, space.score, space.params),
            # each trial's stdout and stderr, uploaded from the worker to its folder in the storage
            # (trials write nothing else there: their work files live in temporary folders)
            log_to_file=True,
            sync_config=tune.SyncConfig(sync_artifacts=True),
            verbose=2 if verbose else 1,
        ),
    )
