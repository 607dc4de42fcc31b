"""`python -m benchmarks.serving` (from the repository root): how long one image takes to segment.

    python -m benchmarks.serving --model models:/vgan-generator@champion --tracking-uri sqlite:///mlflow.db \\
        --image ../shared/data/DRIVE/test/images/01_test.tif [--repeat 5] [--json OUT]
    python -m benchmarks.serving --checkpoint runs/drive_cpu/checkpoints/best.pt --image ...

A `--checkpoint` written by `vgan.train` is logged as the model first, in a temporary MLflow store.

Median over --repeat calls, after one warm-up, of: the local pyfunc's predict; `mlflow models serve`
(started here on 127.0.0.1, stopped after) answering the image as (1, 3, H, W) floats and as
(H, W, 3) 0..255 integers in JSON. The JSON's encoding and parsing is part of a served request's time.
"""

from __future__ import annotations

import argparse
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
    source.add_argument("--checkpoint", type=Path, help="a vgan.train checkpoint, logged in a temporary store")
    p.add_argument("--tracking-uri")
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.model and not args.tracking_uri:
        p.error("--model needs --tracking-uri (the store it is registered in)")
    with tempfile.TemporaryDirectory() as d:
        model, uri = (args.model, args.tracking_uri) if args.model else log_checkpoint(args.checkpoint, Path(d))
        row = {"model": args.model or str(args.checkpoint), **bench(model, uri, args.image, args.repeat, Path(d))}
    print(f"{row['image']} {row['size'][0]}x{row['size'][1]}: local predict {row['local_predict_s']:.3f} s "
          f"({row['local_predict_scale_1_s']:.3f} s with scale 1); served "
          f"{row['served_floats_s']:.3f} s as floats ({row['request_mb_floats']:.1f} MB of JSON), "
          f"{row['served_uint8_s']:.3f} s as 8-bit ({row['request_mb_uint8']:.1f} MB)")
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")
    return 0


def log_checkpoint(path: Path, folder: Path) -> tuple[str, str]:
    """A vgan.train checkpoint's generator as a logged model in a fresh store under `folder`: (model URI, store)."""
    import torch
    from mlflow.tracking import MlflowClient

    from tuner import flavor
    from tuner.tracking import artifact_location, use_tracking_uri
    from vgan.trainer import generator_from_checkpoint, load_checkpoint

    generator, cfg = generator_from_checkpoint(load_checkpoint(path), str(path), torch.device("cpu"))
    uri = f"sqlite:///{folder}/mlflow.db"
    with use_tracking_uri(uri):
        client = MlflowClient(uri)
        # the store's artifacts beside it, not MLflow's default ./mlruns in the working directory
        run = client.create_run(client.create_experiment("benchmarks-serving", artifact_location(uri)))
        info = flavor.log_model(generator, path.stem, run.info.run_id, cfg.to_dict())
    return info.model_uri, uri


def bench(model: str, uri: str, image_path: Path, repeat: int, folder: Path) -> dict:
    import mlflow.pyfunc

    from tuner.tracking import use_tracking_uri
    from vgan.predict import read_image

    image = read_image(image_path)
    chw = (image.transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
    with use_tracking_uri(uri):
        local = mlflow.pyfunc.load_model(model)
    row = {"image": image_path.name, "size": list(image.shape[:2]), "repeat": repeat,
           "local_predict_s": median_s(lambda: local.predict(chw), repeat),
           # what the default scale "auto" costs over taking the image as it is (the FOV estimate)
           "local_predict_scale_1_s": median_s(lambda: local.predict(chw, params={"scale": "1"}), repeat)}
    floats, ints = {"inputs": chw.tolist()}, {"inputs": image.tolist()}
    row.update(request_mb_floats=len(json.dumps(floats)) / 1e6, request_mb_uint8=len(json.dumps(ints)) / 1e6)
    with model_server(folder / "serve", model, uri) as url:
        # each call encodes the request as a Python client would
        row["served_floats_s"] = median_s(lambda: invoke(url, floats), repeat)
        row["served_uint8_s"] = median_s(lambda: invoke(url, ints), repeat)
    return row


if __name__ == "__main__":
    sys.exit(main())
