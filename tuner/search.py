"""Assembling the search: the searcher (Optuna TPE or random sampling, RDB study), the scheduler
(ASHA, PBT or none), the trainable and the MLflow projection callback, into one Tuner.

Every study starts from what is known to work: the space's base config is its first trial, the
`tune.start_from` points the next ones."""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace

import optuna
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from tuner.cluster import trials_held
from tuner.console import LogFileReporter, Progress
from tuner.outcome import COMPLETED, MODE, PRUNED, decide
from tuner.pbt import TidyPBT  # also the name it has in the scheduler of a study pickled before tuner.pbt
from tuner.projection import MlflowCallback, Projection
from tuner.results import ResultCsv, ResultJson
from tuner.resume import SavedStudy
from tuner.space import MUTABLE, Param, SearchSpace, clip_to_space, define_by_run
from tuner.tracking import TrackingInfo
from tuner.trainable import SUPERSEDES, TrialContext, delete_checkpoint, train_vgan


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


class SupersededDeleted(tune.Callback):
    """A resumed trial's checkpoint that Ray does not know (written after the driver's last saved state; restore
    loaded it) deleted once the trial reports the checkpoint that supersedes it, by the driver, which sees every
    report: the trial deleted it after its report, and one stopped at that report (its last epoch, an ASHA rung,
    the time budget) never got there, its folder keeping one checkpoint more than num_to_keep for good."""

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        if result.get(SUPERSEDES) and trial.storage is not None:
            delete_checkpoint(trial.storage.storage_filesystem, result[SUPERSEDES])


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
    run_config.callbacks += [CheckpointOnce(), SupersededDeleted(), witness]
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
    callbacks += [CheckpointOnce(), SupersededDeleted(), witness]
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
            # (trials write nothing else there: their work files live in scratch folders, tuner.scratch)
            log_to_file=True,
            sync_config=tune.SyncConfig(sync_artifacts=True),
            verbose=2 if verbose else 1,
        ),
    )
