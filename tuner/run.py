"""`python -m tuner.run --space FILE`: a V-GAN hyperparameter search.

    python -m tuner.run --space search_spaces/smoke.yaml
    python -m tuner.run --space search_spaces/gp.yaml --data /data/DRIVE \\
        [--address HOST:PORT] [--tracking-uri URI] [--storage PATH] [--name NAME] [--num-samples N]
        [--time-budget 20m] [--set KEY=VALUE ...] [--resume]

The space's base config is the first trial; Optuna (TPE or random) proposes the next ones and
ASHA stops weak trials (or PBT evolves a population); every trial is a child run in MLflow,
projected by the driver from Ray's results; the best trial's generator (chosen on validation; with
`mlflow.ensemble_top`, perhaps the mean map of the best few: tuner.ensemble) is scored on the test
split and registered (alias `challenger`, and `champion` when it beats the current one). The
steps: preflight, run_study, reconcile, summarize, register.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import signal
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import yaml

from tuner.outcome import COMPLETED, FAILED, INTERRUPTED, PRUNED, STOPPED, Outcome, decide, result_outcome
from tuner.storage import (
    RECIPE_FILE,
    STOPPED_FILE,
    STUDY_DB_FILE,
    Storage,
    check_optuna_study,
    check_study_db,
    check_study_name,
    parse_storage,
    shown_url,
    study_db_url,
    study_name_from,
)
from vgan.cli import ReaderGone, exit_program, handler_kept, nonempty, run_cli, writable_folder
from vgan.errors import BadInputError, ConfigError, DataError, VganError

# Ray, MLflow and torch are imported where a step needs them, after the arguments are read: `--help`
# and a mistyped option answer at once instead of after seconds of imports.
if TYPE_CHECKING:
    from tuner.projection import TrialRecord
    from tuner.space import SearchSpace
    from tuner.tracking import Study
    from vgan.config import DataConfig
    from vgan.data import Split


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tuner.run", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--space", type=nonempty, required=True, help="search-space YAML (see search_spaces/)")
    p.add_argument("--data", type=nonempty, help="dataset root (overrides data.root of the space file)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="a key of the trials' config changed over the space file's (dotted, a YAML value: "
                        "train.epochs=100); repeat it for more; a resume and a replay are given the same")
    p.add_argument("--address", help="existing Ray cluster HOST:PORT (default: start a local one)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db here)")
    p.add_argument("--storage", type=nonempty, default="ray_results",
                   help="Ray trial storage: a folder (one node), file:///SHARED or s3://... (several nodes)")
    p.add_argument("--study-db", type=nonempty,
                   help="Optuna database URL (default: sqlite optuna.db in the storage folder)")
    p.add_argument("--name", help="study name: letters, digits, '.', '_', '-' (default: <space>-<time>); "
                                  "--resume needs it")
    p.add_argument("--num-samples", type=int, help="trials to run (overrides tune.num_samples)")
    p.add_argument("--time-budget", metavar="DURATION",
                   help="end the study gracefully after this long, e.g. 90s, 20m, 1.5h (overrides tune.time_budget_s)")
    p.add_argument("--resume", action="store_true", help="continue the study --name in --storage")
    p.add_argument("--no-register", action="store_true", help="skip the test-split evaluation and registry")
    p.add_argument("--verbose", action="store_true",
                   help="Ray's own console output (per-trial boxes, every checkpoint) instead of the live table")
    return p


@dataclass
class Plan:
    """A study checked and ready to run: what pre-flight decided."""

    args: argparse.Namespace
    space: SearchSpace
    name: str
    uri: str  # MLflow tracking URI
    storage: Storage
    storage_url: str  # the Optuna study's database
    restore: bool = False  # Ray resumes the study from its saved state (--resume of a study Ray saved)
    notes: tuple[str, ...] = ()  # what the photographs ask a user to know (data_notes)

    @property
    def log(self) -> Path:
        """The study's console output and Ray's status tables: beside its folder in local storage, in
        the working directory where the storage is an object store."""
        return (self.storage.local or Path.cwd()) / f"{self.name}.log"

    def _study_options(self) -> str:
        """The options that name this study's records, as a later command must give them (the Optuna database's
        password shown as ***)."""
        db = f" --study-db {shown_url(self.args.study_db)}" if self.args.study_db else ""
        sets = "".join(f" --set {shlex.quote(item)}" for item in self.args.sets)
        return (f"--space {self.args.space} --name {self.name} --storage {self.storage.uri} "
                f"--tracking-uri {self.uri}{db}{sets}")

    def resume_command(self, num_samples: int | None = None) -> str:
        """The command that goes on with this study where it stands, with this one's options (a time budget given
        again counts from the resume), `num_samples` in place of --num-samples where given."""
        a = self.args
        given = (("--data", a.data), ("--address", a.address), ("--num-samples", num_samples or a.num_samples),
                 ("--time-budget", a.time_budget))
        more = "".join(f" {flag} {value}" for flag, value in given if value is not None)
        more += "".join(f" {flag}" for flag, on in (("--no-register", a.no_register), ("--verbose", a.verbose)) if on)
        return f"python -m tuner.run {self._study_options()}{more} --resume"

    def replay_command(self) -> str:
        return f"python -m tuner.replay {self._study_options()}"


def trials_table(results, space: SearchSpace, run_ids: dict[str, str], stopped: Mapping[str, int] | None = None,
                 unfinished: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """One row per trial of Ray's ResultGrid, best score first; the outcome from tuner.outcome (`stopped`: the
    trials the time budget stopped, `unfinished`: those an interrupted study leaves to its resume, by trial id)."""
    rows = []
    for r in results:
        last = r.metrics or {}
        trial_id = result_trial_id(r)
        outcome = Outcome(INTERRUPTED, unfinished[trial_id]) if trial_id in (unfinished or {}) else \
            result_outcome(r, space.epochs, trial_id in (stopped or {}))
        compute = compute_seconds(r.metrics_dataframe)
        score = float(last.get(space.score, math.nan))
        rows.append({"trial": outcome.name(trial_id), "trial_id": trial_id, "status": outcome.status,
                     "outcome": str(outcome),
                     space.score: score if outcome.status != FAILED and math.isfinite(score) else math.nan,
                     "best_epoch": last.get("best_epoch"), "epochs": outcome.epoch, "compute_s": compute,
                     "time_s": float(last.get("time_total_s", 0.0)),
                     "mlflow_run_id": run_ids.get(trial_id), **{f"param:{k}": v for k, v in (r.config or {}).items()}})
    rows.sort(key=lambda row: (math.isnan(row[space.score]), -row[space.score]))
    return rows


def result_trial_id(result) -> str:
    return (result.metrics or {}).get("trial_id") or Path(result.path).name


def report_seconds(df, keys: Sequence[str], since: float | None = None) -> float:
    """The sum of a trial's reported `keys` (seconds), over its reports from `since` on (a Unix time, where given: a
    resumed study's session); 0 for a trial without reports."""
    if df is None or df.empty:
        return 0.0
    if since is not None and "timestamp" in df:
        df = df[df["timestamp"] >= math.floor(since)]  # Ray's report times are whole seconds
    return float(sum(df[k].fillna(0).sum() for k in keys if k in df))


def wall_seconds(df, since: float | None = None) -> float:
    """A trial's wall time as Ray counts it to each report (their sum is its time_total_s)."""
    return report_seconds(df, ("time_this_iter_s",), since)


def compute_seconds(df, since: float | None = None) -> float:
    """A trial's training and validation seconds."""
    return report_seconds(df, ("epoch_s", "val_s"), since)


def parse_duration(text: str, where: str) -> float:
    """Seconds from '90', '90s', '20m' or '1.5h'."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
    try:
        seconds = float(number) * unit
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(f"{where} {text}: give a positive duration such as 90s, 20m or 1.5h")
    return seconds


def end_optuna_trials(storage_url: str, name: str, trials: list[TrialRecord], space: SearchSpace,
                      unreported: dict[str, Outcome] | None = None, stopped: Mapping[str, int] | None = None,
                      unfinished: Mapping[str, int] | None = None) -> list[str]:
    """Optuna trials still RUNNING once the study has ended were never told: trials the time budget
    stopped (`stopped`, by Ray trial id: Ray ends them without telling the searcher) get their outcome, as do
    trials Tune ended before their first report (`unreported`, by Ray trial id); trials asked for by a driver
    killed before its state was saved are FAIL. Those an interrupted study leaves to its resume (`unfinished`)
    stay RUNNING: the resumed searcher tells them. Returns the orphans (trial numbers)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=storage_url)
    by_ray_id = {t.trial_id: t for t in trials}
    unreported, stopped = unreported or {}, stopped or {}
    orphans = []
    for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
        ray_id = t.user_attrs.get("ray_trial_id")
        if ray_id in (unfinished or {}):
            continue
        record = by_ray_id.get(ray_id)
        outcome = decide(record.results[-1], record.error, space.epochs, ray_id in stopped) if record else \
            unreported.get(ray_id, Outcome(STOPPED, stopped[ray_id]) if ray_id in stopped else None)
        if outcome is not None and outcome.status == STOPPED:
            study._storage.set_trial_user_attr(t._trial_id, "stopped", f"by the time budget at epoch {outcome.epoch}")
            # Its reports are evidence as a pruned trial's are. With none, TPE would rank it below every trial
            # (optuna's _get_pruned_trial_score) for a config never tried: FAIL, which samplers leave out
            study.tell(t.number, state=optuna.trial.TrialState.PRUNED if t.intermediate_values else
                       optuna.trial.TrialState.FAIL)
        elif outcome is None or outcome.status == FAILED:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            if ray_id not in unreported:
                orphans.append(f"optuna trial {t.number}")
        elif outcome.status == PRUNED:
            study.tell(t.number, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(t.number, record.results[-1][space.score])
    return orphans


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    # No bare trial_id column: MLflow's CSV viewer reads an id such as 86933e11 as the number 8.6933e15
    # (the `trial` column, the run's name, holds it)
    keys = [k for k in dict.fromkeys(k for row in rows for k in row) if k != "trial_id"]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def optuna_plots(storage_url: str, name: str, folder: Path) -> list[Path]:
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import optuna
    from optuna.visualization import matplotlib as ovm

    study = optuna.load_study(study_name=name, storage=storage_url)
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return []  # every plot draws complete trials only (Optuna would log a warning for each)
    out = []
    for fname, plot in (("optimization_history", ovm.plot_optimization_history),
                        ("param_importances", ovm.plot_param_importances),
                        ("parallel_coordinate", ovm.plot_parallel_coordinate)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = plot(study)
            fig = (ax[0] if hasattr(ax, "__len__") else ax).figure
            fig.set_size_inches(9, 5)
            fig.tight_layout()
            path = folder / f"{fname}.png"
            fig.savefig(path, dpi=90)
            matplotlib.pyplot.close(fig)
            out.append(path)
        except Exception as e:  # e.g. importance needs two finished trials
            print(f"(no {fname} plot: {e})")
    return out


def data_notes(data: DataConfig, train: Split, val: Split, test: tuple[list[str], dict[str, list[str]]] | None = None
               ) -> tuple[str, ...]:
    """What the study's photographs ask a user to know, said before it begins, as vgan.train says it: FOVs of
    several scales in the pool (unless the base config brings them to one: a search of that key holds the
    base's value, and with None there the first trial trains at mixed scales), people with several images
    (kept in one split), photographs converted as read (`test`: the test split's ids and conversions,
    `check_pool`'s, where it is to be scored: and its people that the training pool holds too), and FOVs
    estimated for want of masks (scores not by the literature's protocol)."""
    from vgan.data import (
        converted_note,
        converted_text,
        copies_note,
        dataset_root,
        fov_source,
        people_note,
        shared_people_note,
    )
    from vgan.scale import mixed_scale_note

    notes = [] if data.fov_diameter is not None else [mixed_scale_note(train.masks)]
    notes.append(people_note(data, train, val))
    if test is not None:
        notes.append(shared_people_note(sorted(train.ids + val.ids), test[0], data))
    notes.append(copies_note(data, ("training", "test") if test is not None else ("training",)))
    notes.append(converted_note(train, val))
    if test is not None:
        notes.append(converted_text(test[1], len(test[0]), what="test photographs"))
    scored = {"training": ("train", "the trials' validation scores"), "test": ("test", "the registered test scores")}
    estimated = [pool for pool, (split, _) in scored.items() if fov_source(data, split) == "estimated"]
    if estimated:
        notes.append(f"{' and '.join(str(dataset_root(data) / pool) for pool in estimated)} hold no masks/: each "
                     f"photograph's FOV is estimated from it, so {' and '.join(scored[p][1] for p in estimated)} are "
                     "not by the literature's protocol (pixels inside the dataset's own FOV masks)")
    return tuple(note for note in notes if note)


def check_searched_crop(space: SearchSpace, data: DataConfig, train: Split) -> None:
    """The largest data.crop_size the space draws fits the training images: each trial that drew one that does
    not would fail (the base's is checked as the data is read). Not where data.fov_diameter is searched too,
    which resizes them trial by trial."""
    from dataclasses import replace

    from vgan.data import check_crop

    keys = {p.key: p for p in space.params}
    crop = keys.get("data.crop_size")
    if crop is None or "data.fov_diameter" in keys:
        return
    largest = crop.largest()
    try:
        check_crop(replace(data, crop_size=largest), train)
    except DataError as e:
        raise DataError(f"{space.source}: search.data.crop_size draws {largest}: {e}") from None


def preflight(argv: Sequence[str] | None) -> Plan:
    """Everything checked before Ray starts: bad input exits 2 with one message, nothing started."""
    args = build_parser().parse_args(argv)
    from tuner.cluster import check_address, check_gpus
    from tuner.driver import check_not_running
    from tuner.space import check_same_recipe, load_space
    from tuner.tracking import check_tracking_store, resolve_tracking_uri
    from vgan.config import parse_sets, set_flags
    from vgan.data import check_pool, load_train_val

    space = load_space(args.space, args.data, parse_sets(args.sets), set_flags(args.sets))
    if args.num_samples is not None:
        if args.num_samples < 1:
            raise ConfigError("--num-samples must be at least 1")
        space.tune.num_samples = args.num_samples
    if args.time_budget is not None:
        space.tune.time_budget_s = parse_duration(args.time_budget, "--time-budget")
    data = space.trainer_config().data
    train, val = load_train_val(data)  # bad data stops here
    check_searched_crop(space, data, train)
    test = None
    if data.dataset != "synthetic" and not args.no_register:  # the champion is scored on them at the end
        try:  # each file decoded and checked, nothing kept or scored: a bad one would fail the study at its end
            test = check_pool(data, "test")
        except DataError as e:
            raise DataError(f"{e}; a study scores its best model on the test split to register it (and reads it only "
                            "then): put aside there annotated photographs that no trial trains on") from None
    notes = data_notes(data, train, val, test)
    uri = resolve_tracking_uri(args.tracking_uri)
    storage = parse_storage(args.storage)
    storage_url = study_db_url(storage, args.study_db)
    if args.resume and not args.name:
        raise ConfigError("--resume needs --name (the study to continue)")
    name = check_study_name(args.name) if args.name else study_name_from(args.space, time.strftime("%Y%m%d-%H%M%S"))
    if args.resume:
        check_same_recipe(space, storage.kept_recipe(name, "--resume"), name, "--resume",
                          "resume with the space and the --set it began with, or start a new study")
        check_not_running(storage.study(name), name)
    restore = args.resume and storage.begun(name)
    if restore and space.searcher is not None:  # Ray's state brings the searcher back, not the study's end
        check_optuna_study(storage_url, name, storage, "--resume")
    if not args.resume and storage.exists(name):
        raise ConfigError(f"--name: a study '{name}' exists in {storage.uri} already (use --resume to continue it)")
    check_tracking_store(uri)
    if args.address:
        check_address(args.address)
    else:
        import torch

        check_gpus(space, torch.cuda.device_count(), "this machine")
    # last, as they make the folders: outputs that cannot be written are refused before Ray starts
    if args.study_db:  # by default the database goes in the storage folder, checked next
        check_study_db(storage_url)
    # the Optuna database's too, by default; a plain folder on a cluster waits for check_cluster, which may refuse it
    if storage.local is not None and (storage.shared or not args.address):
        writable_folder(storage.local, "--storage")
    return Plan(args, space, name, uri, storage, storage_url, restore, notes)


def check_cluster(plan: Plan) -> None:
    """What can only be checked once Ray is up: the cluster's GPUs and shared trial storage."""
    import ray

    from tuner.cluster import alive_nodes, check_gpus, check_storage

    if plan.args.address:
        where = f"the cluster at {plan.args.address}"
        check_gpus(plan.space, ray.cluster_resources().get("GPU", 0), where)
        check_storage(plan.storage, alive_nodes(), where)
    if plan.storage.local is not None:
        writable_folder(plan.storage.local, "--storage")


def run_study(plan: Plan, study: Study) -> tuple[Any, dict[str, int]]:
    """Tune's fit: new, or the study's state restored (finished trials are not re-run, unfinished
    ones continue from their checkpoints, failed ones stay failed). Returns the ResultGrid, and the trials
    the fit's end stopped (tuner.search.StopWitness: {trial id: last epoch})."""
    from tuner.search import StopWitness, build_tuner, restore_tuner

    if plan.restore:  # the searcher, scheduler and the MLflow callback come back from the study's state
        from tuner.resume import describe, drop_saved_stopper, place_stand_ins, remove_stand_ins, saved_study

        fs, path = plan.storage.folder(plan.name)
        saved = saved_study(fs, path)
        stand_ins = place_stand_ins(fs, path, saved.trials)
        drop_saved_stopper(fs, path)  # the resume's time budget applies (restore_tuner)
        if stand_ins:
            print(f"study {plan.name}: Ray's last saved state names {len(stand_ins)} checkpoint(s) it deleted since; "
                  f"empty stand-ins take their place: {describe(stand_ins)}", flush=True)
        witness = StopWitness(saved.ended)
        tuner = restore_tuner(plan.space, plan.storage.study(plan.name), saved, witness)
        try:
            results = witness.own_results(tuner.fit())
            remove_unsaved_trials(plan, results)
            return results, witness.stopped
        finally:
            remove_stand_ins(fs, stand_ins)
    else:
        from tuner.space import trial_recipe

        if plan.args.resume:  # its recipe, checked in preflight, is kept
            print(f"study {plan.name}: its driver stopped before Ray saved any state of it; its trials start anew",
                  flush=True)
        else:
            plan.storage.write_text(plan.name, RECIPE_FILE,
                                    json.dumps(trial_recipe(plan.space), indent=1) + "\n")
            plan.storage.write_text(plan.name, STUDY_DB_FILE, shown_url(plan.storage_url) + "\n")
        witness = StopWitness()
        tuner = build_tuner(plan.space, study.info, plan.storage.uri, plan.name, plan.storage_url, plan.log,
                            witness, plan.args.verbose)
        results = witness.own_results(tuner.fit())
        if plan.args.resume:
            remove_unsaved_trials(plan, results)
    return results, witness.stopped


def remove_unsaved_trials(plan: Plan, results) -> None:
    """Once a resumed fit has returned: the folders of trials the dead driver began after its last saved state
    (tuner.resume.unsaved_trials: none of the fit's `results`, which hold every trial Ray restored) go, said in a
    line; their MLflow runs and Optuna trials are closed next (reconcile)."""
    from tuner.resume import remove_unsaved, unsaved_trials
    from tuner.storage import base_name

    fs, path = plan.storage.folder(plan.name)
    known = {base_name(r.path) for r in results if r.path}
    try:
        unsaved = unsaved_trials(fs, path, known)
        remove_unsaved(fs, unsaved)
    except OSError as e:  # the study's work is done and kept: this is disk only
        print(f"study {plan.name}: could not remove the folders of trials its dead driver had begun after Ray last "
              f"saved its state ({e}); a later --resume tries again", flush=True)
        return
    if unsaved:
        print(f"study {plan.name}: removed the folders of {len(unsaved)} trial(s) its dead driver had begun after Ray "
              f"last saved its state, which Ray did not resume (its searcher proposed anew): "
              f"{', '.join(u.trial_id for u in unsaved)}", flush=True)


def reconcile(plan: Plan, study: Study, results, stopped: Mapping[str, int],
              unfinished: Mapping[str, int] | None = None) -> None:
    """After fit, MLflow holds every trial Tune knows, as storage has it: the live projection's
    work, plus what a killed driver left undone, the outcome of the trials the time budget stopped
    (`stopped`: by trial id) among it. Runs and Optuna trials that no one will end (a
    killed driver's, not in Tune's state) are closed. Trials an interrupted study leaves to its resume
    (`unfinished`) are not ended: their runs are KILLED `interrupted`, their checkpoints and Optuna trials
    wait for them."""
    from tuner.projection import TrialRecord, project_trials
    from tuner.search import make_projection
    from tuner.tracking import server_answers

    if not server_answers(plan.uri):  # the projection has waited mlflow.outage_window_s for it already
        raise VganError(f"the study ran, but MLflow at {plan.uri} is unreachable: every trial's epochs and "
                        f"checkpoints are in {plan.storage.study(plan.name)}; once the server is back, run: "
                        f"{plan.replay_command()}")
    unfinished = unfinished or {}
    records = [t for t in (TrialRecord.read(r.filesystem, r.path) for r in results) if t is not None]
    projection = make_projection(plan.space, study.info, plan.storage_url)
    # (the live projection logged an interrupted trial's epochs; ending it would delete its checkpoints)
    project_trials(projection, [t for t in records if t.trial_id not in unfinished], stopped=stopped)
    # Tune's trials with no report in storage ended before their first epoch (a time budget stops them
    # without ending their runs or telling the searcher): their outcome, not "killed by an earlier driver"
    reported = {t.trial_id for t in records}
    unreported = {r.metrics["trial_id"]: r for r in results
                  if (r.metrics or {}).get("trial_id") not in (None, *reported, *unfinished)}
    outcomes = {trial_id: result_outcome(r, plan.space.epochs, trial_id in stopped)
                for trial_id, r in unreported.items()}
    runs = {r.data.tags.get("trial_id"): r.data.tags.get("status") for r in study.child_runs()}
    # runs left open, and those of stopped trials that had not started (no run yet): the study's trials all have one
    for trial_id in [i for i in unreported if runs.get(i) == "running" or (i in stopped and i not in runs)]:
        config = unreported[trial_id].config or {}
        projection.open(trial_id, config, running=False)
        projection.end(trial_id, config, outcomes[trial_id], None, None)
    orphans = study.close_orphans(waiting=unfinished)
    if plan.space.searcher is not None:
        orphans += end_optuna_trials(plan.storage_url, plan.name, records, plan.space, outcomes, stopped,
                                     unfinished)
    if orphans:
        print(f"closed {len(orphans)} trial run(s) left running by an earlier driver as KILLED: "
              f"{', '.join(orphans)}")


def _main(argv: Sequence[str] | None) -> None:
    plan = preflight(argv)
    from tuner.driver import driving

    with driving(plan.storage.study(plan.name), plan.name):  # a --resume beside it is refused
        _drive(plan)


def _drive(plan: Plan) -> None:
    from tuner.cluster import start_ray, stop_ray
    from tuner.console import Teed, quiet, tee

    if not plan.args.verbose:
        quiet()
    with handler_kept(signal.SIGTERM):  # run_cli's: SIGTERM stops the study as Ctrl-C does
        session = start_ray(plan.args.address, plan.args.verbose)
    crashed, interrupted, teed = True, False, Teed()
    try:
        check_cluster(plan)
        with tee(plan.log) as teed:
            interrupted = _run(plan)
        crashed = False
    except (BadInputError, KeyboardInterrupt):  # refused, with a message that says it all; or asked to stop
        crashed = False
        if not teed.reader_gone:
            raise
    finally:
        stop_ray(session, keep=crashed)
    if teed.reader_gone:  # stopped as Ctrl-C stops it, and said how to go on where no one reads
        raise ReaderGone(f"; the study was stopped as Ctrl-C stops it, and its log ({plan.log}) says how it goes on")
    if interrupted:  # ended in order, and said how to go on: exit as an interrupted command does (130)
        raise KeyboardInterrupt


def _run(plan: Plan) -> bool:
    """The study once Ray is up: start, run, reconcile, summarize, register. Returns whether it was
    interrupted (Ctrl-C: Ray ends the fit in order, its state saved with the trials it stopped still to run).
    Ctrl-C at any other step ends the study's run KILLED and raises KeyboardInterrupt."""
    from tuner.tracking import Study, source_tags

    source = source_tags("python -m tuner.run")
    study = Study.start(plan.uri, plan.space.mlflow.experiment, plan.name,
                        {"space_file": str(Path(plan.args.space).resolve()), "storage": plan.storage.uri, **source},
                        plan.args.resume)
    try:
        return _search(plan, study, source)
    except KeyboardInterrupt:
        study.finish("KILLED")
        raise


def _search(plan: Plan, study, source: dict[str, str]) -> bool:
    from tuner import flavor
    from tuner.cluster import alive_nodes, trials_held, trials_side_by_side
    from tuner.resume import unfinished_trials
    from tuner.tracking import ui_link
    from vgan.models import Generator

    space = plan.space
    code_note = study.resumed_by(source) if plan.args.resume else None
    # The one-off export of the generator's graph (every trial's model reuses it), while the first trials
    # start: their workers are processes of their own, whereas Ray's start and MLflow's schema creation
    # need this process's interpreter lock as much as the export does (7 s later to the first trial on 2 cores).
    flavor.warm(Generator(space.trainer_config().model))
    view = study.share_trials_view(space.score, space.metric, [p.key for p in space.params])
    browse = ui_link(plan.uri, view)
    nodes = alive_nodes()
    # what runs at once: the space's cap, as far as the nodes hold its trials (PBT has no cap: tune.space)
    cap, held = space.tune.max_concurrent_trials, trials_side_by_side(space, nodes)
    at_once = (f"{held} at once as the nodes hold them" if cap is None else f"{cap} at once" if cap <= held else
               f"{held} at once (tune.max_concurrent_trials says {cap}: the nodes hold {held} now)")
    print(f"study {plan.name}: {counted(space.tune.num_samples, 'trial')} of up to {counted(space.epochs, 'epoch')}, "
          f"{at_once}, on {len(nodes)} node(s), MLflow {plan.uri} (experiment '{space.mlflow.experiment}'), "
          f"storage {plan.storage.study(plan.name)}", flush=True)
    for note in ((code_note,) if code_note else ()) + plan.notes:
        print(f"note: {note}", flush=True)
    study.describe_data(plan.notes)
    # said now, for a driver that cannot say it at the end (SIGKILL, an out-of-memory kill, a lost head node)
    print(f"study {plan.name}: should its driver die before it ends, it goes on with: {plan.resume_command()}",
          flush=True)
    t0, began = time.perf_counter(), time.time()
    with handler_kept(signal.SIGINT):  # Tune keeps its own after a fit that ended on its own: a Ctrl-C after was lost
        try:
            results, ended_untold = run_study(plan, study)
        except KeyboardInterrupt:
            # a second Ctrl-C (or SIGTERM) while Tune stops in order: it skips Tune's last save and ends the fit
            # at once, as a killed driver's would end; its resume goes on from the last save all the same
            print(f"\nstudy {plan.name} stopped at once, before Ray had stopped its trials in order: they go on "
                  f"from their newest checkpoints, and the search from Ray's last save of it, with: "
                  f"{plan.resume_command()}", flush=True)
            raise
    wall = time.perf_counter() - t0
    # Both a spent time budget and Ctrl-C end trials untold; Ray saves an interrupted fit's state before it stops
    # them, so those are what the saved state leaves to a resume, and the budget's the others
    unfinished = unfinished_trials(*plan.storage.folder(plan.name))
    interrupted = (f"study {plan.name} interrupted: {len(unfinished)} trial(s) stopped mid-way keep their checkpoints "
                   f"and go on from them, and the search where it stood, with: {plan.resume_command()}; nothing is "
                   "registered until the study ends")
    try:
        stopped = stopped_trials(plan, {k: v for k, v in ended_untold.items() if k not in unfinished})
        reconcile(plan, study, results, stopped, unfinished)
        # an autoscaling cluster may hold more trials by the end than at the start
        width = min(cap or math.inf, max(held, trials_held(space)))
        ranked = summarize(plan, study, results, wall, width, began if plan.args.resume else None, stopped,
                           unfinished)
        if not unfinished and ranked and not plan.args.no_register:
            registering = f"register it (no trial runs again) with: {plan.resume_command(num_samples=len(results))}"
            try:
                register(plan, study, ranked)
            except Exception as e:  # the trials are done and kept: a resume registers their best
                with suppress(Exception):  # (a tracking store that is gone cannot be told)
                    study.finish("FAILED")
                if isinstance(e, BadInputError):  # e.g. a test photograph unreadable
                    raise VganError(f"study {plan.name} ran, but its best model was not registered: {e}; once that "
                                    f"is fixed, {registering}") from None
                # not the user's input (e.g. out of memory scoring the test split): its traceback says what
                print(f"study {plan.name} ran, but its best model was not registered (the error below); once that is "
                      f"fixed, {registering}", file=sys.stderr, flush=True)
                raise
    except KeyboardInterrupt:
        # the trials are in Ray's storage, ended or left to the resume; what comes after the fit is done again by
        # a resume, which runs no trial again where none is left and no more are asked for than have begun
        print("\n" + (interrupted if unfinished else
                      f"study {plan.name} interrupted after its trials ended, before its summary and registration "
                      f"were done; nothing is lost: finish them (no trial runs again) with: "
                      f"{plan.resume_command(num_samples=len(results))}"), flush=True)
        raise
    if unfinished:
        print(interrupted)
    study.finish("KILLED" if unfinished else "FINISHED")
    print(f"the trials in MLflow's UI: {browse}")
    return bool(unfinished)


def stopped_trials(plan: Plan, new: Mapping[str, int]) -> dict[str, int]:
    """{trial id: epoch} of every trial the study's time budget stopped, this session's (`new`) and earlier
    sessions' (its STOPPED_FILE, which `new` joins): what their outcomes are decided by, here and in
    tuner.replay. A trial that had reported its last epoch had completed: the budget ended it before Tune told of
    its end, and it is not kept."""
    kept = json.loads(plan.storage.read_text(plan.name, STOPPED_FILE) or "{}")
    new = {trial_id: epoch for trial_id, epoch in new.items() if epoch < plan.space.epochs}
    if new:
        kept.update(new)
        plan.storage.write_text(plan.name, STOPPED_FILE, json.dumps(kept, indent=1) + "\n")
    return kept


def summarize(plan: Plan, study: Study, results, wall: float, width: int, resumed: float | None = None,
              stopped: Mapping[str, int] | None = None, unfinished: Mapping[str, int] | None = None
              ) -> list[dict[str, Any]]:
    """The trial table, the study's figures and artifacts on the parent run; returns the rows of the trials
    with a score, best first (none: no trial produced a result). `width`: the trials it ran at once at most
    (the slots of its overhead and budget shares). `resumed`: when a resume began (Unix time):
    the overhead is that of its wall time, with the compute of the epochs reported since. `stopped`: the
    trials the time budget stopped (stopped_trials); `unfinished`: those an interrupted study leaves to its resume."""
    from tuner.console import fmt_value

    space, score = plan.space, plan.space.score
    children = study.child_runs()
    run_ids = {r.data.tags.get("trial_id"): r.info.run_id for r in children}
    rows = trials_table(results, space, run_ids, stopped, unfinished)
    pbt = space.tune.scheduler == "pbt"
    if pbt:  # how often PBT changed each trial's values (the projection's tag): its lineage is on its run
        exploits = {r.data.tags.get("trial_id"): int(r.data.tags.get("pbt_exploits", 0)) for r in children}
        for r in rows:
            r["pbt_exploits"] = exploits.get(r["trial_id"], 0)
    compute = sum(r["compute_s"] for r in rows)
    here = compute if resumed is None else sum(compute_seconds(r.metrics_dataframe, resumed) for r in results)
    slots = min(width, len(rows)) or 1
    overhead = max(0.0, 1 - here / (wall * slots))
    counts = {s: sum(r["status"] == s for r in rows) for s in (COMPLETED, PRUNED, STOPPED, INTERRUPTED, FAILED)}
    budget = space.tune.time_budget_s
    # each trial's share of the budget's slot-seconds: a resumed study's budget counts from the resume, so the
    # time its trials ran before it is not the budget's
    spent = {result_trial_id(r): wall_seconds(r.metrics_dataframe, resumed) for r in results} if budget else {}
    for r in rows:
        r["budget_share"] = spent[r["trial_id"]] / (budget * slots) if budget else math.nan
    by_budget = f"{counts[STOPPED]} stopped by the time budget, " if counts[STOPPED] else ""
    by_budget += f"{counts[INTERRUPTED]} interrupted, " if counts[INTERRUPTED] else ""
    by_pbt = f"{counted(sum(r['pbt_exploits'] for r in rows), 'PBT exploit')}; " if pbt else ""
    print(f"\n{counted(len(rows), 'trial')} in {wall:.1f} s: {counts[COMPLETED]} completed, {counts[PRUNED]} pruned, "
          f"{by_budget}{counts[FAILED]} failed; {by_pbt}trial compute {here:.1f} s over {counted(slots, 'slot')}"
          f"{'' if resumed is None else f' since the resume ({compute:.1f} s in all)'}, "
          f"overhead {100 * overhead:.1f} % of the wall time")
    if budget:
        spent = "spent: the study stopped the trials still running" if wall >= budget else "not reached"
        print(f"time budget {budget:.0f} s ({spent}); "
              f"each trial's share of its {budget * slots:.0f} slot-seconds is in trials.csv (budget_share)")
    print(f"top {min(5, len(rows))} by {score}:")
    for r in rows[:5]:
        params = ", ".join(f"{k[6:]}={fmt_value(v)}" for k, v in r.items() if k.startswith("param:"))
        used = f"  {100 * r['budget_share']:.0f} % of the budget" if budget else ""
        used += f"  {counted(r['pbt_exploits'], 'exploit')}" if pbt else ""
        print(f"  {r['trial_id']}  {r['outcome']:18s} {score} {r[score]:.4f}{used}  {params}")
    study.log_metrics({"wall_s": wall, "trial_compute_s": compute, "overhead_share": overhead,
                       **{f"trials_{k}": v for k, v in counts.items()}})
    best = next((r for r in rows if not math.isnan(r[score])), None)
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        write_csv(folder / "trials.csv", rows)
        study.log_artifact(folder / "trials.csv")
        for path in optuna_plots(plan.storage_url, plan.name, folder) if space.searcher is not None else []:
            study.log_artifact(path, "optuna")
        if best is not None:
            # an exploited PBT trial's values are its last: its weights trained on a schedule, which vgan.train has not
            schedule = (f"# PBT trained its weights on a schedule of values (the trial's MLflow run: metrics hp.*, "
                        f"pbt/pbt_policy_{best['trial_id']}.txt);\n# these are its last, and vgan.train trains with "
                        f"them from the first epoch\n") if best.get("pbt_exploits") else ""
            (folder / "best_config.yaml").write_text(
                f"# Best trial {best['trial_id']} of study {plan.name}: {score} {best[score]:.4f}\n{schedule}"
                f"# python -m vgan.train --config best_config.yaml\n"
                + yaml.safe_dump(space.trainer_config(sampled(best)).to_dict(), sort_keys=False))
            study.log_artifact(folder / "best_config.yaml")
    if best is None:
        if budget and wall >= budget:
            print(f"no trial reported an epoch within the time budget ({budget:.0f} s): nothing to register; "
                  "give the study more time (--time-budget, tune.time_budget_s)")
        else:
            print("no trial produced a result: nothing to register")
        return []
    study.set_tags({"best_trial_id": best["trial_id"], score: f"{best[score]:.6f}"})
    return [r for r in rows if not math.isnan(r[score])]


def counted(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def sampled(row: dict[str, Any]) -> dict[str, Any]:
    return {k[6:]: v for k, v in row.items() if k.startswith("param:")}


def register(plan: Plan, study: Study, ranked: list[dict[str, Any]]) -> None:
    """The best trial's logged generator (with `mlflow.ensemble_top` > 1: the mean map of the best few, if
    validation says so), scored on the test split, becomes a registered version."""
    from tuner.ensemble import MEMBERS_TAG
    from tuner.registry import DECISION, Gate, estimated_note, register_candidate, registered_version
    from tuner.tracking import load_run_json
    from vgan.metrics import CLDICE, SELECTABLE

    space, best = plan.space, ranked[0]
    if best.get(space.score, 1.0) <= 0 and space.metric in ("f1", "sensitivity", CLDICE):
        # 0 until a generator marks vessels at train.threshold (docs/search.md: a study may tie its trials at 0)
        print(f"best trial {best['trial_id']} scored {space.score} 0: no trial's generator found the validation "
              f"vessels at train.threshold, and no such model is registered; train longer (more epochs) or select "
              f"on auc_roc")
        return
    run = study.client.get_run(best["mlflow_run_id"])
    model_uri = run.data.tags.get("best_model_uri")
    if model_uri is None:
        print(f"best trial {best['trial_id']} logged no model: nothing to register")
        return
    candidate, what, val = f"best trial {best['trial_id']}", None, None
    # what trained it, on the version's page (an ensemble's members may have trained on several)
    tags = {"environment": run.data.tags["environment"]} if "environment" in run.data.tags else None
    run_id, cfg = run.info.run_id, space.trainer_config(sampled(best))
    ensemble = choose_ensemble(study, ranked, space) if space.mlflow.ensemble_top > 1 else None
    if ensemble is not None:
        run_id, model_uri, sel = ensemble
        candidate = f"the ensemble of the best {sel.k} trials ({sel.member_ids})"
        what = f"Mean map of the {sel.k} best trials of study {plan.name} ({sel.member_ids})"
        cfg, tags, val = sel.members[0].cfg, {MEMBERS_TAG: sel.member_ids}, sel.scores[sel.k - 1]
    name = space.mlflow.registered_model
    made = registered_version(study.client, name, model_uri)
    if made is not None and DECISION in made.tags:
        print(f"{candidate} is registered already as {name} version {made.version}")
        promoted = made.tags[DECISION].startswith("promoted")  # (by the gate, or by hand since)
        study.set_tags({"registered_version": made.version, "promoted": str(promoted)})
        return
    if val is None:
        best_epoch = load_run_json(study.client, run.info.run_id, "best/metrics.json")
        val = {m: best_epoch[f"val_{m}"] for m in SELECTABLE if f"val_{m}" in best_epoch}  # clDice if selected on
        val["epoch"] = best_epoch["epoch"]
    gate = Gate(space.mlflow.promote_margin, space.mlflow.promote_confidence, metric=cfg.train.select_metric)
    unfinished = None if made is None else str(made.version)
    if unfinished is not None:
        print(f"{candidate}: {name} version {unfinished} was made from it by a driver that stopped before it was "
              "compared with the champion: its registration ends now", flush=True)
    reg = register_candidate(study.info.uri, name, model_uri, run_id, cfg, val, gate, plan.name, what, tags,
                             unfinished)
    study.set_tags({"registered_version": reg.version, "promoted": str(reg.promoted)})
    aliases = "challenger, champion" if reg.promoted else "challenger"
    over = " (95 % intervals over the test images)" if reg.test_intervals else ""
    print(f"registered {reg.name} version {reg.version} ({aliases}) from {candidate}: test AUC-ROC "
          f"{reg.test_figure('auc_roc')}, AUC-PR {reg.test_figure('auc_pr')}, F1 {reg.test_figure('f1')}"
          f", clDice {reg.test_figure(CLDICE)}{over}"
          f"{estimated_note(reg.test_fov)}; {reg.reason}")
    if "champion_test_evaluation" in reg.evidence:
        print(f"the gate's evaluations, for python -m vgan.compare once fetched (mlflow artifacts download -u URI): "
              f"{reg.evidence['champion_test_evaluation']} {reg.evidence['test_evaluation']}")
    print(f"load it with mlflow.pytorch.load_model('models:/{reg.name}@champion'), segment a folder with "
          f"python -m tuner.predict --model models:/{reg.name}@champion --input DIR --out DIR, or export it for "
          f"runtimes outside Python with python -m tuner.export --model models:/{reg.name}@champion --out FILE.onnx")


def choose_ensemble(study: Study, ranked: list[dict[str, Any]], space: SearchSpace):
    """`tuner.ensemble`'s choice on validation: (run id, model URI, selection) of the logged ensemble, or None
    where the best trial alone scored highest (or it alone has a model)."""
    from tuner.ensemble import describe, log_ensemble, select, top_trials

    trials, skipped = top_trials(study.client, ranked, space, space.mlflow.ensemble_top)
    if len(trials) < 2:
        print(f"ensemble: {len(trials)} trial(s) with a logged model: the candidate is the best trial alone")
        return None
    sel = select(study.info.uri, trials, space.metric, skipped)
    print("\n".join(describe(sel, space.metric)))
    if sel.k == 1:
        return None
    run_id, model_uri = log_ensemble(study, sel)
    return run_id, model_uri, sel


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, "tuner.run")


if __name__ == "__main__":
    exit_program(main())
