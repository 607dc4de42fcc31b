"""`python -m benchmarks.mixed_scale` (from the repository root): does one FOV scale pay on a two-camera pool?

    python -m benchmarks.mixed_scale --data ../shared/data/DRIVE [--zoom 1.6] [--epochs 30] [--seeds 0,1]
                                     [--arms as_is,one_scale,median] [--images N] [--test-images N] [--work DIR]
                                     [--steps N] [--threads N] [--json benchmarks/results/mixed-scale-cpu2.json]

A pool from two cameras, made from DRIVE: every other training photograph (with its label and FOV mask)
enlarged by `--zoom`, as a camera of finer resolution would give it (DRIVE's FOV is 540 pixels across;
at 1.6, 864). Each seed trains `configs/drive_cpu.yaml` (cut to `--epochs`) on it in each arm:
- as_is:     each photograph at its own size (`data.fov_diameter` unset: the generator learns two scales);
- one_scale: `data.fov_diameter: 540`, the enlarged photographs brought back to DRIVE's scale;
- median:    `data.fov_diameter: median`, the training split's median FOV diameter (one of the two cameras', or
             between them where the split holds as many of each), which no user need know.
Each generator (its best validation epoch) is then scored on DRIVE's test photographs as they are and on
the same photographs enlarged by `--zoom`, each brought to the generator's scale first (`vgan.evaluate
--scale auto`, as `tuner.predict` and the registry segment them) and scored at its own size. as_is is also
scored as the literature does (`--scale 1`): every photograph as it is.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "configs" / "drive_cpu.yaml"
ARMS = {"as_is": None, "one_scale": 540.0, "median": "median"}


def _save(path: Path, pixels: torch.Tensor) -> None:
    """(C, H, W) in [0, 1] as an 8-bit PNG (one channel: a label or mask, written 0/255)."""
    from vgan.visualize import to_uint8

    arr = to_uint8(pixels.permute(1, 2, 0).numpy())
    Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(path)


def write_pool(drive: Path, root: Path, pool: str, zoom_every: int, zoom: float, first: int | None = None) -> None:
    """DRIVE's `pool` (its `first` images; None: all) in the folder layout under root/pool, every
    `zoom_every`-th photograph enlarged by `zoom` (0: none)."""
    from vgan.config import DataConfig
    from vgan.data import read_pool
    from vgan.inputs import unit_float
    from vgan.scale import resize, scaled_size

    split = read_pool(DataConfig(dataset="drive", root=str(drive)), pool)
    if first is not None:
        split = split.subset(list(range(min(first, len(split)))), pool)
    for sub in ("images", "labels", "masks"):
        (root / pool / sub).mkdir(parents=True)
    for i, image_id in enumerate(split.ids):
        img, lab, msk = (unit_float(t[i]) for t in (split.images, split.labels, split.masks))
        if zoom_every and i % zoom_every == 0:
            size = scaled_size(tuple(img.shape[-2:]), zoom)
            img = resize(img[None], size)[0]
            lab, msk = ((resize(t[None], size)[0] > 0.5).float() for t in (lab, msk))
        for sub, t in (("images", img), ("labels", lab), ("masks", msk)):
            _save(root / pool / sub / f"{image_id}.png", t)


def run(argv: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}: exit {proc.returncode}; see {log}")
    return time.perf_counter() - t0


def score(checkpoint: Path, data: Path, scale: str, out: Path) -> dict:
    run(["-m", "vgan.evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--split", "test",
         "--scale", scale, "--out", str(out)], out.with_suffix(".log"))
    m = json.loads((out / "metrics.json").read_text())
    return {k: round(m[k], 4) for k in ("auc_roc", "auc_pr", "f1")} | {
        "scale_factors": sorted(set(m["scale_factors"])), "trained_fov_diameter": m["trained_fov_diameter"]}


def train_arm(arm: str, seed: int, epochs: int, pools: dict[str, Path], work: Path, **train: int) -> dict:
    """`train`: the recipe's train section changed further (steps_per_epoch=, threads=), where given."""
    cfg = yaml.safe_load(RECIPE.read_text())
    cfg["data"].update(dataset="folder", root=str(pools["native"]), fov_diameter=ARMS[arm])
    cfg["train"].update(seed=seed, epochs=epochs, preview_every=0, **{k: v for k, v in train.items() if v is not None})
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    wall = run(["-m", "vgan.train", "--config", str(work / "config.yaml"), "--out", str(work / "run"), "--quiet"],
               work / "train.log")
    history = [json.loads(ln) for ln in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    best = max(history, key=lambda r: r["val_auc_roc"])
    ckpt = work / "run" / "checkpoints" / "best.pt"
    row = {"arm": arm, "seed": seed, "fov_diameter": ARMS[arm], "epochs": epochs, "wall_s": round(wall, 1),
           "best_val_auc_roc": round(best["val_auc_roc"], 4), "best_epoch": int(best["epoch"]),
           "test_native": score(ckpt, pools["native"], "auto", work / "test_native"),
           "test_zoomed": score(ckpt, pools["zoomed"], "auto", work / "test_zoomed")}
    if ARMS[arm] is None:
        row["test_native_scale_1"] = score(ckpt, pools["native"], "1", work / "test_native_1")
        row["test_zoomed_scale_1"] = score(ckpt, pools["zoomed"], "1", work / "test_zoomed_1")
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.mixed_scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="DRIVE's root")
    p.add_argument("--zoom", type=float, default=1.6, help="the second camera's enlargement (default 1.6)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--images", type=int, help="only the first N photographs of each pool (a quick check)")
    p.add_argument("--test-images", type=int,
                   help="only the first N test photographs (default: as --images): scoring is most of a quick check")
    p.add_argument("--steps", type=int, help="training steps per epoch (default: the recipe's; fewer: a quick check)")
    p.add_argument("--threads", type=int, help="torch threads of each training run (default: the recipe's)")
    p.add_argument("--work", help="scratch folder for the pools and runs, new or empty (default: a new temporary one)")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args(argv)
    arms = args.arms.split(",")
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        p.error(f"--arms: unknown {', '.join(unknown)} (choose from {', '.join(ARMS)})")
    for flag, value in (("--steps", args.steps), ("--threads", args.threads)):
        if value is not None and value < 1:
            p.error(f"{flag} {value}: must be at least 1")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="vgan-mixed-scale-"))
    if work.exists() and any(work.iterdir()):
        p.error(f"--work {work}: not empty (the pools and runs are written there; nothing in it is removed)")
    print(f"pools and runs in {work}", flush=True)
    drive = Path(args.data).resolve()
    pools = {"native": work / "pool", "zoomed": work / "pool_zoomed_test"}
    write_pool(drive, pools["native"], "training", 2, args.zoom, args.images)  # the two-camera training pool
    tests = args.images if args.test_images is None else args.test_images
    write_pool(drive, pools["native"], "test", 0, args.zoom, tests)  # DRIVE's test photographs as they are
    pools["zoomed"].mkdir()
    (pools["zoomed"] / "training").symlink_to(pools["native"] / "training")
    write_pool(drive, pools["zoomed"], "test", 1, args.zoom, tests)  # ... and every one enlarged
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for arm in arms:
            (work / f"{arm}-{seed}").mkdir()
            rows.append(train_arm(arm, seed, args.epochs, pools, work / f"{arm}-{seed}", steps_per_epoch=args.steps,
                                  threads=args.threads))
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        recipe = yaml.safe_load(RECIPE.read_text())["train"]
        meta = {"machine": platform.processor() or platform.machine(), "cpus": torch.get_num_threads(),
                "torch": torch.__version__, "zoom": args.zoom, "recipe": str(RECIPE.relative_to(REPO)),
                "steps_per_epoch": args.steps or recipe["steps_per_epoch"],
                "threads": args.threads or recipe["threads"],
                "date": time.strftime("%Y-%m-%d")}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    for metric in ("test_native", "test_zoomed"):
        for arm in arms:
            aucs = [r[metric]["auc_roc"] for r in rows if r["arm"] == arm]
            print(f"{metric:12s} {arm:10s} AUC-ROC mean {np.mean(aucs):.4f} over {len(aucs)} seed(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
