"""`python -m tuner.export`: a registered generator as one ONNX file, for runtimes outside Python and PyTorch.

    python -m tuner.export --model models:/vgan-generator@champion [URI ...] --out champion.onnx
                           [--tracking-uri URI] [--opset N] [--quantize int8 --calibration PHOTOS ...]

What `python -m vgan.export` writes (its docstring: the graph, what it leaves to the caller, the check by ONNX
Runtime), from an MLflow model instead of a checkpoint: any model URI MLflow resolves, as `tuner.predict` takes
them. An alias is read once, and the file's metadata (`source`) names the version it named then. Several: one
graph of the mean of their maps.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Sequence

from vgan.cli import exit_program, nonempty, run_cli
from vgan.export import add_arguments, export_file, prepared

if TYPE_CHECKING:
    import torch


def mean_of(programs: Sequence[torch.nn.Module]) -> torch.nn.Module:
    """One module of several models' programs: the mean of their maps (one model: itself)."""
    import torch

    if len(programs) == 1:
        return programs[0]

    class MeanOf(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.members = torch.nn.ModuleList(programs)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return sum(m(x) for m in self.members) / len(self.members)

    return MeanOf()


def _main(argv: Sequence[str] | None) -> None:
    p = argparse.ArgumentParser(prog="python -m tuner.export", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--model", type=nonempty, required=True, nargs="+", metavar="URI",
                   help="MLflow model URI, e.g. models:/vgan-generator@champion; several: one graph of the mean of "
                        "their maps (an ensemble)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db here)")
    add_arguments(p)
    args = p.parse_args(argv)
    out, calibration = prepared(args)
    import torch

    from tuner.predict import load_segmenter, pinned
    from tuner.tracking import check_tracking_store, resolve_tracking_uri
    from vgan.report import weights_digest

    uri = resolve_tracking_uri(args.tracking_uri)
    if any(m.startswith(("models:", "runs:")) for m in args.model):  # a model folder on disk needs no store
        check_tracking_store(uri, read_only=True)
    programs, sources = [], []
    for given in args.model:
        model, version = pinned(uri, given)
        if version is not None:
            print(f"tuner.export: {given} is version {version}")
        programs.append(load_segmenter(uri, model, torch.device("cpu")))
        sources.append(model)
    # tuner.predict's digest of the same models (report.csv's `model` column); the mean's FOV buffers refuse
    # models trained at different scales (one graph resizes a photograph once for all of them)
    export_file(mean_of(programs), args, out, calibration, " ".join(sources), weights_digest(programs),
                "tuner.export", "--model")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, "tuner.export")


if __name__ == "__main__":
    exit_program(main())
