"""`python -m benchmarks.formats` (from the repository root): does a generator segment photographs as archives
hold them: red-free (grey), saved as grey, saved as JPEG?

    python -m benchmarks.formats --checkpoint CKPT [CKPT ...] --drive ../shared/data/DRIVE
                                 [--stare ../shared/data/STARE] [--views colour,green,...] [--device cpu]
                                 [--json benchmarks/results/formats-cpu2.json]

Fundus cameras take red-free photographs too (through a green filter: the vessels' best contrast), DICOM
exports and older archives hold them as grey images, and clinics keep most photographs as JPEG. Each
checkpoint's generator segments DRIVE's test photographs (and STARE's) as they are (`colour`), as their green
channel alone (`green`, a red-free photograph's likeness), as their luminance (`luminance`, ITU-R 601: what
saving a colour photograph as grey gives), each grey repeated to three channels as `vgan.predict` reads a grey
file, and as saved as JPEG at quality Q and read back (`jpegQ`, PIL's encoder, 4:2:0 chroma as most cameras
and libraries save), at its own size (`--scale 1`), the metrics pooled over the FOV pixels of the split, F1 at
0.5. `vessels` is the share of FOV pixels the map calls vessel at 0.5 (the labels': `labelled`).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.tta import add_arguments, label, scored_splits, write_rows
from vgan.data import Split
from vgan.evaluate import score_maps
from vgan.scale import ScaleSpec, scaled_predictions
from vgan.trainer import generator_from_checkpoint, load_checkpoint, predict

KEYS = ("auc_roc", "auc_pr", "f1")
VIEWS = ("colour", "green", "luminance", "jpeg95", "jpeg75", "jpeg50")
JPEG = "jpeg"


def jpeg_quality(view: str) -> int | None:
    """Q of a view `jpegQ` (1-100), None for the others."""
    digits = view.removeprefix(JPEG)
    return int(digits) if view.startswith(JPEG) and digits.isdigit() and 1 <= int(digits) <= 100 else None


CHOICES = f"choose from {', '.join(VIEWS)}, or jpegQ with Q in 1-100"


def known(view: str) -> bool:
    return view in VIEWS or jpeg_quality(view) is not None


def check_view(view: str) -> None:
    if not known(view):
        raise ValueError(f"unknown view {view!r} ({CHOICES})")


def stored(image: np.ndarray, view: str) -> np.ndarray:
    """An (H, W, 3) uint8 photograph as `view` holds it, read back as vgan.predict reads it: a grey repeated to
    three channels (its green channel, or PIL's convert("L"), ITU-R 601 luminance), or saved as JPEG at quality Q
    by PIL and decoded."""
    check_view(view)
    if view == "colour":
        return image
    if view == "green":
        return np.repeat(image[..., 1:2], 3, axis=-1)
    if view == "luminance":
        return np.repeat(np.asarray(Image.fromarray(image).convert("L"))[..., None], 3, axis=-1)  # a copy
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=jpeg_quality(view))
    return np.array(Image.open(buffer).convert("RGB"))  # writable, as torch.from_numpy wants


def stored_split(split: Split, view: str) -> Split:
    """A split whose photographs (8-bit, as DRIVE's and STARE's are held) are `view`'s, each at its own size (a
    smaller camera's padding is not saved with it)."""
    check_view(view)
    if split.images.dtype != torch.uint8:
        raise ValueError(f"split {split.name!r}: its photographs are not 8-bit; this benchmark views 8-bit files")
    images = torch.zeros_like(split.images)
    for i, image in enumerate(split.images):
        own = np.ascontiguousarray(split.own(i, image).permute(1, 2, 0).numpy())
        h, w = own.shape[:2]
        images[i, :, :h, :w] = torch.from_numpy(stored(own, view)).permute(2, 0, 1)
    return dataclasses.replace(split, images=images)


def score_views(checkpoint: Path, splits: dict[str, Split], views: list[str], device: torch.device) -> list[dict]:
    state = load_checkpoint(checkpoint)
    generator, cfg = generator_from_checkpoint(state, str(checkpoint), device)
    batch = cfg.train.eval_batch_size
    rows = []
    for dataset, split in splits.items():
        for view in views:
            seen = stored_split(split, view)
            with torch.no_grad():
                maps, _ = scaled_predictions(lambda x: predict(generator, x, device, batch), generator.trained_fov,
                                             seen, batch, ScaleSpec(1.0))
            m = score_maps(maps, seen, 0.5)[0]
            vessel, fov = m["n_vessel_pixels"], m["n_fov_pixels"]  # the share called vessel, from the rates at 0.5
            called = (m["sensitivity"] * vessel + (1 - m["specificity"]) * (fov - vessel)) / fov
            rows.append({"checkpoint": str(checkpoint), "epoch": int(state["epoch"]), "dataset": dataset,
                         "view": view, **{k: round(m[k], 4) for k in KEYS},
                         "vessels": round(called, 4), "labelled": round(vessel / fov, 4)})
            print(f"{label(checkpoint):>16} {dataset:>5} {view:>9}  " + "  ".join(f"{k} {m[k]:.4f}" for k in KEYS)
                  + f"  vessels {rows[-1]['vessels']:.3f}", flush=True)
    return rows


def summary(rows: list[dict], views: list[str]) -> list[str]:
    """Per dataset and view: the mean scores over the checkpoints and the mean change from `colour`."""
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        colour = {r["checkpoint"]: r for r in rows if r["dataset"] == dataset and r["view"] == "colour"}
        for view in views:
            mine = [r for r in rows if r["dataset"] == dataset and r["view"] == view]
            text = f"{dataset:>5} {view:>9} ({len(mine)} checkpoint(s)): " + "  ".join(
                f"{k} {np.mean([r[k] for r in mine]):.4f}" for k in KEYS)
            if view != "colour":
                text += "  change " + " / ".join(
                    f"{np.mean([r[k] - colour[r['checkpoint']][k] for r in mine]):+.4f}" for k in KEYS)
            lines.append(text + f"  vessels {np.mean([r['vessels'] for r in mine]):.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.formats", description=__doc__.split("\n\n")[0])
    add_arguments(p, None)
    p.add_argument("--views", default=",".join(VIEWS),
                   help=f"comma-separated, colour always among them (default {','.join(VIEWS)}; any jpegQ, Q 1-100)")
    args = p.parse_args(argv)
    views = args.views.split(",")
    unknown = [v for v in views if not known(v)]  # before any photograph is read
    if unknown:
        p.error(f"--views: unknown {', '.join(unknown)} ({CHOICES})")
    if "colour" not in views:
        views.insert(0, "colour")  # what every change is measured from
    device = torch.device(args.device)
    splits = scored_splits(args.drive, args.stare)
    rows = [r for ckpt in args.checkpoint for r in score_views(ckpt, splits, views, device)]
    lines = summary(rows, views)
    print("\n".join(lines))
    if args.json:
        write_rows(args.json, device, rows, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
