"""`python -m tuner.predict`: segment your own fundus photographs with a registered generator.

    python -m tuner.predict --model models:/vgan-generator@champion [URI ...] --input DIR_OR_FILES... --out DIR
                            [--recursive] [--continue]
                            [--tracking-uri URI] [--masks DIR] [--threshold T] [--scale auto|FACTOR]
                            [--tta MODE] [--device auto|cpu|cuda]

The same as `python -m vgan.predict` (shared code: what it writes, which images it takes, the
FOV, the scale, the mirrored views), for an MLflow model instead of a checkpoint: any model URI MLflow resolves
(`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `models:/m-...`, `runs:/RUN/PATH`). Several: each map
is the mean of their maps (`vgan.ensemble`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from tuner.tracking import check_tracking_store, resolve_tracking_uri, use_tracking_uri
from vgan.cli import check_threshold, run_cli, writable_folder
from vgan.ensemble import Member
from vgan.errors import ConfigError
from vgan.predict import add_arguments, earlier_of, finish, images_of, segment_images
from vgan.scale import ScaleSpec, recorded_fov


def load_segmenter(uri: str, model: str, device):
    """The registered model's exported program on `device`; an unknown URI is bad input."""
    from mlflow.exceptions import MlflowException

    from tuner.flavor import load_program

    with use_tracking_uri(uri):
        try:
            program = load_program(model)
        except (MlflowException, OSError) as e:
            reason = getattr(e, "message", str(e)).splitlines()[0]
            raise ConfigError(f"--model {model}: cannot load it from {uri} ({reason})") from None
    return program.to(device)


def _main(argv: Sequence[str] | None) -> None:
    from vgan.trainer import resolve_device

    p = argparse.ArgumentParser(prog="python -m tuner.predict", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--model", required=True, nargs="+", metavar="URI",
                   help="MLflow model URI, e.g. models:/vgan-generator@champion; several: each map the mean of "
                        "theirs (an ensemble)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db here)")
    add_arguments(p)
    args = p.parse_args(argv)
    check_threshold(args.threshold)
    scale = ScaleSpec.parse(args.scale)
    sources = images_of(args)
    uri = resolve_tracking_uri(args.tracking_uri)
    if any(m.startswith(("models:", "runs:")) for m in args.model):  # a model folder on disk needs no tracking store
        check_tracking_store(uri, read_only=True)
    writable_folder(Path(args.out), "--out")
    device = resolve_device(args.device, "--device")
    members = []
    for name in args.model:
        model = load_segmenter(uri, name, device)
        members.append(Member(model, recorded_fov(model), scale))
    summary = segment_images(members, sources, Path(args.out), args.threshold, Path(args.masks) if args.masks else None,
                             device, sys.stderr.isatty(), args.tta, f"Vessel maps by {', '.join(args.model)}",
                             earlier_of(args))
    finish(summary, Path(args.out), "tuner.predict")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, "tuner.predict")


if __name__ == "__main__":
    sys.exit(main())
