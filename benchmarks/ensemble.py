"""`python -m benchmarks.ensemble` (from the repository root): what does the mean of several generators give?

    python -m benchmarks.ensemble --checkpoint CKPT CKPT [CKPT ...] --drive ../shared/data/DRIVE
                                  [--stare ../shared/data/STARE] [--modes none,flips]
                                  [--device cpu] [--json benchmarks/results/ensemble-cpu2.json]

Each checkpoint's generator segments DRIVE's test photographs (and STARE's: a cross-dataset score) in
each `--tta` mode, each photograph at its own size (`--scale 1`, the literature's protocol). Rows: each
generator alone, then the ensembles of the first 2, 3, ... checkpoints (the mean of their maps, as
`vgan.evaluate --checkpoint A B ... --tta MODE` scores it), metrics pooled over the FOV pixels (exact
curves), F1 at 0.5, and the seconds per photograph of the predictions (an ensemble's: its members' sum).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.tta import KEYS, add_arguments, label, parse_modes, scored_splits, write_rows
from vgan.ensemble import mean_maps
from vgan.evaluate import score_maps
from vgan.scale import ScaleSpec, scaled_predictions
from vgan.trainer import generator_from_checkpoint, load_checkpoint, predict
from vgan.tta import VIEWS, with_tta


def member_maps(checkpoint: Path, splits: dict, modes: list[str], device: torch.device) -> dict:
    """(dataset, mode) -> (the generator's maps of the split, seconds per image)."""
    generator, cfg = generator_from_checkpoint(load_checkpoint(checkpoint), str(checkpoint), device)
    batch = cfg.train.eval_batch_size
    made = {}
    for dataset, split in splits.items():
        for mode in modes:
            model = with_tta(lambda x: predict(generator, x, device, batch), mode)
            t0 = time.perf_counter()
            with torch.no_grad():
                maps, _ = scaled_predictions(model, generator.trained_fov, split, batch, ScaleSpec(1.0))
            made[dataset, mode] = maps, (time.perf_counter() - t0) / len(split)
    return made


def score_rows(checkpoints: list[Path], made: list[dict], splits: dict, modes: list[str]) -> list[dict]:
    rows = []
    for dataset, split in splits.items():
        for mode in modes:
            subsets = [[i] for i in range(len(checkpoints))] + [list(range(k)) for k in range(2, len(checkpoints) + 1)]
            for members in subsets:
                maps = mean_maps(made[i][dataset, mode][0] for i in members)  # as vgan.evaluate averages them
                m = score_maps(maps, split, 0.5)[0]
                seconds = sum(made[i][dataset, mode][1] for i in members)
                rows.append({"dataset": dataset, "mode": mode, "views": len(VIEWS[mode]), "k": len(members),
                             "members": [str(checkpoints[i]) for i in members],
                             **{k: round(m[k], 4) for k in KEYS}, "s_per_image": round(seconds, 3)})
                name = label(checkpoints[members[0]]) if len(members) == 1 else f"mean of {len(members)}"
                print(f"{name:>12} {dataset:>5} {mode:>8}  " + "  ".join(f"{k} {m[k]:.4f}" for k in KEYS)
                      + f"  {seconds:.2f} s/image", flush=True)
    return rows


def summary(rows: list[dict]) -> list[str]:
    """Per dataset and mode: the generators alone (mean, best) and the ensemble of all, with its gains."""
    lines = []
    for dataset, mode in dict.fromkeys((r["dataset"], r["mode"]) for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset and r["mode"] == mode]
        alone = [r for r in mine if r["k"] == 1]
        whole = max(mine, key=lambda r: r["k"])
        mean = {k: np.mean([r[k] for r in alone]) for k in KEYS}
        best = {k: max(r[k] for r in alone) for k in KEYS}
        lines.append(
            f"{dataset:>5} {mode:>8}: alone (mean of {len(alone)}) " + " / ".join(f"{mean[k]:.4f}" for k in KEYS)
            + ", best " + " / ".join(f"{best[k]:.4f}" for k in KEYS)
            + f"; mean map of {whole['k']} " + " / ".join(f"{whole[k]:.4f}" for k in KEYS)
            + " (" + " / ".join(f"{whole[k] - mean[k]:+.4f}" for k in KEYS) + " over the mean, "
            + " / ".join(f"{whole[k] - best[k]:+.4f}" for k in KEYS) + " over the best alone)"
            + f"  {whole['s_per_image']:.2f} s/image")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ensemble", description=__doc__.split("\n\n")[0])
    add_arguments(p, "none,flips")
    args = p.parse_args(argv)
    if len(args.checkpoint) < 2:
        p.error("--checkpoint: an ensemble needs 2 or more")
    modes = parse_modes(p, args.modes)
    device = torch.device(args.device)
    splits = scored_splits(args.drive, args.stare)
    made = [member_maps(c, splits, modes, device) for c in args.checkpoint]
    rows = score_rows(args.checkpoint, made, splits, modes)
    lines = summary(rows)
    print("\n".join(lines))
    if args.json:
        write_rows(args.json, device, rows, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
