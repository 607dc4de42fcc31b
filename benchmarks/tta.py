"""`python -m benchmarks.tta` (from the repository root): what do mirrored views (`--tta`) give, at what cost?

    python -m benchmarks.tta --checkpoint CKPT [CKPT ...] --drive ../shared/data/DRIVE
                             [--stare ../shared/data/STARE] [--modes none,hflip,flips,dihedral]
                             [--device cpu] [--json benchmarks/results/tta-cpu2.json]

Each checkpoint's generator segments DRIVE's test photographs (and STARE's: another camera, a
cross-dataset score) in each mode of `vgan.tta`, as `vgan.evaluate --checkpoint CKPT --tta MODE` does:
each photograph at its own size (`--scale 1`, the literature's protocol), the metrics pooled over the FOV
pixels of the split (exact curves), F1 at 0.5. Each row also gives the seconds per photograph of the
predictions alone. The modes run in turn on one process, so their seconds compare on one machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vgan.config import DataConfig
from vgan.data import load_split
from vgan.evaluate import score_maps
from vgan.scale import ScaleSpec, scaled_predictions
from vgan.trainer import generator_from_checkpoint, load_checkpoint, predict
from vgan.tta import TTA_MODES, VIEWS, with_tta

KEYS = ("auc_roc", "auc_pr", "f1")


def label(checkpoint: Path) -> str:
    """A run's name for runs/NAME/checkpoints/best.pt, else the file's."""
    return checkpoint.parent.parent.name if checkpoint.parent.name == "checkpoints" else checkpoint.stem


def score_modes(checkpoint: Path, splits: dict, modes: list[str], device: torch.device) -> list[dict]:
    state = load_checkpoint(checkpoint)
    generator, cfg = generator_from_checkpoint(state, str(checkpoint), device)
    batch = cfg.train.eval_batch_size
    rows = []
    for dataset, split in splits.items():
        for mode in modes:
            model = with_tta(lambda x: predict(generator, x, device, batch), mode)
            t0 = time.perf_counter()
            with torch.no_grad():
                maps, _ = scaled_predictions(model, generator.trained_fov, split, batch, ScaleSpec(1.0))
            seconds = (time.perf_counter() - t0) / len(split)
            m = score_maps(maps, split, 0.5)[0]
            rows.append({"checkpoint": str(checkpoint), "epoch": int(state["epoch"]), "dataset": dataset,
                         "mode": mode, "views": len(VIEWS[mode]), **{k: round(m[k], 4) for k in KEYS},
                         "s_per_image": round(seconds, 3)})
            print(f"{label(checkpoint):>12} {dataset:>5} {mode:>8}  " + "  ".join(f"{k} {m[k]:.4f}" for k in KEYS)
                  + f"  {seconds:.2f} s/image", flush=True)
    return rows


def summary(rows: list[dict], modes: list[str]) -> list[str]:
    """Per dataset and mode: the mean scores over the checkpoints, the mean gain over `none`, and how many
    checkpoints gained (in AUC-ROC)."""
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        base = {r["checkpoint"]: r for r in rows if r["dataset"] == dataset and r["mode"] == "none"}
        for mode in modes:
            mine = [r for r in rows if r["dataset"] == dataset and r["mode"] == mode]
            text = f"{dataset:>5} {mode:>8} ({len(mine)} checkpoint(s)): " + "  ".join(
                f"{k} {np.mean([r[k] for r in mine]):.4f}" for k in KEYS)
            if base and mode != "none":
                gains = {k: [r[k] - base[r["checkpoint"]][k] for r in mine] for k in KEYS}
                text += ("  gain " + " / ".join(f"{np.mean(g):+.4f}" for g in gains.values())
                         + f", AUC-ROC up on {sum(g > 0 for g in gains['auc_roc'])} of {len(mine)}")
            text += f"  {np.mean([r['s_per_image'] for r in mine]):.2f} s/image"
            lines.append(text)
    return lines


def add_arguments(p: argparse.ArgumentParser, modes: str | None) -> None:
    """The arguments benchmarks.tta, benchmarks.ensemble and benchmarks.formats share (--modes where `modes`, its
    default, is given)."""
    p.add_argument("--checkpoint", type=Path, nargs="+", required=True, help="vgan checkpoints (best.pt)")
    p.add_argument("--drive", type=Path, required=True, help="DRIVE's root")
    p.add_argument("--stare", type=Path, help="STARE's root (a cross-dataset score)")
    if modes is not None:
        p.add_argument("--modes", default=modes, help=f"--tta modes, comma-separated (default {modes})")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, help="write the rows here")


def parse_modes(p: argparse.ArgumentParser, text: str) -> list[str]:
    modes = text.split(",")
    unknown = [m for m in modes if m not in VIEWS]
    if unknown:
        p.error(f"--modes: unknown {', '.join(unknown)} (choose from {', '.join(TTA_MODES)})")
    return modes


def scored_splits(drive: Path, stare: Path | None) -> dict:
    """DRIVE's test split, and STARE's where given (another camera: a cross-dataset score)."""
    splits = {"DRIVE": load_split(DataConfig(dataset="drive", root=str(drive), crop_size=None), "test")}
    if stare:
        splits["STARE"] = load_split(DataConfig(dataset="stare", root=str(stare), crop_size=None), "test")
    return splits


def write_rows(path: Path, device: torch.device, rows: list[dict], lines: list[str], **extra) -> None:
    """The JSON of a benchmark: the machine, its rows, its summary lines, and any `extra` key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "device": str(device), "date": time.strftime("%Y-%m-%d")}
    path.write_text(json.dumps({"meta": meta, "rows": rows, "summary": lines, **extra}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tta", description=__doc__.split("\n\n")[0])
    add_arguments(p, ",".join(TTA_MODES))
    args = p.parse_args(argv)
    modes = parse_modes(p, args.modes)
    if "none" not in modes:
        modes.insert(0, "none")  # the baseline every gain is measured from
    device = torch.device(args.device)
    splits = scored_splits(args.drive, args.stare)
    rows = [r for ckpt in args.checkpoint for r in score_modes(ckpt, splits, modes, device)]
    lines = summary(rows, modes)
    print("\n".join(lines))
    if args.json:
        write_rows(args.json, device, rows, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
