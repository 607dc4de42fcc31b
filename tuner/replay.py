"""`python -m tuner.replay`: put what Ray's results hold of a study into MLflow.

    python -m tuner.replay --space FILE --name NAME [--storage PATH|URI] [--tracking-uri URI] [--study-db URL]
                           [--set KEY=VALUE ...]

Every epoch a trial reports is in Ray's results (`result.json`), and its best generator in its
checkpoints (`best/`). After a tracking-server outage longer than the study's window, this
runs the study's MLflow projection (`tuner.projection`, the same code the driver runs live)
over every trial in storage: the study and trial runs, params, missing epochs, hyperparameter
schedules, best models, PBT's logs and outcomes. Idempotent: what MLflow has already is left as it is.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Sequence

from vgan.cli import exit_program, nonempty, run_cli

if TYPE_CHECKING:  # imported once the arguments are read (Ray, MLflow, torch): --help answers at once
    from tuner.projection import TrialRecord


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tuner.replay", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--space", type=nonempty, required=True, help="the study's search-space file")
    p.add_argument("--name", required=True, help="the study's name")
    p.add_argument("--storage", type=nonempty, default="ray_results",
                   help="the study's Ray storage (as given to tuner.run)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db here)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="as the study was run with (tuner.run --set): its trials' configs are logged from them")
    p.add_argument("--study-db", type=nonempty,
                   help="the study's Optuna database URL, as given to tuner.run (default: sqlite optuna.db in the "
                        "storage folder); its trials' runs are linked to it")
    return p


def trial_records(study_uri: str) -> list[TrialRecord]:
    """Every trial folder of the study in Ray's storage that reported at least one epoch."""
    import pyarrow.fs

    from tuner.projection import TrialRecord

    fs, root = pyarrow.fs.FileSystem.from_uri(study_uri)
    folders = sorted(i.path for i in fs.get_file_info(pyarrow.fs.FileSelector(root))
                     if i.type == pyarrow.fs.FileType.Directory)
    return [t for t in (TrialRecord.read(fs, path) for path in folders) if t is not None]


def _main(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    from tuner.projection import PBT_GLOBAL, project_trials
    from tuner.search import make_projection
    from tuner.space import check_same_recipe, load_space
    from tuner.storage import STOPPED_FILE, check_optuna_study, check_study_name, parse_storage, study_db_url
    from tuner.tracking import Study, check_tracking_store, resolve_tracking_uri
    from vgan.config import parse_sets, set_flags

    space = load_space(args.space, sets=parse_sets(args.sets), given=set_flags(args.sets))
    storage = parse_storage(args.storage)
    name = check_study_name(args.name)
    check_same_recipe(space, storage.kept_recipe(name, "--name"), name, "--space",
                      "give the space and the --set it began with (its trials' configs are logged from them)")
    # an object store holds no Optuna database: without --study-db there, runs are not linked to Optuna's trials
    url = study_db_url(storage, args.study_db) if args.study_db or storage.local is not None else None
    if url is not None and space.searcher is not None:
        check_optuna_study(url, name, storage, "--study-db")
    uri = resolve_tracking_uri(args.tracking_uri)
    check_tracking_store(uri)
    study = Study.start(uri, space.mlflow.experiment, name, {"storage": storage.uri}, resume=True)
    projection = make_projection(space, study.info, url)
    stopped = json.loads(storage.read_text(name, STOPPED_FILE) or "{}")  # the trials its time budget stopped
    trials = trial_records(storage.study(name))
    project_trials(projection, trials, print, stopped)
    exploits = storage.read_text(name, PBT_GLOBAL)
    if exploits:
        projection.log_exploits(exploits, {t.trial_id: t.policy or "" for t in trials})
    study.finish()


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, "tuner.replay")


if __name__ == "__main__":
    exit_program(main())
