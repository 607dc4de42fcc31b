"""`python -m benchmarks.serving` (from the repository root): how long one image takes to segment.

    python -m benchmarks.serving --model models:/vgan-generator@champion --tracking-uri sqlite:///mlflow.db \\
        --image ../shared/data/DRIVE/test/images/01_test.tif [--repeat 5] [--json OUT]

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
    p.add_argument("--model", required=True)
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    import mlflow.pyfunc

    from tuner.tracking import use_tracking_uri
    from vgan.predict import read_image

    image = read_image(args.image)
    chw = (image.transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
    with use_tracking_uri(args.tracking_uri):
        local = mlflow.pyfunc.load_model(args.model)
    row = {"image": args.image.name, "size": list(image.shape[:2]), "repeat": args.repeat,
           "local_predict_s": median_s(lambda: local.predict(chw), args.repeat)}
    floats, ints = {"inputs": chw.tolist()}, {"inputs": image.tolist()}
    row.update(request_mb_floats=len(json.dumps(floats)) / 1e6, request_mb_uint8=len(json.dumps(ints)) / 1e6)
    with tempfile.TemporaryDirectory() as d, model_server(Path(d), args.model, args.tracking_uri) as url:
        # each call encodes the request as a Python client would
        row["served_floats_s"] = median_s(lambda: invoke(url, floats), args.repeat)
        row["served_uint8_s"] = median_s(lambda: invoke(url, ints), args.repeat)
    print(f"{row['image']} {row['size'][0]}x{row['size'][1]}: local predict {row['local_predict_s']:.3f} s; served "
          f"{row['served_floats_s']:.3f} s as floats ({row['request_mb_floats']:.1f} MB of JSON), "
          f"{row['served_uint8_s']:.3f} s as 8-bit ({row['request_mb_uint8']:.1f} MB)")
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
