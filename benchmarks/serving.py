"""`python -m benchmarks.serving` (from the repository root): how long one image takes to segment.

    python -m benchmarks.serving --model models:/vgan-generator@champion --tracking-uri sqlite:///mlflow.db \\
        --image ../shared/data/DRIVE/test/images/01_test.tif [--repeat 5] [--json OUT]
    python -m benchmarks.serving --checkpoint runs/drive_cpu/checkpoints/best.pt [MORE.pt ...] --image ...

A `--checkpoint` written by `vgan.train` is logged as the model first, in a temporary MLflow store;
several are logged as one ensemble model (the mean map of theirs, as `mlflow.ensemble_top` registers one).

`--score ROOT` also scores the model on that DRIVE-layout dataset's test split as the registry scores a
candidate (`tuner.registry.score_logged`: the logged model, each photograph at its training scale).

Median over --repeat calls, after one warm-up, of: the local pyfunc's predict; `mlflow models serve`
(started here on 127.0.0.1, stopped after) answering the image as (1, 3, H, W) floats and as
(H, W, 3) 0..255 integers in JSON, and as the image's file in base64 answered with each map's PNG in base64
(params output: png). The JSON's encoding and parsing is part of a served request's time.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from tests.support.loopback import invoke, model_server


def median_s(fn, repeat: int) -> float:
    """After one warm-up call."""
    import torch

    from benchmarks.train_speed import timed

    fn()
    return statistics.median(timed(fn, torch.device("cpu")) for _ in range(repeat))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="MLflow model URI (with --tracking-uri)")
    source.add_argument("--checkpoint", type=Path, nargs="+",
                        help="a vgan.train checkpoint, logged in a temporary store (several: as one ensemble model)")
    p.add_argument("--tracking-uri")
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", type=Path)
    p.add_argument("--score", type=Path, metavar="ROOT", help="also score it on this DRIVE dataset's test split")
    args = p.parse_args(argv)
    if args.model and not args.tracking_uri:
        p.error("--model needs --tracking-uri (the store it is registered in)")
    with tempfile.TemporaryDirectory() as d:
        model, uri = (args.model, args.tracking_uri) if args.model else log_checkpoints(args.checkpoint, Path(d))
        row = {"model": args.model or " ".join(map(str, args.checkpoint)),
               **bench(model, uri, args.image, args.repeat, Path(d))}
        if args.score:
            row["test"] = test_scores(model, uri, args.score)
    print(f"{row['image']} {row['size'][0]}x{row['size'][1]}, {row['members']} generator(s): local predict "
          f"{row['local_predict_s']:.3f} s "
          f"({row['local_predict_scale_1_s']:.3f} s with scale 1); served "
          f"{row['served_floats_s']:.3f} s as floats ({row['request_mb_floats']:.1f} MB of JSON), "
          f"{row['served_uint8_s']:.3f} s as 8-bit ({row['request_mb_uint8']:.1f} MB), answered with "
          f"{row['response_mb_array']:.1f} MB; the file in, a PNG out: {row['served_file_png_s']:.3f} s "
          f"({row['request_mb_file']:.2f} MB, answered with {row['response_mb_png']:.2f} MB)")
    if args.score:
        print(f"{args.score} test split: " + ", ".join(f"{k} {v:.4f}" for k, v in row["test"].items()))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")
    return 0


def log_checkpoints(paths: list[Path], folder: Path) -> tuple[str, str]:
    """vgan.train checkpoints' generators as one logged model (several: their ensemble) in a fresh store under
    `folder`: (model URI, store)."""
    import torch
    from mlflow.tracking import MlflowClient

    from tuner import flavor
    from tuner.tracking import artifact_location, use_tracking_uri
    from vgan.trainer import generator_from_checkpoint, load_checkpoint

    loaded = [generator_from_checkpoint(load_checkpoint(p), str(p), torch.device("cpu")) for p in paths]
    generators = [g for g, _ in loaded]
    config = loaded[0][1].to_dict() if len(paths) == 1 else \
        {"ensemble": [{"checkpoint": str(p), "config": c.to_dict()} for p, (_, c) in zip(paths, loaded, strict=True)]}
    uri = f"sqlite:///{folder}/mlflow.db"
    with use_tracking_uri(uri):
        client = MlflowClient(uri)
        # the store's artifacts beside it, not MLflow's default ./mlruns in the working directory
        run = client.create_run(client.create_experiment("benchmarks-serving", artifact_location(uri)))
        info = flavor.log_model(generators, paths[0].stem, run.info.run_id, config)
    return info.model_uri, uri


def test_scores(model: str, uri: str, root: Path) -> dict[str, float]:
    from tuner.registry import score_logged
    from tuner.tracking import use_tracking_uri
    from vgan.config import DataConfig
    from vgan.data import load_split

    test = load_split(DataConfig(dataset="drive", root=str(root), crop_size=None), "test")
    with use_tracking_uri(uri):
        metrics = score_logged(model, test).metrics
    return {k: metrics[k] for k in ("auc_roc", "auc_pr", "f1")}


def bench(model: str, uri: str, image_path: Path, repeat: int, folder: Path) -> dict:
    import mlflow.pyfunc

    from tuner.tracking import use_tracking_uri
    from vgan.images import read_image

    image = read_image(image_path)
    chw = (image.transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
    with use_tracking_uri(uri):
        local = mlflow.pyfunc.load_model(model)
        members = mlflow.models.get_model_info(model).metadata.get("ensemble_members", 1)
    row = {"image": image_path.name, "size": list(image.shape[:2]), "members": members, "repeat": repeat,
           "local_predict_s": median_s(lambda: local.predict(chw), repeat),
           # what the default scale "auto" costs over taking the image as it is (the FOV estimate)
           "local_predict_scale_1_s": median_s(lambda: local.predict(chw, params={"scale": "1"}), repeat)}
    floats, ints = {"inputs": chw.tolist()}, {"inputs": image.tolist()}
    row.update(request_mb_floats=len(json.dumps(floats)) / 1e6, request_mb_uint8=len(json.dumps(ints)) / 1e6)
    def as_file() -> dict:  # as a web client sends a photograph: its file, in base64
        return {"inputs": [base64.b64encode(image_path.read_bytes()).decode("ascii")], "params": {"output": "png"}}

    row["request_mb_file"] = len(json.dumps(as_file())) / 1e6
    with model_server(folder / "serve", model, uri) as url:
        # each call encodes the request as a Python client would
        row["served_floats_s"] = median_s(lambda: invoke(url, floats), repeat)
        row["served_uint8_s"] = median_s(lambda: invoke(url, ints), repeat)
        row["served_file_png_s"] = median_s(lambda: invoke(url, as_file()), repeat)
        row["response_mb_array"] = len(json.dumps(invoke(url, floats))) / 1e6
        row["response_mb_png"] = len(json.dumps(invoke(url, as_file()))) / 1e6
    return row


if __name__ == "__main__":
    sys.exit(main())
