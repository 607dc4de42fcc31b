"""`python -m benchmarks.onnx_runtime` (from the repository root): does the ONNX file (`vgan.export`) segment as
PyTorch does, and how fast, on the same CPU?

    python -m benchmarks.onnx_runtime --checkpoint CKPT [CKPT ...] --drive ../shared/data/DRIVE
                                      [--stare ../shared/data/STARE] [--int8 PHOTOS ...]
                                      [--json benchmarks/results/onnx-runtime-cpu2.json]

Each checkpoint is exported as `vgan.export` does it (checked by ONNX Runtime first), and the checkpoint's
PyTorch generator and the file's ONNX Runtime session segment DRIVE's test photographs (and STARE's) one at a
time, each at its own size (`--scale 1`, as `vgan.evaluate` does): the metrics pooled over the FOV pixels, F1 at
0.5, the largest difference of any probability, and the median seconds per photograph of the network alone (the
first photograph of each is not counted: it warms its kernels up). All run on torch's thread count, taking turns
on each photograph. `--int8 PHOTOS`: the file quantized to 8 bits (`vgan.export --quantize int8`) on those
calibration photographs (DRIVE's training images, say: never the split scored) is a third runtime.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.tta import KEYS, add_arguments, label, scored_splits, write_rows
from vgan.ensemble import segmenter_of
from vgan.evaluate import score_maps
from vgan.export import OnnxSegmenter, calibration_batches, write_onnx
from vgan.images import find_images
from vgan.scale import ScaleSpec, scaled_predictions
from vgan.trainer import generator_from_checkpoint, load_checkpoint

INT8 = "onnxruntime-int8"


def segment_both(runtimes: dict, split) -> tuple[dict[str, list[np.ndarray]], dict[str, float]]:
    """Each runtime's maps of the split's photographs, one at a time at their own size, and its median seconds of a
    call after its first. The runtimes take turns on each photograph, each first in turn, so that the machine's
    drift weighs on all alike (run one after the other, one generator's PyTorch seconds came out 0.20 and another's
    of the same shape 0.31, twice)."""
    names = list(runtimes)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    outputs: dict[str, list[np.ndarray]] = {n: [] for n in names}

    def each(x: torch.Tensor) -> torch.Tensor:
        k = len(seconds[names[0]]) % len(names)
        for n in names[k:] + names[:k]:
            t0 = time.perf_counter()
            y = runtimes[n](x)
            seconds[n].append(time.perf_counter() - t0)
            outputs[n].append(y.numpy()[0, 0])
        return y

    with torch.inference_mode():
        scaled_predictions(each, None, split, 1, ScaleSpec(1.0))
    order = [i for _, idx in split.size_groups() for i in idx]  # the order scaled_predictions gives them
    maps = {n: [outputs[n][order.index(i)] for i in range(len(split))] for n in names}
    return maps, {n: float(np.median(seconds[n][1:] or seconds[n])) for n in names}


def compare(checkpoint: Path, splits: dict, folder: Path, calibration: list | None = None) -> list[dict]:
    state = load_checkpoint(checkpoint)
    generator, _ = generator_from_checkpoint(state, str(checkpoint), torch.device("cpu"))
    module = segmenter_of([generator])
    exported = {"onnxruntime": write_onnx(module, folder / f"{label(checkpoint)}.onnx", {}, 2**generator.depth)}
    if calibration:
        batches = calibration_batches(calibration, generator.trained_fov)
        exported[INT8] = write_onnx(module, folder / f"{label(checkpoint)}-int8.onnx", {}, 2**generator.depth,
                                    calibration=batches)
    runtimes = {"pytorch": module, **{rt: OnnxSegmenter(e.path) for rt, e in exported.items()}}
    rows = []
    for dataset, split in splits.items():
        maps, times = segment_both(runtimes, split)
        for runtime in runtimes:
            seconds = times[runtime]
            m = score_maps(maps[runtime], split, 0.5)[0]
            worst = max(float(np.abs(a - b).max()) for a, b in zip(maps[runtime], maps["pytorch"], strict=True))
            rows.append({"checkpoint": str(checkpoint), "dataset": dataset, "runtime": runtime,
                         **{k: round(m[k], 4) for k in KEYS}, "max_difference": worst,
                         "s_per_image": round(seconds, 3),
                         **({"onnx_bytes": exported[runtime].bytes, "opset": exported[runtime].opset}
                            if runtime in exported else {})})
            print(f"{label(checkpoint):>12} {dataset:>5} {runtime:>16}  " + "  ".join(f"{k} {m[k]:.4f}" for k in KEYS)
                  + f"  max |difference| {worst:.1g}  {seconds:.3f} s/image", flush=True)
    return rows


def summary(rows: list[dict]) -> list[str]:
    """Per dataset and ONNX runtime, against PyTorch on the same photographs: the largest difference of any
    probability, of any pooled score, and the seconds of each."""
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        for runtime in dict.fromkeys(r["runtime"] for r in mine if r["runtime"] != "pytorch"):
            pairs = [(a, b) for a in mine for b in mine if a["checkpoint"] == b["checkpoint"]
                     and (a["runtime"], b["runtime"]) == ("pytorch", runtime)]
            s = {rt: np.median([r["s_per_image"] for r in mine if r["runtime"] == rt]) for rt in ("pytorch", runtime)}
            speedup = [a["s_per_image"] / b["s_per_image"] for a, b in pairs]  # each generator's, on one machine
            lines.append(f"{dataset:>5} {runtime} ({len(pairs)} checkpoint(s)): probabilities differ by up to "
                         f"{max(b['max_difference'] for _, b in pairs):.1g}, pooled scores by up to "
                         f"{max(abs(a[k] - b[k]) for a, b in pairs for k in KEYS):.4f}; "
                         f"{s['pytorch']:.3f} s/image PyTorch, {s[runtime]:.3f} {runtime} "
                         f"(x{min(speedup):.2f}" + (f"-{max(speedup):.2f}" if f"{min(speedup):.2f}" !=
                                                     f"{max(speedup):.2f}" else "") + ")")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.onnx_runtime", description=__doc__.split("\n\n")[0])
    add_arguments(p, None)
    p.add_argument("--int8", nargs="+", metavar="PHOTOS",
                   help="also the file quantized to 8 bits, calibrated on these photographs (not the split scored)")
    args = p.parse_args(argv)
    if args.device != "cpu":
        p.error("--device: ONNX Runtime's CPU session is compared with PyTorch on the CPU")
    splits = scored_splits(args.drive, args.stare)
    with tempfile.TemporaryDirectory() as folder:
        calibration = find_images(args.int8) if args.int8 else None
        rows = [r for ckpt in args.checkpoint for r in compare(ckpt, splits, Path(folder), calibration)]
    lines = summary(rows)
    print("\n".join(lines))
    if args.json:
        write_rows(args.json, torch.device("cpu"), rows, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
