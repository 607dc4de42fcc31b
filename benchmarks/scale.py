"""`python -m benchmarks.scale` (from the repository root): does segmenting at the training scale pay?

    python -m benchmarks.scale --checkpoint runs/drive_cpu/checkpoints/best.pt --drive ../shared/data/DRIVE \\
        [--stare ../shared/data/STARE] [--zooms 0.5,1,2,3] [--json OUT]

A DRIVE-trained generator on photographs of other resolutions: DRIVE's test images (labels and FOV masks
with them) resized by each zoom, standing in for cameras of other resolutions, and STARE's test images
(another camera, 35 degrees, its FOV 21 % wider in pixels). Each case is scored at its own resolution,
FOV-pooled, with the generator fed the images as they are (factor 1), at `--scale auto` (each FOV
resized to the training photographs' diameter) and at auto's factor x0.8 and x1.25 (is auto near the
best factor?). The zoomed images are interpolated DRIVE pixels: a real high-resolution camera resolves
more than they hold, so this measures the vessels' width in pixels, not the sharpness of a finer sensor.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vgan.config import DataConfig
from vgan.data import Split, load_split
from vgan.inputs import unit_float
from vgan.scale import AUTO, fov_diameter, predict_at_factors, resize, scaled_size
from vgan.trainer import generator_from_checkpoint, load_checkpoint, predict, split_metrics

AROUND_AUTO = (0.8, 1.25)


def zoomed(split: Split, zoom: float) -> Split:
    """The split as a camera `zoom` times DRIVE's resolution would see it: images bicubic (antialiased
    when shrinking), labels and masks resized as vgan.scale resizes and thresholded at one half."""
    if zoom == 1:
        return split
    size = scaled_size(split.size, zoom)
    images = F.interpolate(unit_float(split.images), size=size, mode="bicubic", align_corners=False, antialias=True)
    return Split(f"{split.name} x{zoom:g}", split.ids, images.clamp(0, 1), resize(split.labels, size) > 0.5,
                 resize(split.masks, size) > 0.5)


def score(generator, split: Split, factors: list[float], device: torch.device) -> dict[str, float]:
    t0 = time.perf_counter()
    probs = predict_at_factors(lambda x: predict(generator, x, device, batch_size=1), split.images, factors)
    seconds = (time.perf_counter() - t0) / len(split)
    m = split_metrics(probs.cpu(), split, exact=False)  # histogram metrics: equal to 1e-4, fast on 40M pixels
    return {"auc_roc": m["auc_roc"], "auc_pr": m["auc_pr"], "f1": m["f1"], "s_per_image": seconds}


def case(generator, name: str, split: Split, device: torch.device) -> list[dict]:
    diameters = [fov_diameter(m) for m in split.masks]
    auto = [AUTO.factor_for(d, max(split.size), generator.trained_fov, name) for d in diameters]
    exact = [generator.trained_fov / d for d in diameters]  # auto's factor without its 10 % tolerance
    rows = []
    for label, factors in [("as it is (1)", [1.0] * len(split)), ("auto", auto),
                           *((f"auto x{k:g}", [f * k for f in exact]) for k in AROUND_AUTO)]:
        row = {"case": name, "size": list(split.size), "fov_diameter": sum(diameters) / len(diameters),
               "scale": label, "factor": sum(factors) / len(factors), **score(generator, split, factors, device)}
        rows.append(row)
        print(f"{name:>14} {split.size[0]:>5}x{split.size[1]:<5} FOV {row['fov_diameter']:6.0f} px  {label:<13} "
              f"x{row['factor']:.3f}  AUC-ROC {row['auc_roc']:.4f}  AUC-PR {row['auc_pr']:.4f}  F1 {row['f1']:.4f}  "
              f"{row['s_per_image']:.2f} s/image", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a DRIVE-trained vgan checkpoint (best.pt)")
    p.add_argument("--drive", type=Path, required=True)
    p.add_argument("--stare", type=Path)
    p.add_argument("--zooms", default="0.5,1,2,3", help="DRIVE test images resized by these")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    state = load_checkpoint(args.checkpoint)
    generator, cfg = generator_from_checkpoint(state, args.checkpoint, device)
    if generator.trained_fov is None:
        p.error(f"{args.checkpoint}: the generator records no training FOV diameter (saved before vgan.scale)")
    print(f"{args.checkpoint}: trained on {cfg.data.dataset}, epoch {state['epoch']}, "
          f"training FOV {generator.trained_fov:.0f} px")
    drive = load_split(DataConfig(dataset="drive", root=str(args.drive), crop_size=None), "test")
    rows = [r for z in map(float, args.zooms.split(",")) for r in case(generator, f"DRIVE x{z:g}", zoomed(drive, z),
                                                                         device)]
    if args.stare:
        stare = load_split(DataConfig(dataset="stare", root=str(args.stare), crop_size=None), "test")
        rows += case(generator, "STARE", stare, device)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"checkpoint": str(args.checkpoint), "epoch": int(state["epoch"]), "trained_on": cfg.data.dataset,
                "trained_fov_diameter": generator.trained_fov, "torch": torch.__version__, "device": str(device)}
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
