"""`python -m benchmarks.qc` (from the repository root): does `report.csv` find the bad photographs?

    python -m benchmarks.qc --checkpoint CKPT --drive ../shared/data/DRIVE [--stare ../shared/data/STARE]
                            [--per-kind 6] [--seed 0] [--kinds defocus,dark,haze] [--work DIR]
                            [--json benchmarks/results/qc-cpu2.json]

A screening service's batch is built from DRIVE's 20 test photographs, a folder per patient (`p01/OD.tif`),
and beside a seeded few of them the same photograph spoiled as screening photographs are spoiled
(`p07/OD_defocus.png`): out of focus (Gaussian blur, sigma 3 px on a 540-px FOV), under-exposed (x0.3) and
hazed as by a cataract (contrast halved towards the FOV's mean colour). `vgan.predict --recursive` segments
the batch as a user runs it; each row of its report is then scored against DRIVE's manual label inside DRIVE's
mask (AUC-ROC, AUC-PR). The summary says how far the report's vessel fraction, sorted lowest first, finds the
spoiled photographs (the AUC of that ranking, how many of the lowest are spoiled) and how the fraction follows
the map's quality (Spearman's rho with AUC-PR). `--stare` adds STARE's 20 photographs, clean but of another
camera and half of them of diseased eyes, scored against its first observer's labels: false alarms, if they
fall among the spoiled.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

KINDS = ("defocus", "dark", "haze")


def spoil(rgb: np.ndarray, kind: str) -> np.ndarray:
    """An 8-bit photograph (H, W, 3) as a screening camera spoils it."""
    from scipy import ndimage

    from vgan.images import estimate_fov

    x = rgb.astype(np.float32)
    if kind == "defocus":
        x = ndimage.gaussian_filter(x, sigma=(3, 3, 0))
    elif kind == "dark":
        x = x * 0.3
    elif kind == "haze":  # towards the mean colour of the FOV (vgan.predict's estimate), its black surround kept
        inside = estimate_fov(x / 255)
        x = np.where(inside[..., None], 0.5 * x + 0.5 * x[inside].mean(axis=0), x)
    else:
        raise ValueError(f"unknown kind {kind!r} (choose from {', '.join(KINDS)})")
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def build_batch(drive: Path, root: Path, kinds: list[str], per_kind: int, seed: int,
                stare: Path | None = None) -> dict[str, dict]:
    """The batch's folder tree under `root`; each image's name -> its kind ('clean', a spoiling, or 'stare': a
    clean photograph of another camera) and the label and mask it is scored against."""
    images = sorted((drive / "test" / "images").glob("*_test.tif"))
    rng = np.random.default_rng(seed)
    truth = {}
    for n, path in enumerate(images, 1):
        (root / f"p{n:02d}").mkdir(parents=True)
        shutil.copy(path, root / f"p{n:02d}" / "OD.tif")
        number = path.stem.split("_")[0]
        truth[f"p{n:02d}/OD"] = {"kind": "clean", "label": drive / "test" / "1st_manual" / f"{number}_manual1.gif",
                                 "mask": drive / "test" / "mask" / f"{path.stem}_mask.gif"}
    for kind in kinds:
        for n in sorted(rng.choice(len(images), per_kind, replace=False) + 1):
            rgb = np.asarray(Image.open(root / f"p{n:02d}" / "OD.tif").convert("RGB"))
            Image.fromarray(spoil(rgb, kind)).save(root / f"p{n:02d}" / f"OD_{kind}.png")
            truth[f"p{n:02d}/OD_{kind}"] = {**truth[f"p{n:02d}/OD"], "kind": kind}
    for n, path in enumerate(sorted((stare / "images").glob("*.ppm")) if stare else [], 1):
        (root / f"s{n:02d}").mkdir(parents=True)
        shutil.copy(path, root / f"s{n:02d}" / "OD.ppm")
        truth[f"s{n:02d}/OD"] = {"kind": "stare", "label": stare / "labels-ah" / f"{path.stem}.ah.ppm",
                                 "mask": stare / "mask" / f"{path.stem}.mask.ppm"}
    return truth


def score_rows(report: Path, out: Path, truth: dict[str, dict]) -> list[dict]:
    """The report's rows with each map scored against its manual label inside its camera's mask."""
    from vgan.images import read_binary
    from vgan.metrics import compute_metrics

    with open(report, newline="") as f:
        rows = list(csv.DictReader(f))
    scored = []
    for row in rows:
        if row["status"] != "segmented":
            raise SystemExit(f"{row['name']}: not segmented ({row['error']})")
        t = truth[row["name"]]
        prob = np.asarray(Image.open(out / "probabilities" / f"{row['name']}.png"), np.float32) / 255
        label, mask = read_binary(t["label"]), read_binary(t["mask"])
        m = compute_metrics(prob[mask], label[mask])
        scored.append({"name": row["name"], "kind": t["kind"], "vessel_fraction": float(row["vessel_fraction"]),
                       "fov_diameter_px": float(row["fov_diameter_px"]), "auc_roc": round(m["auc_roc"], 4),
                       "auc_pr": round(m["auc_pr"], 4)})
    return scored


def summary(rows: list[dict]) -> tuple[dict, list[str]]:
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    spoiled = np.array([r["kind"] in KINDS for r in rows])  # against clean DRIVE and STARE photographs
    vf = np.array([r["vessel_fraction"] for r in rows])
    lowest = set(np.argsort(vf, kind="stable")[: spoiled.sum()].tolist())
    clean = {r["name"].split("/")[0]: r for r in rows if r["kind"] == "clean"}
    result = {"images": len(rows), "spoiled": int(spoiled.sum()),
              "ranking_auc": round(float(roc_auc_score(spoiled, -vf)), 4),
              "spoiled_among_lowest": int(spoiled[sorted(lowest)].sum()),
              "spearman_vf_auc_pr": None if np.ptp(vf) == 0 else  # one fraction for all: no ranking to follow
              round(float(spearmanr(vf, [r["auc_pr"] for r in rows]).statistic), 4),
              "kinds": {}}
    lines = [f"{len(rows)} images, {spoiled.sum()} spoiled: sorting the report by vessel fraction, lowest first, "
             f"ranks a spoiled one below a clean one with probability {result['ranking_auc']:.3f}; "
             f"{result['spoiled_among_lowest']} of the lowest {spoiled.sum()} are spoiled; Spearman's rho of "
             f"vessel fraction and AUC-PR {result['spearman_vf_auc_pr']}"]
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = [r for r in rows if r["kind"] == kind]
        base = [clean[r["name"].split("/")[0]] for r in mine] if kind in KINDS else []
        k = {key: round(float(np.mean([r[key] for r in mine])), 4) for key in ("vessel_fraction", "auc_roc", "auc_pr")}
        k["range"] = [min(r["vessel_fraction"] for r in mine), max(r["vessel_fraction"] for r in mine)]
        k["among_lowest"] = sum(rows.index(r) in lowest for r in mine)
        if kind in KINDS:
            k["vessel_fraction_of_their_clean"] = round(float(np.mean([b["vessel_fraction"] for b in base])), 4)
            k["auc_pr_of_their_clean"] = round(float(np.mean([b["auc_pr"] for b in base])), 4)
            pairs = zip(mine, base, strict=True)
            k["lower_than_their_clean"] = sum(r["vessel_fraction"] < b["vessel_fraction"] for r, b in pairs)
        result["kinds"][kind] = k
        text = (f"{kind:>8} ({len(mine):2d}): vessel fraction {k['vessel_fraction']:.3f} ({k['range'][0]:.3f}-"
                f"{k['range'][1]:.3f}; {k['among_lowest']} among the lowest {spoiled.sum()}), AUC-ROC "
                f"{k['auc_roc']:.4f}, AUC-PR {k['auc_pr']:.4f}")
        if kind in KINDS:
            text += (f"; the same photographs clean: {k['vessel_fraction_of_their_clean']:.3f}, AUC-PR "
                     f"{k['auc_pr_of_their_clean']:.4f}; fraction lower than clean in "
                     f"{k['lower_than_their_clean']} of {len(mine)}")
        lines.append(text)
    return result, lines


def main(argv: list[str] | None = None) -> int:
    from benchmarks.tta import write_rows
    from vgan.predict import main as predict_main

    p = argparse.ArgumentParser(prog="python -m benchmarks.qc", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="a vgan checkpoint (best.pt)")
    p.add_argument("--drive", type=Path, required=True, help="DRIVE's root")
    p.add_argument("--stare", type=Path, help="STARE's root: its 20 photographs join the batch, clean photographs of "
                   "another camera, half of them of diseased eyes (do they pass for spoiled ones?)")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"spoilings, comma-separated (default {','.join(KINDS)})")
    p.add_argument("--per-kind", type=int, default=6, help="photographs spoiled each way (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, help="where the batch and its maps are written (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="write the rows and the summary here")
    args = p.parse_args(argv)
    kinds = args.kinds.split(",")
    if unknown := [k for k in kinds if k not in KINDS]:
        p.error(f"--kinds: unknown {', '.join(unknown)} (choose from {', '.join(KINDS)})")
    if not 1 <= args.per_kind <= 20:
        p.error(f"--per-kind {args.per_kind}: DRIVE has 20 test photographs")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        truth = build_batch(args.drive, work / "batch", kinds, args.per_kind, args.seed, args.stare)
        out = work / "maps"
        code = predict_main(["--checkpoint", str(args.checkpoint), "--input", str(work / "batch"), "--recursive",
                             "--out", str(out), "--device", "cpu"])
        if code:
            return code
        rows = score_rows(out / "report.csv", out, truth)
    result, lines = summary(rows)
    print("\n".join(lines))
    if args.json:
        write_rows(args.json, torch.device("cpu"), rows, lines, result=result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
