"""`python -m tuner.predict`: segment your own fundus photographs with a registered generator.

    python -m tuner.predict --model models:/vgan-generator@champion [URI ...] --input DIR_OR_FILES... --out DIR
                            [--recursive] [--continue]
                            [--tracking-uri URI] [--log [EXPERIMENT]] [--masks DIR] [--threshold T]
                            [--scale auto|FACTOR] [--tta MODE] [--device auto|cpu|cuda]

The same as `python -m vgan.predict` (shared code: what it writes, which images it takes, the
FOV, the scale, the mirrored views), for an MLflow model instead of a checkpoint: any model URI MLflow resolves
(`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `models:/m-...`, `runs:/RUN/PATH`). Several: each map
is the mean of their maps (`vgan.ensemble`). An alias is read once, at the start: the whole batch is made by the
version it named then, and the report says which. `--log` records the batch in MLflow (`tuner.batches`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from tuner.batches import EXPERIMENT
from vgan.cli import check_threshold, exit_program, nonempty, run_cli, writable_folder
from vgan.ensemble import Member
from vgan.errors import ConfigError
from vgan.predict import add_arguments, check_masks, earlier_of, finish, images_of, segment_images
from vgan.report import weights_digest
from vgan.scale import ScaleSpec, recorded_fov, smallest_side


def registered_name(model: str) -> str | None:
    """The registered model a `models:/NAME/VERSION`, `models:/NAME@ALIAS` or `models:/NAME/latest` URI names."""
    if not model.startswith("models:/"):
        return None
    rest = model[len("models:/"):]
    return rest.rsplit("@", 1)[0] if "@" in rest else rest.rsplit("/", 1)[0] if "/" in rest else rest


def pinned(uri: str, model: str) -> tuple[str, str | None]:
    """(the URI to load, the registry version it is): `models:/NAME@ALIAS` becomes the version the alias names
    now, so a batch of hours is made by one version even if a study promotes a new champion meanwhile, and its
    report says which version that was (an alias alone names a different model next month). Other URIs, and an
    alias that names nothing (`load_segmenter` says so), are kept as given."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    name = registered_name(model)
    if name is None or "@" not in model:
        return model, None
    alias = model.rsplit("@", 1)[1]
    try:
        version = str(MlflowClient(uri, uri).get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return model, None
    return f"models:/{name}/{version}", version


def load_segmenter(uri: str, model: str, device):
    """The registered model's exported program on `device`; an unknown URI is bad input."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from tuner.flavor import load_program
    from tuner.registry import registry_hint
    from tuner.tracking import use_tracking_uri

    with use_tracking_uri(uri):
        try:
            program = load_program(model)
        except (MlflowException, OSError) as e:
            reason = getattr(e, "message", str(e)).splitlines()[0]
            name = registered_name(model)
            hint = registry_hint(MlflowClient(uri, uri), name) if name else ""
            raise ConfigError(f"--model {model}: cannot load it from {uri} ({reason})"
                              + (f"; {hint}" if hint else "")) from None
    return program.to(device)


def _main(argv: Sequence[str] | None) -> None:
    from vgan.trainer import resolve_device

    p = argparse.ArgumentParser(prog="python -m tuner.predict", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--model", type=nonempty, required=True, nargs="+", metavar="URI",
                   help="MLflow model URI, e.g. models:/vgan-generator@champion; several: each map the mean of "
                        "theirs (an ensemble)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db here)")
    p.add_argument("--log", nargs="?", const=EXPERIMENT, metavar="EXPERIMENT",
                   help=f"record the batch in MLflow, a run in EXPERIMENT (default {EXPERIMENT}): the model "
                        "versions, the arguments, the counts, report.csv and index.html")
    add_arguments(p)
    args = p.parse_args(argv)
    check_threshold(args.threshold)
    scale = ScaleSpec.parse(args.scale)
    sources = images_of(args)
    # MLflow's import (2 s of --help's 3.6 here) once the arguments stand: --help and a refused one answer without it
    from tuner.batches import BatchRun
    from tuner.tracking import check_tracking_store, resolve_tracking_uri, ui_link

    uri = resolve_tracking_uri(args.tracking_uri)
    if any(m.startswith(("models:", "runs:")) for m in args.model):  # a model folder on disk needs no store
        check_tracking_store(uri, read_only=True)
    if args.log is not None:
        check_tracking_store(uri)
    writable_folder(Path(args.out), "--out")
    device = resolve_device(args.device, "--device")
    members, names, versions = [], [], []
    for given in args.model:
        model, version = pinned(uri, given)
        if version is not None:
            print(f"tuner.predict: {given} is version {version}: it makes every map of this batch")
            versions.append(model.removeprefix("models:/"))
        segmenter = load_segmenter(uri, model, device)
        members.append(Member(segmenter, recorded_fov(segmenter), scale, smallest_side(segmenter)))
        names.append(given if version is None else f"{given} (version {version})")
    out, masks = Path(args.out), Path(args.masks) if args.masks else None
    check_masks(masks)  # before a run is recorded: bad input starts nothing
    run = None
    if args.log is not None:
        params = {k.rstrip("_"): " ".join(v) if isinstance(v, list) else v for k, v in vars(args).items()
                  if k != "log"}
        run = BatchRun.start(uri, args.log, out, versions, weights_digest([m.model for m in members]),
                             {**params, "model": ", ".join(names), "tracking_uri": uri})
        for run_id in run.abandoned:
            print(f"tuner.predict: run {run_id} of an earlier batch into {out} was left running by a process that is "
                  "gone (killed outright?): ended KILLED with the rows of its report")
    try:
        summary = segment_images(members, sources, out, args.threshold, masks, device, sys.stderr.isatty(),
                                 args.tta, f"Vessel maps by {', '.join(names)}", earlier_of(args))
    except BaseException as e:
        if run is not None:  # the rows so far are in report.csv
            run.end(out, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    if run is not None:
        run.end(out, "FINISHED", summary)
        print(f"tuner.predict: recorded in MLflow ({uri}), experiment {run.experiment}, run {run.run_id}; "
              f"the batches: {ui_link(uri, run.view)}")
    finish(summary, out, "tuner.predict")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, "tuner.predict")


if __name__ == "__main__":
    exit_program(main())
