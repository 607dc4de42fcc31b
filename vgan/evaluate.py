"""`python -m vgan.evaluate`: score a trained generator, or a folder of existing maps.

    python -m vgan.evaluate --checkpoint CKPT [CKPT ...] [--data ROOT] --split test --out DIR
                            [--threshold T | --val-threshold] [--scale 1|auto|FACTOR] [--tta MODE]
    python -m vgan.evaluate --predictions DIR --data ROOT [--dataset drive|stare|folder] --split test --out DIR
    python -m vgan.evaluate --observer DIR --data ROOT --out DIR   (a second observer's labels)
    python -m vgan.evaluate --checkpoint CKPT --noise N --out DIR

Metrics are pooled over the FOV pixels of every image of the split (metrics.json: auc_roc,
auc_pr, average_precision, threshold, f1, accuracy, sensitivity, specificity, cldice of the vessels'
centrelines, thin_sensitivity and thick_sensitivity, the sensitivity on the labelled vessels under 3 pixels wide
and on the others (`vgan.metrics.thin_vessels`), and thin_auc_roc and thick_auc_roc, their ranking against the
background; and `per_image`, each
image's own, also in per_image.csv, worst AUC-ROC first; `pair_counts`, from which `vgan.compare`
takes the pooled AUC-ROC of any draw of the images; and `intervals`, the pooled figures' 95 % bootstrap
intervals over the images, as the console gives them). A checkpoint also gets its probability maps
(16-bit PNG) and binary maps; both modes get roc.png, pr.png and previews/ of the images of lowest AUC-ROC.
A checkpoint sees the images as they are (`--scale 1`, the literature's protocol) unless `--scale auto`
resizes each to the FOV diameter of its training photographs (`vgan.scale`; for another dataset's
images) or `--scale FACTOR` by a factor; metrics are computed at the images' own size either way.
A checkpoint trained with `data.fov_diameter` (its photographs brought to one scale) is scored at that
scale unless `--scale` says otherwise; its train and val splits are read as it was trained on them.
`--tta flips` (or hflip, dihedral) scores the mean map of each image's mirrored views (`vgan.tta`); the
validation threshold (`--val-threshold`) is then chosen on maps made the same way. Several checkpoints
score the mean of their maps (`vgan.ensemble`), each generator at its own scale; metrics.json's `members`
says what each was. `--predictions` takes maps named by image id, or a folder vgan.predict, tuner.predict
or this command wrote (its maps in probabilities/). `--observer` takes another observer's labels of the
split (DRIVE's test/2nd_manual, STARE's labels-vk), read as labels are and scored as binary maps: the
literature's "human performance", the agreement of two people that a model's scores are set beside.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vgan import metrics as vgan_metrics
from vgan.cli import check_threshold, exit_program, json_text, nonempty, run_cli, writable_folder
from vgan.config import DATASETS, DEVICES, DataConfig, apply_overrides
from vgan.data import (
    OTHER_OBSERVERS,
    SPLITS,
    Item,
    Split,
    converted_text,
    copies,
    detect_dataset,
    fov_note,
    fov_source,
    load_split,
    pool_files,
    shared_people_note,
    shown_copies,
)
from vgan.ensemble import Member, check_one_validation_split, ensemble_predictions
from vgan.errors import ConfigError, DataError
from vgan.images import read_label, read_probability
from vgan.metrics import (
    BOOTSTRAP_SAMPLES,
    BY_WIDTH,
    CENTRELINE_KEYS,
    CLDICE,
    INTERVALS,
    PAIR_KEYS,
    PAIRS,
    POOLED_BY_IMAGE,
    SELECTABLE,
    THICK_AUC,
    THIN_AUC,
    THIN_BELOW,
    WIDTH_OF,
    WIDTH_PX,
    calibre_aucs,
    calibre_sensitivities,
    compute_metrics,
    curves,
    fov_labels,
    fov_pixels,
    image_calibres,
    image_centrelines,
    label_centrelines,
    label_thin_vessels,
    pair_counts,
    per_image_metrics,
    pooled_cldice,
    pooled_interval,
    pooled_of_images,
)
from vgan.provenance import environment_record
from vgan.report import PROBABILITIES
from vgan.scale import ScaleSpec
from vgan.trainer import generator_from_checkpoint, load_checkpoint, predict, resolve_device
from vgan.tta import DEFAULT as TTA_DEFAULT
from vgan.tta import TTA_MODES, with_tta
from vgan.visualize import save_curves, save_map, save_mask, save_preview, to_uint8

MAP_SUFFIXES = (".png", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".npy", ".jpg", ".jpeg", ".bmp")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vgan.evaluate", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=nonempty, nargs="+", metavar="CKPT",
                     help="checkpoint written by vgan.train; several: score the mean of their maps (an ensemble)")
    src.add_argument("--predictions", type=nonempty,
                     help="folder of probability maps named by image id (01_test.tif, 01.npy...), or a folder "
                          "vgan.predict or tuner.predict wrote")
    src.add_argument("--observer", type=nonempty, metavar="DIR",
                     help="folder of another observer's labels of the split (DRIVE's test/2nd_manual, STARE's "
                          "labels-vk), scored as binary maps: the literature's human performance")
    p.add_argument("--data", type=nonempty, help="dataset root (default: the checkpoint's data.root)")
    p.add_argument("--dataset", choices=DATASETS, help="dataset layout (default: the checkpoint's, or detected)")
    p.add_argument("--split", choices=SPLITS, default="test")
    p.add_argument("--out", type=nonempty, required=True, help="output folder")
    thr = p.add_mutually_exclusive_group()
    thr.add_argument("--threshold", type=float, default=0.5, help="binarisation threshold (default 0.5)")
    thr.add_argument("--val-threshold", action="store_true",
                     help="use the threshold of best F1 on the validation split (needs --checkpoint)")
    p.add_argument("--scale", metavar="1|auto|FACTOR",
                   help="with --checkpoint: resize each image before the generator: 1 (as it is, the default), "
                        "auto (its FOV to the training photographs' diameter; the default for a checkpoint "
                        "trained with data.fov_diameter) or a factor")
    p.add_argument("--tta", choices=TTA_MODES, default=TTA_DEFAULT,
                   help="with --checkpoint: score the mean map of each image's mirrored views: hflip (2 passes), "
                        "flips (4), dihedral (8); none (the default, the literature's protocol) takes it once")
    p.add_argument("--previews", type=int, default=3, metavar="N",
                   help="previews/ of the N images of lowest AUC-ROC: image | probability | truth | errors "
                        "(default 3; 0: none)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--noise", type=int, metavar="N", help="with --checkpoint: draw N maps from Gaussian noise")
    p.add_argument("--noise-size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    p.add_argument("--seed", type=int, default=0, help="seed of --noise")
    return p


def id_stems(image_id: str) -> list[str]:
    """The names a file of an image goes by: its id, and its number where the id has one (01 of 01_test)."""
    return [image_id] + ([image_id.split("_")[0]] if "_" in image_id else [])


def named_path(folder: Path, image_id: str, names: Sequence[str] = ("{}",)) -> Path | None:
    """The file in `folder` named by the image's id or number (`id_stems`) through the first of `names` (patterns
    of a stem, as vgan.data's LABEL_NAMES) that one is, with a map's suffix; None where none is."""
    for stem in id_stems(image_id):
        for name in names:
            for suffix in MAP_SUFFIXES:
                path = folder / f"{name.format(stem)}{suffix}"
                if path.is_file():
                    return path
    return None


def observer_path(folder: Path, image_id: str) -> Path | None:
    """Another observer's label of an image in `folder`: first as the public sets name a second observer's
    (CHASE_DB1's Image_11L_2ndHO.png, DRIVE's 01_manual2.gif, STARE's im0162.vk.ppm: a folder that holds the
    photographs and the first observer's labels too is read right), else as a map is named (`map_path`)."""
    return named_path(folder, image_id, OTHER_OBSERVERS) or map_path(folder, image_id)


def map_path(folder: Path, image_id: str) -> Path | None:
    """An image's map in `folder`: named by its id (01_test.png) or its number (01.npy); else the one file named
    by either and a suffix of its own (01_prob.png)."""
    found = named_path(folder, image_id)
    if found is not None:
        return found
    stems = id_stems(image_id)
    for stem in stems:
        named = sorted(f for f in folder.glob(f"{glob.escape(stem)}[._]*")
                       if f.suffix.lower() in MAP_SUFFIXES and f.stem != stem and f.is_file())
        if len(named) > 1:
            raise DataError(f"{named[0]} and {named[1]}: two maps named after image {image_id}")
        if named:
            return named[0]
    return None


def find_map(folder: Path, image_id: str, observer: bool = False) -> Path:
    path = observer_path(folder, image_id) if observer else map_path(folder, image_id)
    if path is None:
        what, named = (("label of another observer", OTHER_OBSERVERS[0].format(image_id)) if observer else
                       ("probability map", image_id))
        raise DataError(f"{folder}: no {what} for image {image_id} (expected e.g. {folder / (named + '.png')})")
    return path


def maps_folder(folder: Path, ids: Sequence[str]) -> Path:
    """Where a folder's probability maps are: in it, or, in a folder vgan.predict, tuner.predict or
    vgan.evaluate wrote (maps in probabilities/, beside binary/ and plots), in probabilities/."""
    if not folder.is_dir():
        raise DataError(f"{folder}: predictions folder missing")
    inner = folder / PROBABILITIES
    if inner.is_dir() and not any(map_path(folder, image_id) for image_id in ids):
        return inner
    return folder


def read_predictions(folder: Path, split: Split, own: dict[str, Item] | None = None) -> list[np.ndarray]:
    """Each image's map in `folder` at its own size. `own` (the split's files, by id): the maps are another
    observer's labels, read as labels are (any colour on black, above one half) and held as maps of 0 and 1; the
    image's own photograph or label found where a folder holds those too is refused."""
    maps = []
    for i, image_id in enumerate(split.ids):
        path = find_map(folder, image_id, own is not None)
        if own is not None:
            it = own[image_id]
            for what, mine in (("photograph", it.image), ("label, the ground truth", it.label)):
                if mine.is_file() and os.path.samefile(path, mine):
                    raise DataError(f"{path}: image {image_id}'s own {what}, not another observer's label: give the "
                                    "folder of the other observer's labels")
        prob = read_label(path).astype(np.float32) if own is not None else read_probability(path)
        size = split.image_size(i)
        if prob.shape != size:
            raise DataError(f"{path}: size {prob.shape[0]}x{prob.shape[1]} does not match image {image_id} "
                            f"({size[0]}x{size[1]})")
        if not np.isfinite(prob).all():
            raise DataError(f"{path}: contains non-finite values")
        maps.append(prob)
    return maps


OBSERVER = "observer"  # the maps scored are another observer's labels (--observer)
PEOPLE = "people_trained_on"  # the note on test images of people the checkpoint's training pool holds too
COPIES = "copies_trained_on"  # the note on test photographs whose file the checkpoint's training pool holds too
CONVERTED = "converted"  # what reading changed in the split's photographs (Split.converted), where it changed any
PER_IMAGE_KEYS = ("id", "auc_roc", "auc_pr", "average_precision", "f1", "accuracy", "sensitivity", "specificity",
                  "cldice", *BY_WIDTH, "n_fov_pixels", "vessel_fraction", *CENTRELINE_KEYS, *WIDTH_PX.values())


def write_report(out: Path, metrics: dict[str, Any], scores: np.ndarray, targets: np.ndarray, title: str) -> None:
    """metrics.json, roc.png, pr.png, and per_image.csv (a row per image, worst AUC-ROC first) where the
    metrics hold `per_image`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json_text(metrics))
    save_curves(out, curves(scores, targets), metrics, title)
    if "per_image" in metrics:
        done: dict[str, list[str]] = {}  # image id -> what reading converted in it, as vgan.predict's report.csv
        for note, ids in metrics.get(CONVERTED, {}).items():
            for image_id in ids:
                done.setdefault(image_id, []).append(note)
        with open(out / "per_image.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, (*PER_IMAGE_KEYS, CONVERTED))
            writer.writeheader()
            for row in worst_first(metrics["per_image"]):
                writer.writerow({**{k: f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()},
                                 CONVERTED: "; ".join(done.get(row["id"], []))})


def worst_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Images by AUC-ROC, lowest first; those without one (a single class in the FOV) last."""
    return sorted(rows, key=lambda r: (r["auc_roc"] is None, r["auc_roc"] or 0.0))


def save_worst(out: Path, split: Split, maps: list[np.ndarray], rows: list[dict[str, Any]], n: int,
               threshold: float) -> None:
    """previews/<rank>_<id>.png of the n images of lowest AUC-ROC (`rows`: `per_image`, in the split's order),
    in place of an earlier evaluation's into this folder (whose ranks would name other images)."""
    for old in (out / "previews").glob("[0-9]*_*.png"):
        old.unlink()
    worst = [r for r in worst_first(rows) if r["auc_roc"] is not None][:n]
    if worst:
        (out / "previews").mkdir(parents=True, exist_ok=True)
    index = {image_id: i for i, image_id in enumerate(split.ids)}
    for rank, row in enumerate(worst, 1):
        caption = (f"{row['id']}: AUC-ROC {row['auc_roc']:.4f}, F1 {row['f1']:.4f} at {threshold:.3g} "
                   f"(lowest {rank} of {len(rows)})")
        save_preview(out / "previews" / f"{rank}_{row['id']}.png", split, index[row["id"]], maps[index[row["id"]]],
                     caption, threshold)


def own_targets(split: Split) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each image's label and FOV mask (H, W) at its own size."""
    return ([split.own(i, y[0]).numpy() for i, y in enumerate(split.labels)],
            [split.own(i, m[0]).numpy() for i, m in enumerate(split.masks)])


SPLIT_KEYS = ("split", "n_images", "n_fov_pixels", "n_vessel_pixels")  # what score_maps says of the split scored


def score_maps(maps: list[np.ndarray], split: Split, threshold: float,
               each: bool = False) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """`maps`: each image's probabilities at its own size. `each`: also each image's own metrics
    (`per_image`: `vgan.metrics.per_image_metrics` with the image's id, in the split's order). clDice and the
    thin and thick vessels' figures either way: the pooled figures are the same whoever scores (an ensemble's
    size is chosen on what the registry logs)."""
    labels, masks = own_targets(split)
    scores, targets = fov_pixels(maps, labels, masks)
    m: dict[str, Any] = compute_metrics(scores, targets, threshold)
    on_labels = label_centrelines(labels, masks)
    centrelines = image_centrelines(maps, labels, masks, threshold, on_labels)
    m[CLDICE] = pooled_cldice(centrelines)
    thin = label_thin_vessels(labels, masks, on_labels)
    widths = {**calibre_sensitivities(image_calibres(maps, labels, masks, threshold, thin)),
              **calibre_aucs(maps, labels, masks, thin)}
    # a split without vessels of a width has no figure for it, not a None in MLflow's metrics
    m.update((k, v) for k, v in widths.items() if v is not None)
    m.update(zip(SPLIT_KEYS, (split.name, len(split), int(scores.size), int(targets.sum())), strict=True))
    if split.converted:
        m[CONVERTED] = split.converted
    if each:
        rows = per_image_metrics(maps, labels, masks, threshold, centrelines, thin)
        m["per_image"] = [{"id": image_id, **row} for image_id, row in zip(split.ids, rows, strict=True)]
        thick = [y & ~t for y, t in zip(fov_labels(labels, masks), thin, strict=True)]
        counts = {"auc_roc": pair_counts(maps, labels, masks), THIN_AUC: pair_counts(maps, labels, masks, thin),
                  THICK_AUC: pair_counts(maps, labels, masks, thick)}
        for metric, c in counts.items():
            if c is not None and metric in m:
                about = PAIRS_ABOUT if metric == "auc_roc" else \
                    f"as {PAIRS}, of the vessel pixels each row counts in {WIDTH_PX[WIDTH_OF[metric]]} alone"
                m[PAIR_KEYS[metric]] = {"about": about, "ids": list(split.ids), "counts": c.tolist()}
        m[INTERVALS] = image_intervals(m["per_image"], counts, [k for k in POOLED_BY_IMAGE if k in m])
    return m, scores, targets


CONFIDENCE = 0.95


def image_intervals(rows: list[dict[str, Any]], counts: dict[str, np.ndarray | None],
                    metrics: Sequence[str] = POOLED_BY_IMAGE) -> dict[str, Any]:
    """The pooled metrics' bootstrap intervals over the images (how far each figure moves with the choice of test
    images; nothing of training's noise), where the images' rows and pair counts (by AUC-ROC: `PAIR_KEYS`'
    metrics) give them."""
    out: dict[str, Any] = {"confidence": CONFIDENCE, "draws": BOOTSTRAP_SAMPLES, "seed": 0}
    for metric in metrics:
        of = pooled_of_images(metric, rows, counts.get(metric))
        if of is not None:
            out[metric] = list(pooled_interval(of, len(rows), CONFIDENCE))
    return out


PAIRS_ABOUT = ("counts[i][j]: pairs of a vessel pixel of image i and a background pixel of image j (FOV pixels) "
               "ranked vessel first, counted twice, a tie once; the pooled AUC-ROC of any draw of the images follows "
               "(vgan.compare's interval of the pooled gain)")


def pooled_metrics(scored: dict[str, Any]) -> dict[str, float]:
    """The pooled metrics of what score_maps returned (`compute_metrics`'), without what it says of the split,
    its `per_image` rows, its pair counts and its intervals."""
    return {k: v for k, v in scored.items()
            if k not in (*SPLIT_KEYS, CONVERTED, "per_image", *PAIR_KEYS.values(), INTERVALS)}


def named_data(args: argparse.Namespace) -> tuple[Path, str]:
    """--data's folder (it must exist) and its dataset: --dataset, else detected from its layout."""
    root = Path(args.data).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{root}: dataset root missing")
    if args.dataset:
        return root, args.dataset
    dataset = detect_dataset(root)
    if dataset is None:
        raise DataError(f"{root}: neither a DRIVE layout (training/ and test/ with images/, 1st_manual/), a STARE "
                        "one (images/, labels-ah/) nor a folder dataset (training/images, training/labels, ...); give "
                        "--dataset")
    return root, dataset


def run_predictions(args: argparse.Namespace) -> dict[str, Any]:
    flag, given = ("--observer", args.observer) if args.observer else ("--predictions", args.predictions)
    if args.val_threshold:
        raise ConfigError("--val-threshold needs --checkpoint (a folder of maps has no validation predictions)")
    if args.tta != TTA_DEFAULT:
        raise ConfigError(f"--tta {args.tta} needs --checkpoint (a folder of maps is scored as it is)")
    if args.data is None:
        raise ConfigError(f"{flag} needs --data ROOT (the dataset the maps belong to)")
    root, dataset = named_data(args)
    data = DataConfig(dataset=dataset, root=str(root), crop_size=None)
    split = load_split(data, args.split)
    folder = Path(given) if args.observer else maps_folder(Path(given), split.ids)
    if not folder.is_dir():
        raise DataError(f"{folder}: {'observer' if args.observer else 'predictions'} folder missing")
    own = None
    if args.observer:
        own = {it.id: it for it in pool_files(data, "test" if args.split == "test" else "training")}
    maps = read_predictions(folder, split, own)
    m, scores, targets = score_maps(maps, split, args.threshold, each=True)
    m.update(dataset=dataset, fov=fov_source(data, args.split), source=str(folder.resolve()),
             threshold_source="fixed", **({OBSERVER: True} if args.observer else {}))
    write_report(Path(args.out), m, scores, targets, f"{dataset} {args.split}: {Path(given).name}")
    save_worst(Path(args.out), split, maps, m["per_image"], args.previews, args.threshold)
    return m


def run_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device, "--device")
    loaded = []  # (path, checkpoint state, generator, its training config) of each member
    for path in args.checkpoint:
        state = load_checkpoint(path)
        loaded.append((path, state, *generator_from_checkpoint(state, path, device)))
    _, state, generator, cfg = loaded[0]
    out = Path(args.out)
    if args.noise is not None:
        return draw_noise(generator, args, device, out)
    if len(loaded) > 1 and (args.val_threshold or args.split == "val"):
        check_one_validation_split([c.data for *_, c in loaded], args.checkpoint)
    overrides: dict[str, Any] = {"data.crop_size": None}  # evaluation is on whole images
    if args.data is not None:
        # --data names the images to score, whatever the checkpoint was trained on (cross-dataset scores)
        root, dataset = named_data(args)
        overrides.update({"data.root": str(root), "data.dataset": dataset})
    elif args.dataset is not None:
        overrides["data.dataset"] = args.dataset
    data = apply_overrides(cfg, overrides, "command line").data
    for path, _, _, c in loaded:
        if c.data.dataset != data.dataset:
            which = f": {path}" if len(loaded) > 1 else ""
            print(f"scoring a generator trained on {c.data.dataset} on {data.dataset} ({data.root}){which}")
    split = load_split(data, args.split)
    trained_on = trained_people(loaded, data, split) if args.split == "test" else None
    copied = trained_copies(loaded, data) if args.split == "test" else None
    batch = cfg.train.eval_batch_size
    members, described = [], []
    for path, st, g, c in loaded:
        # a generator trained at one FOV diameter is scored at it unless --scale says otherwise
        scale_text = args.scale or ("auto" if c.data.fov_diameter is not None else "1")
        members.append(Member(with_tta(lambda x, g=g: predict(g, x, device, batch), args.tta), g.trained_fov,
                              ScaleSpec.parse(scale_text)))
        described.append({"source": str(Path(path).resolve()), "trained_on": c.data.dataset,
                          "epoch": int(st["epoch"]), "scale": scale_text, "trained_fov_diameter": g.trained_fov,
                          # what wrote the checkpoint (None: before it was recorded), and what trained its
                          # epochs before where other code resumed it; so for the environment it trained on
                          "code": st.get("code"), "earlier_code": st.get("earlier_code", []),
                          "environment": st.get("environment"),
                          "earlier_environments": st.get("earlier_environments", [])})
    threshold, source = args.threshold, "fixed"
    if args.val_threshold:
        # the threshold of the maps as they are scored: at the same scale, over the same views and members
        val = load_split(data, "val")
        val_maps, _ = ensemble_predictions(members, val, batch)
        threshold, source = score_maps(val_maps, val, 0.5)[0]["best_f1_threshold"], "validation best F1"
    probs, factors = ensemble_predictions(members, split, batch)
    for d, f in zip(described, factors, strict=True):
        d["scale_factors"] = [round(x, 4) for x in f]
    m, scores, targets = score_maps(probs, split, threshold, each=True)
    m.update(dataset=data.dataset, fov=fov_source(data, args.split), threshold_source=source, tta=args.tta,
             **({PEOPLE: trained_on} if trained_on else {}), **({COPIES: copied} if copied else {}),
             evaluation_environment=environment_record(device))
    if len(loaded) == 1:
        m.update(described[0])
    else:
        m["members"] = described
    for sub in (PROBABILITIES, "binary"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for image_id, prob in zip(split.ids, probs, strict=True):
        save_map(out / PROBABILITIES / f"{image_id}.png", prob)
        save_mask(out / "binary" / f"{image_id}.png", prob >= threshold)
    made = f"epoch {state['epoch']}" if len(loaded) == 1 else f"mean of {len(loaded)} generators"
    write_report(out, m, scores, targets, f"{data.dataset} {args.split}: {made}")
    save_worst(out, split, probs, m["per_image"], args.previews, threshold)
    return m


def trained_here(loaded: list, data: DataConfig) -> list[tuple[str, Any]]:
    """(path, config) of the loaded checkpoints trained on this dataset (its dataset and root): what their training
    pool held is to be compared with its test split (not another dataset's, scored across, nor synthetic data's)."""
    return [(path, c) for path, _, _, c in loaded
            if c.data.dataset != "synthetic" and (c.data.dataset, c.data.root) == (data.dataset, data.root)]


def trained_people(loaded: list, data: DataConfig, test: Split) -> str | None:
    """The note on the test split's people whose other images are in the training pool a checkpoint was trained
    from (its data.person)."""
    for path, c in trained_here(loaded, data):
        try:
            training = [it.id for it in pool_files(c.data, "training")]
        except DataError:  # the training pool moved or gone since: nothing to compare with
            continue
        note = shared_people_note(training, test.ids, c.data)
        if note:
            return note + (f" ({path})" if len(loaded) > 1 else "")
    return None


def trained_copies(loaded: list, data: DataConfig) -> str | None:
    """The note on the test split's photographs whose file (its bytes) is also in the training pool, under another
    name: vgan.train reads its training pool only, so a copy made by hand across the two is first met here
    (vgan.prepare refuses one; tuner.run says it). The checkpoints trained here share that pool: read once."""
    here = trained_here(loaded, data)
    if not here:
        return None
    try:
        found = [names for names in copies(here[0][1].data, ("training", "test"))
                 if {pool for _, pool in names} == {"training", "test"}]
    except DataError:  # the training pool moved or gone since: nothing to compare with
        return None
    if not found:
        return None
    n = len(found)
    return (f"{n} of the test split's photographs {'is' if n == 1 else 'are'} also in the training pool, as the same "
            f"file under another name ({shown_copies(found)}): {'its' if n == 1 else 'their'} scores are of "
            "photographs the models trained on; leave one copy out")


MAX_NOISE_SIDE = 4096  # past a large fundus photograph's side: a typo, not a drawing (100000 asked for 120 GB)


def draw_noise(generator, args: argparse.Namespace, device: torch.device, out: Path) -> dict[str, Any]:
    """Feed the generator Gaussian noise (standard normal after its input normalisation)."""
    h, w = args.noise_size
    gen = torch.Generator().manual_seed(args.seed)
    noise = generator.mean.cpu() + generator.std.cpu() * torch.randn(args.noise, 3, h, w, generator=gen)
    probs = predict(generator, noise, device).cpu().numpy()[:, 0]
    (out / "noise").mkdir(parents=True, exist_ok=True)
    from PIL import Image

    for i, prob in enumerate(probs):
        shown = noise[i].clamp(0, 1).permute(1, 2, 0).numpy()
        panel = np.concatenate([shown, np.repeat(prob[..., None], 3, axis=2)], axis=1)
        Image.fromarray(to_uint8(panel)).save(out / "noise" / f"noise_{i:02d}.png")
    print(f"wrote {args.noise} noise drawings to {out / 'noise'}")
    return {}


def _main(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    if args.noise is not None:
        h, w = args.noise_size
        if args.checkpoint is None:
            raise ConfigError("--noise needs --checkpoint")
        if args.noise < 1:
            raise ConfigError("--noise must be at least 1")
        if not (1 <= h <= MAX_NOISE_SIDE and 1 <= w <= MAX_NOISE_SIDE):
            raise ConfigError(f"--noise-size {h} {w}: each side must be 1 to {MAX_NOISE_SIDE} pixels")
        if args.tta != TTA_DEFAULT:
            raise ConfigError(f"--tta {args.tta}: --noise draws each map from noise once (leave --tta out)")
        if len(args.checkpoint) > 1:
            raise ConfigError(f"--noise draws from one generator: {len(args.checkpoint)} checkpoints given")
    check_threshold(args.threshold)
    if args.previews < 0:
        raise ConfigError(f"--previews {args.previews}: give a number of images, 0 for none")
    if args.scale is not None:
        ScaleSpec.parse(args.scale)  # also beside --predictions: a maps folder is not scaled, but 0 is wrong
    writable_folder(Path(args.out), "--out")
    m = run_checkpoint(args) if args.checkpoint else run_predictions(args)
    if m:
        keys = [k for k in SELECTABLE if k in m and k not in BY_WIDTH]  # the widths' figures: a line of their own
        views = f", --tta {m['tta']}" if m.get("tta", TTA_DEFAULT) != TTA_DEFAULT else ""
        if "members" in m:
            views += f", mean of {len(m['members'])} generators"
        print(f"{m['dataset']} {m['split']} ({m['n_images']} images{fov_note(m['fov'])}{views}, "
              f"threshold {m['threshold']:.4f}): "
              + "  ".join(f"{k} {m[k]:.4f}" for k in keys))
        several = len(m["per_image"]) > 1
        shown = [k for k in keys if k in m[INTERVALS]]
        if several and shown:
            print(f"{m[INTERVALS]['confidence']:.0%} intervals over the images (drawn with replacement, "
                  f"{m[INTERVALS]['draws']:,} times; nothing of training's own noise): "
                  + "  ".join(f"{k} {interval_text(m[INTERVALS][k])}" for k in shown))
        widths = [k for k in BY_WIDTH if k in m]
        if widths:  # their own line, each beside its interval: thin against thick read at a glance
            thin = sum(r["thin_vessel_px"] for r in m["per_image"]) / max(m["n_vessel_pixels"], 1)
            print(f"by vessel width ({thin:.0%} of the labelled vessel pixels thin, under {THIN_BELOW} px across; "
                  "intervals as above): " + "  ".join(
                      f"{k} {m[k]:.4f}" + (f" {interval_text(m[INTERVALS][k])}" if several and k in m[INTERVALS]
                                           else "") for k in widths))
        converted = converted_text(m.get(CONVERTED, {}), m["n_images"])
        if converted:
            print(f"note: {converted}")
        for key in (PEOPLE, COPIES):
            if m.get(key):
                print(f"note: {m[key]}")
        if m.get(OBSERVER):
            print("note: another observer's labels, scored as binary maps: AUC-ROC and AUC-PR are those of their "
                  "one operating point (AUC-ROC the mean of sensitivity and specificity), not of a ranking")
        worst = worst_first(m["per_image"])[0]
        if worst["auc_roc"] is not None and len(m["per_image"]) > 1:
            print(f"lowest AUC-ROC: {worst['id']} {worst['auc_roc']:.4f} (F1 {worst['f1']:.4f}; every image in "
                  f"per_image.csv, worst first)")
        if PAIRS not in m:
            print(f"no {PAIRS} kept: {m['n_images']} images x {m['n_vessel_pixels']} vessel pixels pass "
                  f"{vgan_metrics.PAIR_WORK_LIMIT:,} and the maps take more than {vgan_metrics.FEW_VALUES} values: "
                  "vgan.compare will give this evaluation's AUC-ROC an interval of its mean per-image gain, not of "
                  "its pooled gain")
        print(f"wrote {Path(args.out) / 'metrics.json'}")


def interval_text(lo_hi: Sequence[float]) -> str:
    return f"[{lo_hi[0]:.4f}, {lo_hi[1]:.4f}]"


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, "vgan.evaluate")


if __name__ == "__main__":
    exit_program(main())
