"""Vessel-segmentation metrics the way the literature computes them.

Pixels inside the field-of-view mask, pooled over all images of a split (not averaged per
image or per batch). Thresholded metrics use `score >= threshold`. Two models scored on the same
images are compared by a bootstrap interval of their per-image gains (`vgan.compare`, the registry's
promotion gate), and of their pooled gain where the pooled metric can be taken of any draw of images: AUC-ROC
from `pair_counts`, the thresholded metrics from each image's confusion counts, clDice (the vessels'
centrelines, `skeleton`) from each image's centreline counts, the sensitivity on thin and on thick vessels
(`thin_vessels`) from each image's counts of both, their AUC-ROC (`calibre_aucs`) from their pair counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METRIC_NAMES = ("auc_roc", "auc_pr", "average_precision", "f1", "accuracy", "sensitivity", "specificity")
CLDICE = "cldice"  # of the vessels' centrelines (`centreline_counts`)
THIN, THICK = "thin_sensitivity", "thick_sensitivity"  # of the label's vessels by width (`thin_vessels`)
THIN_AUC, THICK_AUC = "thin_auc_roc", "thick_auc_roc"  # and their AUC-ROC against the background (`calibre_aucs`)
# what may select a checkpoint, a trial, a registered version (each epoch's validation scores it; clDice and the
# thin vessels' AUC-ROC only where selected, as they are taken on the host)
SELECTABLE = (*METRIC_NAMES, CLDICE, THIN_AUC)
# what an evaluation scores (vgan.evaluate; files before 2026-12-06 lack clDice, before 2026-12-07 the widths')
BY_WIDTH = (THIN, THICK, THIN_AUC, THICK_AUC)
SCORED = tuple(dict.fromkeys((*SELECTABLE, *BY_WIDTH)))
DISPLAY_NAMES = {"auc_roc": "AUC-ROC", "auc_pr": "AUC-PR", "average_precision": "average precision", "f1": "F1",
                 "accuracy": "accuracy", "sensitivity": "sensitivity", "specificity": "specificity", CLDICE: "clDice",
                 THIN: "thin-vessel sensitivity", THICK: "thick-vessel sensitivity", THIN_AUC: "thin-vessel AUC-ROC",
                 THICK_AUC: "thick-vessel AUC-ROC"}
BOOTSTRAP_SAMPLES = 10_000


def fov_pixels(probs, labels, masks) -> tuple[np.ndarray, np.ndarray]:
    """Pool the FOV pixels of several images: returns (scores float64, targets bool), 1-D."""
    if not (len(probs) == len(labels) == len(masks)):
        raise ValueError(f"counts differ: {len(probs)} probability maps, {len(labels)} labels, {len(masks)} masks")
    scores, targets = [], []
    for p, y, m in zip(probs, labels, masks, strict=True):
        p, y, m = np.asarray(p), np.asarray(y), np.asarray(m)
        if not (p.shape == y.shape == m.shape):
            raise ValueError(f"shapes differ: probability {p.shape}, label {y.shape}, mask {m.shape}")
        inside = m > 0.5
        scores.append(p[inside].astype(np.float64))
        targets.append(y[inside] > 0.5)
    return np.concatenate(scores), np.concatenate(targets)


@dataclass
class Curves:
    fpr: np.ndarray
    tpr: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    pr_thresholds: np.ndarray


def ranked_counts(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positives, true positives, threshold) at each distinct score, highest score first: the
    counts of scikit-learn's `confusion_matrix_at_thresholds`, equal to the bit. Counted from plain sorts
    (the distinct scores, each class's scores), not scikit-learn's stable argsort of all pixels: on
    DRIVE's 4.5 M test pixels both of scikit-learn's curves take 1.2-1.7 s, these 0.06-0.35 s."""
    if not np.isfinite(scores).all():
        raise ValueError("scores hold NaN or infinity")
    targets = np.asarray(targets, dtype=bool)  # 0/1 labels too; never read as indices
    rising = np.unique(scores)
    # numpy's binary search narrows on the previous key when the keys rise
    above = [(c.size - np.searchsorted(c, rising, side="left"))[::-1].astype(np.float64)
             for c in (np.sort(scores[~targets]), np.sort(scores[targets]))]
    return above[0], above[1], rising[::-1]


def roc(fps: np.ndarray, tps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's `roc_curve` (fpr, tpr) of `ranked_counts`, with its drop_intermediate: points between
    collinear neighbours are left out, which does not change the area."""
    if fps.size > 2:
        corner = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        fps, tps = fps[corner], tps[corner]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    return fps / fps[-1], tps / tps[-1]


def curves(scores: np.ndarray, targets: np.ndarray) -> Curves:
    """ROC and precision-recall curves, equal to scikit-learn's `roc_curve` and `precision_recall_curve`."""
    if targets.all() or not targets.any():
        raise ValueError("metrics need both vessel and background pixels inside the FOV")
    fps, tps, thresholds = ranked_counts(scores, targets)
    fpr, tpr = roc(fps, tps)
    selected = tps + fps  # never 0: each threshold is some pixel's score
    # recall falls along the curve, ending at scikit-learn's (recall 0, precision 1)
    precision = np.r_[(tps / selected)[::-1], 1.0]
    recall = np.r_[(tps / tps[-1])[::-1], 0.0]
    return Curves(fpr, tpr, precision, recall, thresholds[::-1])


def threshold_metrics(scores: np.ndarray, targets: np.ndarray, threshold: float) -> dict[str, float]:
    pred = scores >= threshold
    tp = float(np.count_nonzero(pred & targets))
    fp = float(np.count_nonzero(pred & ~targets))
    fn = float(np.count_nonzero(~pred & targets))
    return counts_metrics(tp, fp, fn, float(targets.size), threshold)


def counts_metrics(tp: float, fp: float, fn: float, total: float, threshold: float) -> dict[str, float]:
    """F1, accuracy, sensitivity and specificity from the confusion counts at `threshold`."""
    tn = total - tp - fp - fn
    return {
        "threshold": float(threshold),
        "f1": 2 * tp / max(2 * tp + fp + fn, 1.0),
        "accuracy": (tp + tn) / max(total, 1),
        "sensitivity": tp / max(tp + fn, 1.0),
        "specificity": tn / max(tn + fp, 1.0),
    }


def best_f1_threshold(c: Curves) -> float:
    """The threshold maximising F1 on these curves (choose it on validation, apply it to test)."""
    p, r = c.precision[:-1], c.recall[:-1]
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
    return float(c.pr_thresholds[int(np.argmax(f1))])


def compute_metrics(scores: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUC-ROC, AUC-PR (trapezoid), average precision and thresholded metrics, plus the
    best-F1 threshold of these pixels (`best_f1_threshold`, for choosing on validation)."""
    c = curves(scores, targets)
    out = {
        "auc_roc": float(np.trapezoid(c.tpr, c.fpr)),
        # recall decreases along the PR curve, hence the minus signs.
        "auc_pr": float(-np.trapezoid(c.precision, c.recall)),
        "average_precision": float(-np.sum(np.diff(c.recall) * c.precision[:-1])),
    }
    out.update(threshold_metrics(scores, targets, threshold))
    out["best_f1_threshold"] = best_f1_threshold(c)
    return out


def histogram_metrics(scores, targets, threshold: float = 0.5, bins: int = 2**20) -> dict[str, float]:
    """`compute_metrics` on the scores' device, from histograms instead of a sort.

    scores (float in [0, 1]) and targets (bool) are 1-D torch tensors, the pooled FOV pixels.
    Scores are binned at 1/bins: ROC and PR points are taken at the bin edges, and pixels
    sharing a bin count as ties, so the curves (and AUCs) equal the exact ones up to the
    positive/negative pairs that fall in one bin (below 1e-4 at the default 2**20 bins for
    continuous scores; exact for 8-bit maps). Only a few scalars leave the device.
    """
    import torch

    if targets.all() or not targets.any():
        raise ValueError("metrics need both vessel and background pixels inside the FOV")
    s = scores.float()
    k = (s * bins).long().clamp_(0, bins - 1)
    pos = torch.bincount(k[targets], minlength=bins).double()
    neg = torch.bincount(k[~targets], minlength=bins).double()
    # thresholds from high to low: cumulative true and false positives at each bin edge
    tp = torch.cat([pos.new_zeros(1), pos.flip(0).cumsum(0)])
    fp = torch.cat([neg.new_zeros(1), neg.flip(0).cumsum(0)])
    n_pos, n_neg = tp[-1], fp[-1]
    tpr, fpr = tp / n_pos, fp / n_neg
    auc_roc = torch.trapezoid(tpr, fpr)
    seen = (tp + fp) > 0  # thresholds that select at least one pixel (sklearn's PR points)
    precision = torch.where(seen, tp / (tp + fp).clamp_min(1), torch.ones_like(tp))
    recall = tp / n_pos
    keep = seen | (torch.arange(len(tp), device=tp.device) == 0)  # plus sklearn's (recall 0, precision 1)
    p, r = precision[keep], recall[keep]
    auc_pr = torch.trapezoid(p, r)
    ap = ((r[1:] - r[:-1]) * p[1:]).sum()
    f1 = torch.where(p + r > 0, 2 * p * r / (p + r).clamp_min(1e-12), torch.zeros_like(p))
    best_edge = torch.argmax(f1[1:]) + 1  # edge i (from the top) is the threshold (bins - i) / bins
    edges = torch.arange(len(tp), device=tp.device)[keep]
    pred = s >= threshold
    counts = torch.stack([(pred & targets).sum(), (pred & ~targets).sum(), (~pred & targets).sum()]).double()
    values = torch.stack([auc_roc, auc_pr, ap, (bins - edges[best_edge]).double() / bins,
                          counts[0], counts[1], counts[2]]).tolist()  # the one host sync
    auc_roc, auc_pr, ap, best_threshold, tp_t, fp_t, fn_t = values
    return {"auc_roc": auc_roc, "auc_pr": auc_pr, "average_precision": ap,
            **counts_metrics(tp_t, fp_t, fn_t, float(targets.numel()), threshold),
            "best_f1_threshold": best_threshold}


CENTRELINE_KEYS = ("cl_precision", "cl_sensitivity", "skeleton_px", "label_skeleton_px")  # a row's clDice counts
WIDTH_PX = {THIN: "thin_vessel_px", THICK: "thick_vessel_px"}  # a row's labelled vessel pixels of each width
WIDTH_OF = {THIN_AUC: THIN, THICK_AUC: THICK}  # the width whose pixels each width's AUC-ROC ranks


def per_image_metrics(probs, labels, masks, threshold: float = 0.5, centrelines: np.ndarray | None = None,
                      thin: list[np.ndarray] | None = None) -> list[dict[str, float | None]]:
    """Each image's metrics on its own FOV pixels, F1, clDice and the rest at `threshold`: which images a model
    fails on (the reported figures stay the pooled ones). An image whose FOV holds vessels only, or none,
    has no curves: its AUCs are None; one without a labelled vessel has no clDice, one without a thin (thick)
    vessel no thin (thick) sensitivity and AUC-ROC. `centrelines`, `thin`: the images' `image_centrelines`
    and `label_thin_vessels`, where they are taken already."""
    if centrelines is None or thin is None:
        on_labels = label_centrelines(labels, masks)
        centrelines = image_centrelines(probs, labels, masks, threshold, on_labels) if centrelines is None \
            else centrelines
        thin = label_thin_vessels(labels, masks, on_labels) if thin is None else thin
    calibres = image_calibres(probs, labels, masks, threshold, thin)
    out = []
    for (p, y, m, t), (kept_pred, pred_px, kept_label, label_px), widths in zip(
            zip(probs, labels, masks, thin, strict=True), centrelines.tolist(), calibres, strict=True):
        scores, targets = fov_pixels([p], [y], [m])
        row: dict[str, float | None] = dict.fromkeys(("auc_roc", "auc_pr", "average_precision"))
        if targets.any() and not targets.all():
            full = compute_metrics(scores, targets, threshold)
            row.update((k, full[k]) for k in row)
        row.update(threshold_metrics(scores, targets, threshold))
        del row["threshold"]  # the split's, one for all
        row.update(n_fov_pixels=int(scores.size), vessel_fraction=float(targets.mean()) if targets.size else 0.0)
        # the counts come back from these exactly (`pooled_of_images`), as the confusion counts do
        precision, sensitivity = (float(x) for x in topology_shares(kept_pred, pred_px, kept_label, label_px))
        row.update(cldice=float(harmonic_mean(precision, sensitivity)) if label_px else None,
                   cl_precision=precision, cl_sensitivity=sensitivity, skeleton_px=pred_px, label_skeleton_px=label_px)
        row.update(calibre_sensitivities(widths), **{WIDTH_PX[THIN]: int(widths[1]), WIDTH_PX[THICK]: int(widths[3])})
        row.update(calibre_aucs([p], [y], [m], [t]))
        out.append(row)
    return out


# The 8 neighbours of a pixel as (row, column) offsets, bit k of a neighbourhood's code for the k-th: east first,
# anticlockwise (scikit-image's `thin` order, whose rules below are Guo and Hall's)
NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def _thinning_tables() -> tuple[np.ndarray, np.ndarray]:
    """Guo and Hall's (1989) thinning rules as two lookup tables of a pixel's neighbourhood code (True: the
    pixel goes in that subiteration): one 8-connected run of neighbours around it (so no path is cut), two or
    three of its neighbour pairs held (not an end, not inside), and the subiteration's side (south-east, then
    north-west). As scikit-image's `thin` builds them."""
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    crossings = sum((bits[:, i] == 0) & ((bits[:, i + 1] | bits[:, (i + 2) % 8]) == 1) for i in (0, 2, 4, 6))
    n1 = sum(bits[:, k] | bits[:, k - 1] for k in (1, 3, 5, 7))
    n2 = sum(bits[:, k] | bits[:, (k + 1) % 8] for k in (1, 3, 5, 7))
    kept = (crossings == 1) & np.isin(np.minimum(n1, n2), (2, 3))
    first = kept & ~(((bits[:, 1] | bits[:, 2] | (1 - bits[:, 7])) & bits[:, 0]) == 1)
    second = kept & ~(((bits[:, 5] | bits[:, 6] | (1 - bits[:, 3])) & bits[:, 4]) == 1)
    return first, second


THINNING = _thinning_tables()


def skeleton(mask: np.ndarray) -> np.ndarray:
    """The centrelines of a binary map (H, W): one pixel wide (but for a 2x2 block where vessels cross), each
    8-connected piece kept in one piece and its ends kept (Guo and Hall's thinning, pixel for pixel
    scikit-image's `thin` on DRIVE's labels and V-GAN's maps). Only the pixels at the shape's
    edge are looked at in each pass, so a map of wide blobs (an untrained model's) costs its outline's pixels
    times its half-width, not its area's."""
    h, w = mask.shape
    img = np.zeros((h + 2, w + 2), dtype=bool)  # a frame of background: every pixel has 8 neighbours
    img[1:-1, 1:-1] = mask
    flat = img.ravel()
    offsets = np.array([dy * (w + 2) + dx for dy, dx in NEIGHBOURS])
    weights = 1 << np.arange(8)
    inside = np.flatnonzero(flat)
    edge = inside[~flat[inside[:, None] + offsets].all(axis=1)]  # a pixel with a neighbour of background
    while True:
        removed = False
        for table in THINNING:
            if not edge.size:
                break
            going = table[flat[edge[:, None] + offsets] @ weights]
            if going.any():
                gone = edge[going]
                flat[gone] = False
                around = (gone[:, None] + offsets).ravel()
                edge = np.union1d(edge[~going], around[flat[around]])
                removed = True
        if not removed:
            return img[1:-1, 1:-1].copy()


def centreline_counts(pred: np.ndarray, label: np.ndarray, on_label: np.ndarray | None = None
                      ) -> tuple[int, int, int, int]:
    """clDice's counts of a binary map and its label (H, W, each cut to the FOV): the map's centreline pixels
    inside the labelled vessels, the map's centreline pixels, the label's centreline pixels inside the map's
    vessels, the label's centreline pixels. `on_label`: the label's `skeleton`, where it is taken already."""
    on_pred = skeleton(pred)
    on_label = skeleton(label) if on_label is None else on_label
    return (int((on_pred & label).sum()), int(on_pred.sum()), int((on_label & pred).sum()), int(on_label.sum()))


def topology_shares(kept_pred, pred_px, kept_label, label_px) -> tuple[np.ndarray, np.ndarray]:
    """Topology precision (the map's centrelines inside labelled vessels) and sensitivity (the label's centrelines
    the map covers) of `centreline_counts` (numbers, or arrays of them): 0 where there is no centreline."""
    kept_pred, pred_px, kept_label, label_px = (np.asarray(x, dtype=np.float64)
                                                for x in (kept_pred, pred_px, kept_label, label_px))
    return (np.divide(kept_pred, pred_px, out=np.zeros_like(pred_px), where=pred_px > 0),
            np.divide(kept_label, label_px, out=np.zeros_like(label_px), where=label_px > 0))


def harmonic_mean(a, b):
    both = np.asarray(a, dtype=np.float64) + b
    return np.divide(2 * np.multiply(a, b), both, out=np.zeros_like(both), where=both > 0)


def cldice(kept_pred, pred_px, kept_label, label_px):
    """clDice (Shit et al., CVPR 2021) of `centreline_counts` (numbers, or arrays of them: one value each): the
    harmonic mean of its `topology_shares`. A vessel the map breaks or misses costs sensitivity however thin it
    is, where pixel F1 barely moves; spurious branches cost precision. 0 where the map has no vessel."""
    return harmonic_mean(*topology_shares(kept_pred, pred_px, kept_label, label_px))


def fov_labels(labels, masks) -> list[np.ndarray]:
    """Each image's binary label cut to its FOV, labels and masks read as fov_pixels reads them."""
    return [(np.asarray(y) > 0.5) & (np.asarray(m) > 0.5) for y, m in zip(labels, masks, strict=True)]


def label_centrelines(labels, masks) -> list[np.ndarray]:
    """Each label's `skeleton`, cut to its FOV: for `image_centrelines` of labels scored again and again (a
    run's validation split, every epoch), taken once."""
    return [skeleton(y) for y in fov_labels(labels, masks)]


def image_centrelines(probs, labels, masks, threshold: float, on_labels: list[np.ndarray] | None = None
                      ) -> np.ndarray:
    """(N, 4) `centreline_counts` of each image, its map at `threshold`, map and label cut to its FOV.
    `on_labels`: the labels' `label_centrelines`, where they are taken already."""
    counts = []
    for i, (p, y, m) in enumerate(zip(probs, fov_labels(labels, masks), masks, strict=True)):
        pred = (np.asarray(p) >= threshold) & (np.asarray(m) > 0.5)
        counts.append(centreline_counts(pred, y, None if on_labels is None else on_labels[i]))
    return np.array(counts, dtype=np.int64).reshape(-1, 4)


THIN_BELOW = 3  # pixels across at its centreline: a thinner vessel is thin (DRIVE's capillaries are 1-2 px wide)


def thin_vessels(label: np.ndarray, on_label: np.ndarray) -> np.ndarray:
    """Which of a label's vessel pixels (H, W) lie in a thin vessel: each pixel takes the width of the vessel at its
    nearest centreline pixel (`on_label`: the label's `skeleton`), 2 d - 1 for a centreline pixel d from the
    background (1 px for a vessel 1 or 2 px wide, 3 for 3 or 4, ...), thin below `THIN_BELOW`."""
    from scipy import ndimage  # here, not at the top: vgan.config reads this module's names before any metric

    label = np.asarray(label, dtype=bool)
    if not on_label.any():
        return np.zeros_like(label)
    depth = ndimage.distance_transform_edt(label)
    _, (rows, cols) = ndimage.distance_transform_edt(~on_label, return_indices=True)
    return label & (2 * depth[rows, cols] - 1 < THIN_BELOW)


def label_thin_vessels(labels, masks, on_labels: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Each label's `thin_vessels`, label and centrelines cut to its FOV. `on_labels`: the labels'
    `label_centrelines`, where they are taken already."""
    if on_labels is None:
        on_labels = label_centrelines(labels, masks)
    return [thin_vessels(y, on_label) for y, on_label in zip(fov_labels(labels, masks), on_labels, strict=True)]


def calibre_counts(pred: np.ndarray, label: np.ndarray, thin: np.ndarray) -> tuple[int, int, int, int]:
    """A binary map's hits on a label's thin vessels (`thin_vessels`), those vessels' pixels, its hits on the thick
    ones, their pixels (each H, W, cut to the FOV)."""
    thick = label & ~thin
    return int((pred & thin).sum()), int(thin.sum()), int((pred & thick).sum()), int(thick.sum())


def image_calibres(probs, labels, masks, threshold: float, thin: list[np.ndarray] | None = None) -> np.ndarray:
    """(N, 4) `calibre_counts` of each image, its map at `threshold`, map and label cut to its FOV.
    `thin`: the labels' `label_thin_vessels`, where they are taken already."""
    if thin is None:
        thin = label_thin_vessels(labels, masks)
    counts = []
    for p, y, m, t in zip(probs, fov_labels(labels, masks), masks, thin, strict=True):
        counts.append(calibre_counts((np.asarray(p) >= threshold) & (np.asarray(m) > 0.5), y, t))
    return np.array(counts, dtype=np.int64).reshape(-1, 4)


def calibre_sensitivities(calibres: np.ndarray) -> dict[str, float | None]:
    """Thin- and thick-vessel sensitivity of `image_calibres` counts summed over images (one row, or several
    pooled as pixels are); None for a width no labelled vessel has."""
    thin_hit, thin_px, thick_hit, thick_px = np.asarray(calibres, dtype=np.int64).reshape(-1, 4).sum(axis=0)
    return {THIN: float(thin_hit / thin_px) if thin_px else None,
            THICK: float(thick_hit / thick_px) if thick_px else None}


def twice_ranked_above(background: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """For each score, the pairs it makes with `background`'s scores (sorted) that rank it above, twice, a tie once:
    twice its terms of the Mann-Whitney U."""
    return np.searchsorted(background, scores, "left") + np.searchsorted(background, scores, "right")


def auc_against(background: np.ndarray, positives: np.ndarray) -> float | None:
    """AUC-ROC of `positives`' scores against `background`'s (sorted): the share of their pairs ranked positive
    first, a tie counting half (the Mann-Whitney U, which is the ROC curve's area); None where a class is empty.
    One sort of the background serves each class ranked against it."""
    if not background.size or not positives.size:
        return None
    return float(twice_ranked_above(background, positives).sum(dtype=np.float64)
                 / (2.0 * positives.size * background.size))


def calibre_aucs(probs, labels, masks, thin: list[np.ndarray]) -> dict[str, float | None]:
    """Thin- and thick-vessel AUC-ROC of the maps, pooled over their FOV pixels: how well they rank a thin (thick)
    vessel's pixel above a background pixel, at no threshold. The other width's pixels are in neither class; None
    for a width no labelled vessel has. `thin`: the labels' `label_thin_vessels`."""
    background, thins, thicks = [], [], []
    for p, y, m, t in zip(probs, fov_labels(labels, masks), masks, thin, strict=True):
        p = np.asarray(p, dtype=np.float64)
        background.append(p[(np.asarray(m) > 0.5) & ~y])
        thins.append(p[t])
        thicks.append(p[y & ~t])
    background = np.sort(np.concatenate(background))
    return {THIN_AUC: auc_against(background, np.concatenate(thins)),
            THICK_AUC: auc_against(background, np.concatenate(thicks))}


def pooled_cldice(centrelines: np.ndarray) -> float:
    """The clDice of several images: their `image_centrelines` counts summed, then `cldice` (as the pixel metrics
    pool pixels, not average images)."""
    return float(cldice(*np.asarray(centrelines).sum(axis=0)))


PAIRS, INTERVALS = "pair_counts", "intervals"  # their keys in vgan.evaluate's metrics.json
FEW_VALUES = 4096  # distinct scores counted by value in pair_counts
PAIR_WORK_LIMIT = 2 * 10**8  # images x vessel pixels: DRIVE's test split is 1.1e7 (0.5 s here); past it, minutes


def pair_counts(probs, labels, masks, vessels: list[np.ndarray] | None = None) -> np.ndarray | None:
    """Pooled AUC-ROC's pairs of pixels by image: entry (i, j) counts the pairs of a vessel pixel of image i and a
    background pixel of image j (FOV pixels) that the maps rank vessel first, twice, a tie once (twice the
    Mann-Whitney U). The pooled AUC-ROC of any multiset of the images, image k taken w[k] times (a bootstrap
    draw), is w C w / (2 (w . vessels)(w . background)) (`pooled_auc_roc`): `vgan.compare`'s interval of the
    pooled gain. Exact (int64). Where the work (images x vessel pixels) passes PAIR_WORK_LIMIT, counted by value
    if the scores take few values (`counted_by_value`), else None. `vessels`: each image's vessel pixels to pair
    (H, W, inside its FOV: its thin ones, for `calibre_aucs`' thin-vessel AUC-ROC), in place of all of them."""
    pos, neg = [], []
    for i, (p, y, m) in enumerate(zip(probs, labels, masks, strict=True)):
        scores, targets = fov_pixels([p], [y], [m])
        pos.append(np.sort(scores[targets] if vessels is None else np.asarray(p, dtype=np.float64)[vessels[i]]))
        neg.append(np.sort(scores[~targets]))
    n = len(pos)
    if n * sum(x.size for x in pos) > PAIR_WORK_LIMIT:
        return counted_by_value(pos, neg)
    every_vessel, owner = np.concatenate(pos), np.repeat(np.arange(n), [x.size for x in pos])
    order = np.argsort(every_vessel, kind="stable")  # sorted queries: numpy's search narrows on the last
    every_vessel, owner = every_vessel[order], owner[order]
    counts = np.zeros((n, n), np.int64)
    for j, background in enumerate(neg):
        counts[:, j] = np.bincount(owner, weights=twice_ranked_above(background, every_vessel),
                                   minlength=n).round().astype(np.int64)
    return counts


def counted_by_value(pos: list[np.ndarray], neg: list[np.ndarray]) -> np.ndarray | None:
    """`pair_counts` from each image's histogram of its scores' distinct values, where they are few (8-bit maps:
    one sort of all pixels, whatever the images' number); None where they are not."""
    n = len(pos)
    if np.unique(np.concatenate([pos[0], neg[0]])).size > FEW_VALUES:
        return None
    values, inverse = np.unique(np.concatenate([*pos, *neg]), return_inverse=True)
    if values.size > FEW_VALUES:
        return None
    owner = np.repeat(np.arange(2 * n), [x.size for x in (*pos, *neg)])
    hist = np.bincount(owner * values.size + inverse, minlength=2 * n * values.size).reshape(2 * n, -1)
    vessels, background = hist[:n], hist[n:]
    below = np.cumsum(background, axis=1) - background  # each image's background pixels below each value
    return vessels @ (2 * below + background).T


def pooled_auc_roc(counts: np.ndarray, vessels: np.ndarray, background: np.ndarray,
                   weights: np.ndarray) -> np.ndarray:
    """The pooled AUC-ROC of each draw of images (`weights`: (draws, images), how often each image is taken), from
    `pair_counts` and each image's vessel and background pixel counts; NaN for a draw without both."""
    w = np.asarray(weights, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((w @ counts.astype(np.float64)) * w).sum(axis=1) / (2 * (w @ vessels) * (w @ background))


def pooled_counts_metric(metric: str, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, total: np.ndarray,
                         weights: np.ndarray) -> np.ndarray:
    """A thresholded metric (f1, accuracy, sensitivity, specificity) pooled over each draw of images, from each
    image's confusion counts at the threshold (`counts_metrics` on the drawn sums)."""
    w = np.asarray(weights, dtype=np.float64)
    tp, fp, fn, total = (w @ np.asarray(x, dtype=np.float64) for x in (tp, fp, fn, total))
    tn = total - tp - fp - fn
    if metric == "f1":
        return 2 * tp / np.maximum(2 * tp + fp + fn, 1.0)
    if metric == "accuracy":
        return (tp + tn) / np.maximum(total, 1.0)
    if metric == "sensitivity":
        return tp / np.maximum(tp + fn, 1.0)
    if metric == "specificity":
        return tn / np.maximum(tn + fp, 1.0)
    raise ValueError(f"{metric}: not a thresholded metric")


THRESHOLDED_METRICS = ("f1", "accuracy", "sensitivity", "specificity")  # of the confusion counts at the threshold
AT_THRESHOLD = (*THRESHOLDED_METRICS, CLDICE, THIN, THICK)  # what moves with the threshold
# the pooled metrics any draw of the images gives (the AUC-ROCs with their pair counts)
POOLED_BY_IMAGE = ("auc_roc", *THRESHOLDED_METRICS, CLDICE, THIN, THICK, THIN_AUC, THICK_AUC)
# What each pooled metric of a draw of images is taken from in the images' rows (`pooled_of_images`)
ROW_COUNTS = {"auc_roc": ("n_fov_pixels", "vessel_fraction"), CLDICE: CENTRELINE_KEYS,
              **dict.fromkeys(THRESHOLDED_METRICS, ("n_fov_pixels", "vessel_fraction", "sensitivity", "specificity")),
              **{width: (width, px) for width, px in WIDTH_PX.items()},
              **{auc: ("n_fov_pixels", "vessel_fraction", WIDTH_PX[width]) for auc, width in WIDTH_OF.items()}}
# Where an evaluation keeps each AUC-ROC's `pair_counts` (vgan.evaluate's metrics.json)
PAIR_KEYS = {"auc_roc": PAIRS, THIN_AUC: "thin_pair_counts", THICK_AUC: "thick_pair_counts"}


def pooled_of_images(metric: str, rows: list[dict], counts: np.ndarray | None = None):
    """The pooled metric as a function of how often each image is taken (weights (draws, images) -> (draws,)), from
    the images' `per_image_metrics` rows (FOV pixels, vessel fraction, and at the threshold sensitivity and
    specificity, whose confusion counts they give back exactly) and, for AUC-ROC, their `pair_counts`, both in one
    order; clDice from each image's centreline counts (read from its `CENTRELINE_KEYS`), the thin and thick
    vessels' sensitivity from its counts of each (`WIDTH_PX`), their AUC-ROC from that width's pair counts
    (`counts`: those of `PAIR_KEYS[metric]`). None where these do not
    give it: AUC-PR and average precision (their curves do not add up image by image), AUC-ROC without pair
    counts."""
    if metric == CLDICE:
        precision, sensitivity, pred_px, label_px = (np.array([r[k] for r in rows], dtype=np.float64)
                                                     for k in CENTRELINE_KEYS)
        kept_pred, kept_label = np.round(precision * pred_px), np.round(sensitivity * label_px)
        return lambda weights: cldice(*(np.asarray(weights, dtype=np.float64) @ x
                                        for x in (kept_pred, pred_px, kept_label, label_px)))
    if metric in WIDTH_PX:
        # an image without vessels of that width has no share (None): it adds no pixels to any draw
        share, px = (np.array([r[k] or 0 for r in rows], dtype=np.float64) for k in (metric, WIDTH_PX[metric]))
        hits = np.round(share * px)
        return lambda weights: np.divide(np.asarray(weights, dtype=np.float64) @ hits,
                                         np.maximum(np.asarray(weights, dtype=np.float64) @ px, 1.0))
    total = np.array([r["n_fov_pixels"] for r in rows], dtype=np.float64)
    vessels = np.round(np.array([r["vessel_fraction"] for r in rows], dtype=np.float64) * total)
    if metric == "auc_roc" and counts is not None:
        return lambda weights: pooled_auc_roc(counts, vessels, total - vessels, weights)
    if metric in WIDTH_OF and counts is not None:
        paired = np.array([r[WIDTH_PX[WIDTH_OF[metric]]] for r in rows], dtype=np.float64)
        return lambda weights: pooled_auc_roc(counts, paired, total - vessels, weights)
    if metric in THRESHOLDED_METRICS:
        tp = np.round(np.array([r["sensitivity"] for r in rows], dtype=np.float64) * vessels)
        fp = (total - vessels) - np.round(np.array([r["specificity"] for r in rows], dtype=np.float64)
                                          * (total - vessels))
        return lambda weights: pooled_counts_metric(metric, tp, fp, vessels - tp, total, weights)
    return None


def pooled_interval(of, images: int, confidence: float, seed: int = 0,
                    samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float]:
    """Percentile interval of one model's pooled metric (`of`: `pooled_of_images`'), the images drawn with
    replacement: how far the figure moves with the choice of test images (one run against none of
    `runs_pooled_interval`)."""
    return runs_pooled_interval([lambda weights: np.zeros(len(weights))], [of], images, confidence, seed, samples)


def runs_pooled_interval(baseline, candidate, images: int, confidence: float, seed: int = 0,
                         samples: int = BOOTSTRAP_SAMPLES, paired: bool = False) -> tuple[float, float]:
    """Percentile interval of the pooled gain, the way `runs_bootstrap_interval` draws: the images (all of them, as
    the pooled figure takes them) with replacement, jointly for both sides, and each side's runs (or pairs of
    runs). `baseline`, `candidate`: each run's pooled metric as a function of the image weights (draws, images) ->
    (draws,), as `pooled_of_images` gives it."""
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(images, np.full(images, 1 / images), size=samples)
    a, b = (np.stack([run(weights) for run in side], axis=1) for side in (baseline, candidate))  # (draws, runs)

    def drawn_mean(runs: np.ndarray) -> np.ndarray:
        k = runs.shape[1]
        return runs[:, 0] if k == 1 else (rng.multinomial(k, np.full(k, 1 / k), size=samples) * runs).sum(1) / k

    if paired and a.shape != b.shape:
        raise ValueError(f"paired runs need as many a side ({a.shape[1]} and {b.shape[1]})")
    gains = drawn_mean(b - a) if paired else drawn_mean(b) - drawn_mean(a)
    tail = (1 - confidence) / 2
    return float(np.nanquantile(gains, tail)), float(np.nanquantile(gains, 1 - tail))


def bootstrap_interval(gains: np.ndarray, confidence: float, seed: int = 0,
                       samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float]:
    """Percentile interval of the mean of paired gains, resampling the images with replacement (one run a side of
    `runs_bootstrap_interval`)."""
    gains = np.asarray(gains)
    return runs_bootstrap_interval(np.zeros((1, len(gains))), gains[None], confidence, seed, samples)


def runs_bootstrap_interval(baseline: np.ndarray, candidate: np.ndarray, confidence: float, seed: int = 0,
                            samples: int = BOOTSTRAP_SAMPLES, paired: bool = False) -> tuple[float, float]:
    """Percentile interval of the mean per-image gain of the candidate's runs over the baseline's (each an array
    (runs, images) of one metric, the same images in the same order), drawing with replacement each side's runs
    and, jointly for both, the images: training's noise (another seed, another model) and the images' both.
    `paired`: the i-th runs of both sides belong together (one generator with and without a change made after
    training, such as --tta): pairs of runs are drawn, and what the runs share cancels in each pair's gain. A side
    of one run is not drawn: with one a side, the images alone are."""
    rng = np.random.default_rng(seed)

    def drawn_mean(runs: np.ndarray) -> np.ndarray:  # (samples, images): k runs drawn, as how often each was drawn
        k = len(runs)
        return runs if k == 1 else rng.multinomial(k, np.full(k, 1 / k), size=samples) @ runs / k

    if paired and baseline.shape != candidate.shape:
        raise ValueError(f"paired runs need as many a side ({len(baseline)} and {len(candidate)})")
    n = baseline.shape[1]
    images = rng.integers(0, n, size=(samples, n))
    gains = drawn_mean(candidate - baseline) if paired else drawn_mean(candidate) - drawn_mean(baseline)
    means = np.take_along_axis(gains, images, axis=1).mean(axis=1)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))
