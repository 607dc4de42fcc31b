"""MLflow as a projection of Ray's results: the driver writes every trial's child run.

Trials never talk to MLflow. What a trial knows is in its reports and checkpoints (Ray's
results: the one record); this module projects it into the study's MLflow layout (DESIGN.md):

- `Projection` writes one trial's child run: each reported epoch once, with the epoch as step
  (an epoch trained again, by a PBT clone of a trial behind or a retry after the last
  checkpoint, is a second value at its step). Each call checks what the run holds already,
  so it is idempotent: a resumed driver, the end-of-study pass and `tuner.replay` add only
  what is missing.
- `MlflowCallback` drives it live during `Tuner.fit`, from Tune's callbacks, off Tune's event
  loop: one thread works through one queue in order. While a tracking server cannot be
  reached the queue waits (the study goes on training) and the item is tried again once the
  server answers; nothing is dropped but a call the server refused.
- `project_trials` runs the same projection over a finished study's trials in storage:
  after `Tuner.fit` (what a killed driver left undone) and in `tuner.replay`.
"""

from __future__ import annotations

import bisect
import json
import math
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml
from ray.tune.logger import LoggerCallback

from tuner.outcome import (
    ENDED,
    FAILED,
    INTERRUPTED,
    PRUNED,
    STOPPED,
    Outcome,
    decide,
    failures,
    trial_error,
    trial_outcome,
)
from tuner.scratch import BEST_PREFIX, scratch
from tuner.storage import checkpoint_dirs, newest_best, read_text
from tuner.tracking import (
    DIRTY_TAG,
    RESUMED_TAG,
    MlflowClient,
    Study,
    TrackingInfo,
    child_runs,
    log_best_model,
    server_answers,
    short,
)
from tuner.trainable import REPEATS, WALL_TIME, load_data
from vgan.config import Config, apply_overrides, config_from_dict

CONFIG_FILE = "config.yaml"  # on a trial's run: the trainer config it trained with (base + its params)
EPOCH_KEY = "epoch_s"  # logged with every epoch: its history says which reports a run holds
# a trial's reports say where it trains, kept as its run's tags: the Ray node, and what the trainer runs on there
# (vgan.provenance.describe_environment: the GPU's name or the CPU's, and torch's version)
PLACE_TAGS = ("node_id", "environment")


def is_epoch_metric(key: str, value: Any) -> bool:
    """What of a trial's report goes on its run (Ray adds its own bookkeeping to results)."""
    return (key.startswith(("loss_", "val_", "best_val_")) or key in ("epoch_s", "val_s")) and \
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def reported_ms(row: dict[str, Any]) -> int:
    """When a row was reported, in ms: the trial's stamp, else Ray's (whole seconds: results stored
    before trials stamped their own)."""
    return int(row.get(WALL_TIME, row.get("timestamp", time.time())) * 1000)


def report_keys(row: dict[str, Any]) -> list[tuple[int, int]]:
    """(epoch, ms) of the report a row is, and of the one it says again (REPEATS) if any: what
    tells an epoch trained again (a new report) from an epoch said again (not new to a run that has it)."""
    step = int(row.get("epoch", 0))
    return [(step, reported_ms(row))] + ([(step, int(row[REPEATS] * 1000))] if REPEATS in row else [])


def hyperparameters(config: dict[str, Any]) -> dict[str, float]:
    """The numeric values of a trial's config: what PBT perturbs, logged as `hp.<key>`."""
    return {k: float(v) for k, v in config.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass
class TrialRecord:
    """What the projection needs of one ended trial, read from Ray's storage."""

    trial_id: str
    params: dict[str, Any]
    results: list[dict[str, Any]]  # one per reported epoch, oldest first
    error: str | None  # the error log of a trial that raised (out of retries), else None
    fs: Any = None  # pyarrow filesystem and path of the trial folder (checkpoints)
    path: str | None = None
    policy: str | None = None  # PBT's policy log of the trial (beside the trial folders), if any

    @classmethod
    def read(cls, fs, path: str) -> TrialRecord | None:
        """None for a folder with no reported result (a trial that raised before its first epoch
        was projected live; nothing else of it is in storage)."""
        rows = [json.loads(ln) for ln in read_text(fs, f"{path}/result.json").splitlines() if ln.strip()]
        if not rows:
            return None
        params = json.loads(read_text(fs, f"{path}/params.json") or "{}")
        trial_id = rows[-1]["trial_id"]
        policy = read_text(fs, f"{path.rstrip('/').rpartition('/')[0]}/{policy_name(trial_id)}") or None
        return cls(trial_id, params, rows, read_text(fs, f"{path}/error.txt") or None, fs, path, policy)


def policy_name(trial_id: str) -> str:
    """Ray's PBT policy log of a trial, in the study folder: the lineage of the trial's final
    weights (on an exploit Ray copies the cloned trial's log over the target's, then appends)."""
    return f"pbt_policy_{trial_id}.txt"


PBT_GLOBAL = "pbt_global.txt"  # Ray's PBT log of every exploit of the study, in the study folder
PERTURBED = "@perturbed["  # what Ray's PBT appends to an exploited trial's tag


def own_exploits(exploits: str, policies: Mapping[str, str]) -> dict[str, int]:
    """How many exploits of the study (`exploits`: Ray's pbt_global.txt) each trial with a policy log was
    the target of. A line names its target by the tag PBT took the trial on with (`N_params`; after a resume
    the perturbed one, `N_params@perturbed[...]`: Ray saves no scheduler state) and the target's own policy
    log ends with its last exploit, so that names the trial. Lines that are not Ray's are passed over."""
    def target(line: str) -> str | None:
        try:
            entry = json.loads(line)
        except ValueError:
            return None
        return str(entry[0]).split(PERTURBED)[0] if isinstance(entry, list) and entry else None

    counts: dict[str, int] = {}
    for line in exploits.splitlines():
        tag = target(line)
        if tag is not None:
            counts[tag] = counts.get(tag, 0) + 1
    own = {}
    for trial_id, policy in policies.items():
        lines = [ln for ln in policy.splitlines() if ln.strip()]
        tag = target(lines[-1]) if lines else None
        if tag is not None:
            own[trial_id] = counts.get(tag, 0)
    return own


@dataclass
class Projection:
    """Writes trials into the study's child runs (find-or-create by the `trial_id` tag)."""

    info: TrackingInfo
    base: dict[str, Any]  # the space's base trainer config: a run's config.yaml is base + params
    max_epochs: int
    optuna_study: tuple[str, str] | None = None  # (storage URL, study name): links trials both ways
    _runs: dict[str, str] = field(default_factory=dict, repr=False)
    _logged: dict[str, set[int]] = field(default_factory=dict, repr=False)
    _source_tags: dict[str, str] | None = field(default=None, repr=False)

    def __post_init__(self):
        self.client = MlflowClient(self.info.uri)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state: keep plain values only.
        return {k: v for k, v in self.__dict__.items() if k not in ("client", "_runs", "_logged")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _runs={}, _logged={})
        self.__post_init__()

    # ------------------------------------------------------------------ one trial

    def open(self, trial_id: str, params: dict[str, Any], running: bool = True) -> str:
        run_id = self._runs.get(trial_id)
        if run_id is None:
            found = self.client.search_runs(
                [self.info.experiment_id],
                f"tags.trial_id = '{trial_id}' and tags.mlflow.parentRunId = '{self.info.parent_run_id}'",
                max_results=1)
            run_id = found[0].info.run_id if found else self._create(trial_id, params)
            if found:  # what a driver that died while creating it left unwritten
                self._fill_in(found[0], params)
            if running and found and found[0].data.tags.get("status") == INTERRUPTED:  # its study resumed
                self.client.set_tag(run_id, "status", "running")
            self._runs[trial_id] = run_id
        if running:
            self.client.update_run(run_id, status="RUNNING")
        return run_id

    def _create(self, trial_id: str, params: dict[str, Any]) -> str:
        run = self.client.create_run(self.info.experiment_id, run_name=trial_id, tags={
            "mlflow.parentRunId": self.info.parent_run_id, "trial_id": trial_id, "study": self.info.study_name,
            "status": "running", **self._source()})
        run_id = run.info.run_id
        self._log_config(run_id, params)
        self._log_params(run_id, params)  # after config.yaml: a run with params has both (_fill_in)
        self._logged[run_id] = set()
        self._link_optuna(trial_id, run_id)
        return run_id

    def _fill_in(self, run, params: dict[str, Any]) -> None:
        """A found run's params, config.yaml and Optuna link, where the driver that created it died first."""
        run_id = run.info.run_id
        if not run.data.params:  # (its params are what it wrote last; a trial without any is asked)
            if not any(a.path == CONFIG_FILE for a in self.client.list_artifacts(run_id)):
                self._log_config(run_id, params)
            if params:
                self._log_params(run_id, params)
        if "optuna_trial_number" not in run.data.tags:
            self._link_optuna(run.data.tags["trial_id"], run_id)

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param(k, short(v)) for k, v in params.items()])

    def _log_config(self, run_id: str, params: dict[str, Any]) -> None:
        self.client.log_text(run_id, yaml.safe_dump(self.trainer_config(params).to_dict(), sort_keys=False),
                             CONFIG_FILE)

    def _source(self) -> dict[str, str]:
        """What ran the study (command, commit, git_dirty, resumed_git_commits), as its run says: a trial's page
        shows it too, and `tuner.replay` copies it rather than naming the code that replays."""
        if self._source_tags is None:
            tags = self.client.get_run(self.info.parent_run_id).data.tags
            self._source_tags = {k: v for k, v in tags.items()
                                 if k.startswith("mlflow.source.") or k in (DIRTY_TAG, RESUMED_TAG)}
        return self._source_tags

    def _link_optuna(self, trial_id: str, run_id: str) -> None:
        """Optuna's trial gets the MLflow run id (it has the Ray trial id from the searcher); the
        run gets the Optuna trial number."""
        if self.optuna_study is None:
            return
        import optuna

        url, name = self.optuna_study
        study = optuna.load_study(study_name=name, storage=url)
        for t in study.get_trials(deepcopy=False):
            if t.user_attrs.get("ray_trial_id") == trial_id:
                if not t.state.is_finished():
                    study._storage.set_trial_user_attr(t._trial_id, "mlflow_run_id", run_id)
                self.client.set_tag(run_id, "optuna_trial_number", str(t.number))
                return

    def log_epochs(self, trial_id: str, rows: list[dict[str, Any]]) -> int:
        """Each reported epoch once, step = epoch, at its report's time; returns how many were added.

        A report is known by (epoch, time): an epoch trained again is a second value at its step
        (MLflow shows the newest as the run's), a report said again (a restarted finished trial's
        end) adds nothing where the run holds the original."""
        from mlflow.entities import Metric

        run_id = self._runs[trial_id]
        logged = self._logged.get(run_id)
        if logged is None:  # a run this process did not create: ask what it holds
            logged = self._logged[run_id] = {(m.step, m.timestamp)
                                             for m in self.client.get_metric_history(run_id, EPOCH_KEY)}
        added = 0
        for r in rows:
            keys = report_keys(r)
            (step, ts) = keys[0]
            if step < 1 or EPOCH_KEY not in r or any(k in logged for k in keys):
                continue
            self.client.log_batch(run_id, metrics=[Metric(k, float(v), ts, step) for k, v in r.items()
                                                   if is_epoch_metric(k, v)])
            logged.add((step, ts))
            added += 1
        return added

    def log_schedule(self, trial_id: str, rows: list[dict[str, Any]]) -> int:
        """The trial's numeric hyperparameters at its first epoch and wherever they changed (PBT's
        exploits), as metrics `hp.<key>` at the first epoch trained with them (its schedule). From each
        row's `config` (what the trainable ran with, as Ray's results hold it) and its timestamp, so the
        live driver and `tuner.replay` write the same, each change once. An exploit that left the values
        as they were adds none (log_exploits counts exploits). Returns how many were added."""
        from mlflow.entities import Metric

        run_id = self._runs[trial_id]
        rows = [r for r in rows if isinstance(r.get("config"), dict)]
        if not rows:
            return 0
        entries: dict[tuple[int, int], dict[str, float]] = {}  # what the run holds: (time, step) -> values
        for k in hyperparameters(rows[0]["config"]):
            for m in self.client.get_metric_history(run_id, f"hp.{k}"):
                entries.setdefault((m.timestamp, m.step), {})[k] = m.value
        held = sorted(entries.items(), key=lambda e: e[0][0])
        added = 0
        for r in rows:
            values, step = hyperparameters(r["config"]), int(r.get("epoch", 0))
            ts = reported_ms(r)
            # by time, not epoch (a clone of a trial behind takes the epoch back); a row agreeing with
            # what the run says was in effect then adds nothing, so rows Ray lost change nothing either.
            # A change at this row's very time is in effect only if it is this row's: in whole seconds
            # (results stored before trials stamped their own) the row that made a trial exploit and the
            # clone's first can share one, and the older row would read as a change back
            now = [v for (t, s), v in held if t < ts or (t, s) == (ts, step)]
            if now and now[-1] == values:
                continue
            self.client.log_batch(run_id, metrics=[Metric(f"hp.{k}", v, ts, step) for k, v in values.items()])
            bisect.insort(held, ((ts, step), values), key=lambda e: e[0][0])
            added += 1
        return added

    def log_exploits(self, exploits: str, policies: Mapping[str, str]) -> None:
        """PBT's log of every exploit of the study on its parent run (`pbt/pbt_global.txt`), and on each
        exploited trial's run the tag `pbt_exploits`: how many times PBT cloned another trial's weights into
        it (`policies`: the trials' policy logs by trial id). Counted from the log, not from the schedule:
        a trial that cloned the same trial twice can draw the same perturbation, and clip_to_space can bring
        two draws to one bound, so an exploit may leave its values as they were."""
        self.client.log_text(self.info.parent_run_id, exploits, f"pbt/{PBT_GLOBAL}")
        self.tag_exploits(exploits, policies)

    def tag_exploits(self, exploits: str, policies: Mapping[str, str]) -> None:
        """Each exploited trial's tag `pbt_exploits`, as log_exploits counts them (live, as the log grows)."""
        runs = {r.data.tags.get("trial_id"): r for r in child_runs(self.client, self.info)}
        for trial_id, n in own_exploits(exploits, policies).items():
            run = runs.get(trial_id)
            if run is not None and run.data.tags.get("pbt_exploits") != str(n):
                self.client.set_tag(run.info.run_id, "pbt_exploits", str(n))

    def set_tags(self, trial_id: str, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self._runs[trial_id], tags=[RunTag(k, short(v)) for k, v in tags.items()])

    def end(self, trial_id: str, params: dict[str, Any], outcome: Outcome, fs, path: str | None,
            policy: str | None = None) -> None:
        """The best generator as an MLflow model (from the trial's newest checkpoint that holds
        one) with its previews and plots, PBT's policy log of the trial (its text) if any, the
        outcome's tags, the run closed. A pruned trial's checkpoints are deleted once its model is
        in MLflow."""
        from mlflow.entities import RunStatus

        run_id = self._runs[trial_id]
        best = newest_best(fs, path) if fs is not None and path else None
        if best is not None and "best_model_uri" not in self.client.get_run(run_id).data.tags:
            import pyarrow.fs

            with scratch(BEST_PREFIX) as d:  # (a driver killed here leaves it to the next one, tuner.scratch)
                pyarrow.fs.copy_files(best, str(d), source_filesystem=fs,
                                      destination_filesystem=pyarrow.fs.LocalFileSystem())
                cfg = self.trainer_config(params)
                _, val = load_data(cfg.data)  # the driver renders previews and plots
                log_best_model(self.info.uri, run_id, d, val, cfg, outcome.name(trial_id), params)
        if policy:
            self.client.log_text(run_id, policy, f"pbt/{policy_name(trial_id)}")
        state = RunStatus.FAILED if outcome.status == FAILED else RunStatus.FINISHED
        # the runs table shows one state for completed and pruned trials: the name says which
        self.client.update_run(run_id, name=outcome.name(trial_id))
        self.client.set_terminated(run_id, RunStatus.to_string(state))
        # the outcome last: its tag is what says the run ended (project_trials), so a driver killed before it
        # leaves the run to the next pass, never a run RUNNING that says it ended
        self.set_tags(trial_id, outcome.tags)
        if outcome.status in (PRUNED, STOPPED) and best is not None:  # no trial will continue it
            for folder in checkpoint_dirs(fs, path):
                fs.delete_dir(folder)

    def trainer_config(self, params: dict[str, Any]) -> Config:
        cfg = config_from_dict(self.base, "search space")
        return apply_overrides(cfg, params, "sampled config") if params else cfg



def project_trials(projection: Projection, trials: list[TrialRecord],
                   say: Callable[[str], None] = lambda _: None, stopped: Mapping[str, int] | None = None) -> None:
    """Put what storage holds of ended trials into MLflow: runs, missing epochs and schedule
    changes, best models and outcomes (`stopped`: the trials the time budget stopped, by trial id, as the
    study's STOPPED_FILE holds them). Runs closed already keep their ending (the live projection
    or an earlier pass)."""
    # The outcome tag says a run ended (Projection.end writes it last), not MLflow's run state alone: a driver
    # killed before the tag leaves a run ended in state only. A run RUNNING though its tag says ended was opened
    # again (a resumed driver restarted a trial its killed predecessor had ended) or left so by a driver before
    # the tag was written last: it is ended again from storage.
    ended = {r.data.tags.get("trial_id") for r in child_runs(projection.client, projection.info)
             if r.data.tags.get("status") in ENDED and r.info.status != "RUNNING"}
    for t in trials:
        projection.open(t.trial_id, t.params, running=False)
        added = projection.log_epochs(t.trial_id, t.results)
        projection.log_schedule(t.trial_id, t.results)
        outcome = decide(t.results[-1], t.error, projection.max_epochs, t.trial_id in (stopped or {}))
        if t.trial_id not in ended:
            projection.end(t.trial_id, t.params, outcome, t.fs, t.path, t.policy)
        say(f"{t.trial_id}: {added} epoch(s) added, {outcome}")


class MlflowCallback(LoggerCallback):
    """Tune's callbacks, projected into MLflow live, in order, off Tune's event loop."""

    tries = 3  # of a write the store refuses: again after poll_s, then 2 * poll_s, ...

    def __init__(self, projection: Projection, window_s: float, poll_s: float = 2.0):
        self.projection = projection
        self.window_s = window_s
        self.poll_s = poll_s
        self._queue: queue.Queue | None = None
        self._places: dict[str, dict[str, str]] = {}
        self._configs: dict[str, dict[str, Any]] = {}  # per trial: the last config seen
        self._exploits_read = -1  # the size of PBT's log of the study when its exploits were last counted
        self.seconds = 0.0  # the queue's work: what the driver spends on MLflow, off the event loop

    def __getstate__(self) -> dict[str, Any]:
        # a thread does not pickle; a resumed driver counts the exploits again
        return {**self.__dict__, "_queue": None, "_places": {}, "_configs": {}, "_exploits_read": -1}

    def _submit(self, fn: Callable, *args) -> None:
        if self._queue is None:
            self._queue = queue.Queue()
            threading.Thread(target=self._work, args=(self._queue,), name="mlflow-projection", daemon=True).start()
        self._queue.put((fn, args))

    def _work(self, q: queue.Queue) -> None:
        uri = self.projection.info.uri
        while True:
            fn, args = q.get()
            t0 = time.perf_counter()
            refused = 0
            try:
                while True:
                    try:
                        fn(*args)
                        break
                    except Exception:  # noqa: BLE001 - bookkeeping never takes the study down
                        if server_answers(uri):
                            # The store answered and refused. A passing refusal (SQLite's "database is locked"
                            # under load, Optuna's study database beside the searcher's writes) is tried again:
                            # dropped, a trial's refused start left its run without params, epochs, node or
                            # outcome. Each write can be done twice (a killed driver's successor redoes them).
                            refused += 1
                            if refused < self.tries:
                                time.sleep(self.poll_s * refused)
                                continue
                            traceback.print_exc()  # refused every time: a real error
                            break
                        down = time.monotonic()
                        print(f"MLflow at {uri} unreachable: trials keep training, their logging waits in "
                              f"the driver until it is back", flush=True)
                        while not server_answers(uri):
                            time.sleep(self.poll_s)
                        print(f"MLflow back after {time.monotonic() - down:.0f} s: the driver delivers what "
                              f"waited", flush=True)
            finally:
                self.seconds += time.perf_counter() - t0
                q.task_done()

    def drain(self, window_s: float) -> bool:
        """Wait until the queue is empty, or the server stayed unreachable for window_s."""
        if self._queue is None:
            return True
        done = threading.Event()
        threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True).start()
        deadline = None
        while not done.wait(self.poll_s / 2):
            if server_answers(self.projection.info.uri):
                deadline = None
            elif deadline is None:
                deadline = time.monotonic() + window_s
            elif time.monotonic() > deadline:
                return False
        return True

    # ------------------------------------------------------------------ Tune's events

    def log_trial_start(self, trial) -> None:
        self._submit(self.projection.open, trial.trial_id, dict(trial.config))

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        row = {k: v for k, v in result.items()
               if k in ("epoch", "timestamp", WALL_TIME, REPEATS) or is_epoch_metric(k, v)}
        self._submit(self.projection.log_epochs, trial.trial_id, [row])
        # The config this epoch trained with (the trainable's): PBT sets the trial's next one before
        # callbacks see the result that made it exploit.
        config = dict(result.get("config") or trial.config)
        if self._configs.get(trial.trial_id) != config:  # its first epoch, or PBT changed it
            self._configs[trial.trial_id] = config
            self._submit(self.projection.log_schedule, trial.trial_id, [{**row, "config": config}])
        self._count_exploits(trial)
        place = {k: result[k] for k in PLACE_TAGS if result.get(k)}
        if place and self._places.get(trial.trial_id) != place:  # its first report, or it moved (a restart)
            self._places[trial.trial_id] = place
            self._submit(self.projection.set_tags, trial.trial_id, place)

    def _count_exploits(self, trial) -> None:
        """The trials' pbt_exploits as PBT's log of the study in the driver's folder stands (read again only once
        it grew: a stat a result): an exploit is on its trial's run by the trial's next report."""
        folder = getattr(trial, "local_experiment_path", None)
        if not folder:
            return
        try:
            size = Path(folder, PBT_GLOBAL).stat().st_size
        except OSError:  # no exploit yet
            return
        if size != self._exploits_read:
            self._exploits_read = size
            self._submit(self._tag_exploits, Path(folder))

    def _tag_exploits(self, folder: Path) -> None:
        """(On the queue's thread: the logs are read off Tune's event loop.)"""
        head, tail = policy_name("*").split("*")
        policies = {p.name[len(head):-len(tail)]: p.read_text() for p in folder.glob(policy_name("*"))}
        self.projection.tag_exploits((folder / PBT_GLOBAL).read_text(), policies)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        outcome = trial_outcome(trial, failed, self.projection.max_epochs)
        where = (trial.storage.storage_filesystem, trial.path) if trial.storage is not None else (None, None)
        self._submit(self.projection.end, trial.trial_id, dict(trial.config), outcome, *where,
                     _local_text(trial, policy_name(trial.trial_id)))

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        """A trial that raised is retried from its last checkpoint: say so on its run."""
        error = trial_error(trial)
        self._submit(self.projection.set_tags, trial.trial_id,
                     {"retries": failures(trial, error), "last_error": decide(None, error, 0).error})

    def on_experiment_end(self, trials: list, **info) -> None:
        exploits = _study_text(trials[0], PBT_GLOBAL) if trials else None
        if exploits:  # a trial's own policy log keeps only its final weights' lineage: this keeps every exploit
            policies = {t.trial_id: _study_text(t, policy_name(t.trial_id)) or "" for t in trials}
            self._submit(self.projection.log_exploits, exploits, policies)
        if not self.drain(self.window_s):
            print(f"MLflow at {self.projection.info.uri} unreachable for {self.window_s:.0f} s: what waits is "
                  "left to `python -m tuner.replay`", flush=True)
            return
        per_trial = self.seconds / max(1, len(trials))
        print(f"MLflow projection: {self.seconds:.1f} s on the driver, off Tune's event loop "
              f"({per_trial:.2f} s per trial); trials spent none", flush=True)
        Study(self.projection.client, self.projection.info).log_metrics({"mlflow_driver_s_per_trial": per_trial})


def _local_text(trial, name: str) -> str | None:
    """A file Ray writes on the driver beside the trial folders (PBT's logs), if there is one."""
    folder = getattr(trial, "local_experiment_path", None)
    path = Path(folder, name) if folder else None
    return path.read_text() if path is not None and path.is_file() else None


def _study_text(trial, name: str) -> str | None:
    """A file of the study beside the trial folders: the driver's, else the study's in storage (a resumed
    session that has not written PBT's logs again holds none)."""
    text = _local_text(trial, name)
    if text is None and getattr(trial, "storage", None) is not None:
        text = read_text(trial.storage.storage_filesystem, f"{trial.storage.experiment_fs_path.rstrip('/')}/{name}")
    return text or None
