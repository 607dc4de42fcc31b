import re

import numpy as np
import pytest
from sklearn.metrics import auc, average_precision_score, f1_score, precision_recall_curve, roc_auc_score, roc_curve

from vgan.config import DataConfig
from vgan.data import read_pool
from vgan.images import read_probability
from vgan.metrics import (
    PAIR_WORK_LIMIT,
    bootstrap_interval,
    calibre_aucs,
    calibre_sensitivities,
    centreline_counts,
    cldice,
    compute_metrics,
    curves,
    fov_pixels,
    histogram_metrics,
    image_calibres,
    image_centrelines,
    label_thin_vessels,
    pair_counts,
    per_image_metrics,
    pooled_auc_roc,
    pooled_counts_metric,
    pooled_interval,
    pooled_of_images,
    runs_bootstrap_interval,
    runs_pooled_interval,
    skeleton,
    thin_vessels,
    threshold_metrics,
)


def reference_table(reference_root):
    """The scores V-GAN's maps must give, read from the shared README's table."""
    rows = {}
    for line in (reference_root / "README.md").read_text().splitlines():
        m = re.match(r"\|\s*(DRIVE|STARE)\s*\|(.*)\|\s*$", line)
        if m:
            nums = [float(x) for x in re.findall(r"\d\.\d+", m.group(2))]
            keys = ("auc_roc", "auc_pr", "average_precision", "f1", "accuracy", "sensitivity", "specificity")
            rows[m.group(1)] = dict(zip(keys, nums, strict=True))
    assert set(rows) == {"DRIVE", "STARE"}, "reference README table not found"
    return rows


def drive_test_maps(reference_root, drive_root, noise: float = 0.0):
    """V-GAN's maps of DRIVE's test images (255 distinct values; with noise N(0, noise), clipped, float32 as a
    generator's: continuous), with DRIVE's labels and masks."""
    test = read_pool(DataConfig(dataset="drive", root=str(drive_root)), "test")
    maps = np.stack([read_probability(reference_root / "DRIVE" / f"{i}.tif") for i in test.ids])
    if noise:
        maps = np.clip(maps + np.random.default_rng(0).normal(0, noise, maps.shape), 0, 1).astype(np.float32)
    return maps, test.labels[:, 0].numpy(), test.masks[:, 0].numpy()


def tied_scores(seed: int):
    """(scores, targets) of 20 000 pixels whose scores are rounded to 0.01: many ties."""
    rng = np.random.default_rng(seed)
    targets = rng.random(20000) < 0.15
    return np.round(np.clip(targets * 0.3 + rng.normal(0.4, 0.2, targets.size), 0, 1), 2), targets


@pytest.mark.parametrize("name, dataset, suffix", [("DRIVE", "drive", ".tif"), ("STARE", "stare", ".ppm")])
def test_vgan_reference_maps_score_the_published_values(name, dataset, suffix, reference_root, drive_root,
                                                        stare_root):
    root = drive_root if dataset == "drive" else stare_root
    test = read_pool(DataConfig(dataset=dataset, root=str(root)), "test")
    maps = [read_probability(reference_root / name / f"{i}{suffix}") for i in test.ids]
    scores, targets = fov_pixels(maps, test.labels[:, 0].numpy(), test.masks[:, 0].numpy())
    got = compute_metrics(scores, targets, 0.5)
    for key, value in reference_table(reference_root)[name].items():
        assert round(got[key], 4) == value, key


def test_whole_image_scoring_differs_from_fov(reference_root, drive_root):
    # The README warns whole-image AUC is inflated: our FOV restriction must matter.
    maps, labels, masks = drive_test_maps(reference_root, drive_root)
    whole = compute_metrics(*fov_pixels(maps, labels, np.ones_like(masks)))
    fov = compute_metrics(*fov_pixels(maps, labels, masks))
    assert whole["auc_roc"] > fov["auc_roc"] + 0.003


def test_against_scikit_learn_with_ties():
    scores, targets = tied_scores(0)
    m = compute_metrics(scores, targets)
    p, r, _ = precision_recall_curve(targets, scores)
    assert m["auc_roc"] == pytest.approx(roc_auc_score(targets, scores), abs=1e-12)
    assert m["average_precision"] == pytest.approx(average_precision_score(targets, scores), abs=1e-12)
    assert m["auc_pr"] == pytest.approx(auc(r, p), abs=1e-12)


def test_curves_are_scikit_learns_to_the_bit(reference_root, drive_root):
    cases = [tied_scores(3),
             (np.array([0.5, 0.5, 0.5]), np.array([True, False, True])),  # one threshold
             (np.array([0.2, 0.9]), np.array([0, 1]))]  # 0/1 labels are classes, not indices
    for noise in (0.0, 0.1):  # 255 distinct values; 2.6 M
        maps, labels, masks = drive_test_maps(reference_root, drive_root, noise)
        scores, targets = fov_pixels(maps, labels, masks)
        # fov_pixels' float64, and the noisy maps' float32 as the trainer's probabilities arrive
        cases.append((scores.astype(np.float32) if noise else scores, targets))
    for scores, targets in cases:
        c = curves(scores, targets)
        fpr, tpr, _ = roc_curve(targets, scores)
        precision, recall, thresholds = precision_recall_curve(targets, scores)
        for ours, theirs in ((c.fpr, fpr), (c.tpr, tpr), (c.precision, precision), (c.recall, recall),
                             (c.pr_thresholds, thresholds)):
            assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
    with pytest.raises(ValueError, match="NaN or infinity"):
        curves(np.array([0.1, np.nan]), np.array([True, False]))


def test_per_image_metrics_are_each_images_own(reference_root, drive_root):
    """V-GAN's DRIVE maps: each image's metrics are those of its FOV pixels alone, as scikit-learn gives them."""
    maps, labels, masks = drive_test_maps(reference_root, drive_root)
    rows = per_image_metrics(maps, labels, masks, 0.5)
    assert len(rows) == 20
    for row, p, y, k in zip(rows, maps, labels, masks, strict=True):
        scores, targets = fov_pixels([p], [y], [k])
        assert row["auc_roc"] == pytest.approx(roc_auc_score(targets, scores), abs=1e-12)
        assert row["average_precision"] == pytest.approx(average_precision_score(targets, scores), abs=1e-12)
        assert row["f1"] == f1_score(targets, scores >= 0.5)
        assert row["n_fov_pixels"] == int((k > 0.5).sum()) and row["vessel_fraction"] == targets.mean()
    pooled = compute_metrics(*fov_pixels(maps, labels, masks), 0.5)["auc_roc"]
    aucs = [r["auc_roc"] for r in rows]
    assert min(aucs) < pooled < max(aucs)


def test_an_image_of_one_class_has_no_aucs_but_its_counts():
    scores = np.array([[0.9, 0.2], [0.6, 0.1]])
    no_vessels = per_image_metrics([scores], [np.zeros((2, 2))], [np.ones((2, 2))], 0.5)[0]
    assert no_vessels["auc_roc"] is None and no_vessels["auc_pr"] is None and no_vessels["average_precision"] is None
    assert no_vessels["specificity"] == 0.5 and no_vessels["f1"] == 0.0 and no_vessels["vessel_fraction"] == 0.0


def test_threshold_metrics_by_hand():
    scores = np.array([0.9, 0.6, 0.4, 0.2, 0.7, 0.5])
    targets = np.array([True, True, True, False, False, False])
    m = threshold_metrics(scores, targets, 0.5)  # pred: T T F F T T -> tp 2, fp 2, fn 1, tn 1
    assert m["sensitivity"] == 2 / 3 and m["specificity"] == 1 / 3
    assert m["accuracy"] == 3 / 6 and m["f1"] == 4 / 7


def test_best_f1_threshold_is_the_argmax():
    rng = np.random.default_rng(1)
    targets = rng.random(5000) < 0.2
    scores = np.clip(targets * 0.25 + rng.random(targets.size) * 0.8, 0, 1)
    best = compute_metrics(scores, targets)["best_f1_threshold"]
    f1_best = threshold_metrics(scores, targets, best)["f1"]
    grid = max(threshold_metrics(scores, targets, t)["f1"] for t in np.linspace(0, 1, 201))
    assert f1_best >= grid - 1e-12


def test_pooling_checks_shapes_and_needs_both_classes():
    with pytest.raises(ValueError, match="shapes differ"):
        fov_pixels([np.zeros((2, 2))], [np.zeros((2, 3))], [np.ones((2, 2))])
    with pytest.raises(ValueError, match="1 probability maps, 2 labels"):  # not pooled over the first one alone
        fov_pixels([np.zeros((2, 2))], [np.zeros((2, 2))] * 2, [np.ones((2, 2))] * 2)
    with pytest.raises(ValueError, match="both vessel and background"):
        compute_metrics(np.random.rand(10), np.zeros(10, dtype=bool))


@pytest.mark.parametrize("noise", [0.0, 0.02])
def test_histogram_metrics_match_sklearn_on_real_maps(reference_root, drive_root, noise):
    """V-GAN's 8-bit maps, and the same maps made continuous (what a generator outputs)."""
    import torch

    scores, targets = fov_pixels(*drive_test_maps(reference_root, drive_root, noise))
    scores = scores.astype(np.float32)
    exact = compute_metrics(scores.astype(np.float64), targets, 0.5)
    fast = histogram_metrics(torch.from_numpy(scores), torch.from_numpy(targets), 0.5)
    assert set(fast) == set(exact)
    for key in exact:
        assert fast[key] == pytest.approx(exact[key], abs=1e-4), key


def test_histogram_metrics_refuse_one_class():
    import torch

    with pytest.raises(ValueError, match="both vessel and background"):
        histogram_metrics(torch.rand(10), torch.zeros(10, dtype=torch.bool))


def test_the_bootstrap_is_seeded_and_reproducible():
    gains = np.random.default_rng(0).normal(0.002, 0.004, 20)
    a, b = bootstrap_interval(gains, 0.95, seed=7), bootstrap_interval(gains, 0.95, seed=7)
    assert a == b and a[0] < gains.mean() < a[1]
    assert bootstrap_interval(gains, 0.95, seed=8) != a
    wide, narrow = bootstrap_interval(gains, 0.99), bootstrap_interval(gains, 0.80)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_the_runs_bootstrap_widens_with_the_runs_spread():
    """Runs that differ as seeds do widen the interval of the per-image gain beyond the images' draw alone; runs
    alike leave it about as wide."""
    rng = np.random.default_rng(0)
    images = rng.normal(0.97, 0.005, 20)
    gain = rng.normal(0.002, 0.003, 20)
    alike = np.stack([images] * 3), np.stack([images + gain] * 3)
    spread = images + rng.normal(0, 0.004, (3, 1)), images + gain + rng.normal(0, 0.004, (3, 1))
    lo, hi = bootstrap_interval(gain, 0.95)
    a_lo, a_hi = runs_bootstrap_interval(*alike, 0.95)
    s_lo, s_hi = runs_bootstrap_interval(*spread, 0.95)
    assert runs_bootstrap_interval(*spread, 0.95, seed=3) == runs_bootstrap_interval(*spread, 0.95, seed=3)
    assert a_hi - a_lo == pytest.approx(hi - lo, rel=0.1)
    assert s_hi - s_lo > 1.5 * (hi - lo)


def test_paired_runs_cancel_what_a_pair_shares():
    """Runs that differ by much (generators) and each gain alike from a change: drawn as pairs, the interval is about
    the images' alone; drawn apart, the runs' spread widens it."""
    rng = np.random.default_rng(1)
    images = rng.normal(0.97, 0.005, 20)
    gain = rng.normal(0.002, 0.003, 20)
    base = images + rng.normal(0, 0.01, (3, 1))
    cand = base + gain
    lo, hi = bootstrap_interval(gain, 0.95)
    p_lo, p_hi = runs_bootstrap_interval(base, cand, 0.95, paired=True)
    a_lo, a_hi = runs_bootstrap_interval(base, cand, 0.95)
    assert p_hi - p_lo == pytest.approx(hi - lo, rel=0.1) and a_hi - a_lo > 3 * (hi - lo)
    with pytest.raises(ValueError, match="paired runs need as many a side"):
        runs_bootstrap_interval(base, cand[:2], 0.95, paired=True)


def drawn(maps, labels, masks, weights):
    """The FOV pixels of the images taken as often as `weights` says, pooled."""
    taken = np.repeat(np.arange(len(maps)), weights)
    return fov_pixels(maps[taken], labels[taken], masks[taken])


@pytest.mark.parametrize("noise, by_value", [(0.0, False), (0.0, True), (0.05, False)])
def test_pair_counts_give_the_pooled_auc_roc_of_any_draw_of_the_images(reference_root, drive_root, noise, by_value,
                                                                        monkeypatch):
    """V-GAN's DRIVE maps, 8-bit (ties) and continuous; counted pair by pair, and by value (as past the work limit):
    the AUC-ROC of every image once, and of draws with repeats and left-out images, is scikit-learn's of those pixels
    pooled."""
    maps, labels, masks = drive_test_maps(reference_root, drive_root, noise)
    if by_value:
        monkeypatch.setattr("vgan.metrics.PAIR_WORK_LIMIT", 0)
    counts = pair_counts(maps, labels, masks)
    assert counts.shape == (20, 20) and counts.dtype == np.int64
    rows = per_image_metrics(maps, labels, masks)
    vessels = np.array([round(r["vessel_fraction"] * r["n_fov_pixels"]) for r in rows])
    background = np.array([r["n_fov_pixels"] for r in rows]) - vessels
    weights = np.vstack([np.ones(20, int), np.random.default_rng(1).multinomial(20, np.full(20, 0.05), size=2),
                         np.r_[np.zeros(19, int), 1]])
    got = pooled_auc_roc(counts, vessels, background, weights)
    for w, auc_roc in zip(weights, got, strict=True):
        scores, targets = drawn(maps, labels, masks, w)
        assert auc_roc == pytest.approx(roc_auc_score(targets, scores), abs=1e-12)
    assert got[-1] == pytest.approx(rows[-1]["auc_roc"], abs=1e-12)  # one image alone: its own AUC


def test_pair_counts_are_left_out_past_the_work_limit_for_continuous_maps(reference_root, drive_root, monkeypatch):
    monkeypatch.setattr("vgan.metrics.PAIR_WORK_LIMIT", 0)
    assert pair_counts(*drive_test_maps(reference_root, drive_root, 0.05)) is None


def test_the_thresholded_metrics_of_any_draw_add_up_from_each_images_counts(reference_root, drive_root):
    """Read back from each image's row (sensitivity, specificity, FOV pixels, vessel fraction), as vgan.evaluate and
    vgan.compare take them: each draw's metric is the one of its pixels pooled."""
    maps, labels, masks = drive_test_maps(reference_root, drive_root, 0.05)
    rows = per_image_metrics(maps, labels, masks, 0.4)
    weights = np.random.default_rng(2).multinomial(20, np.full(20, 0.05), size=3)
    for metric in ("f1", "accuracy", "sensitivity", "specificity"):
        got = pooled_of_images(metric, rows)(weights)
        for w, value in zip(weights, got, strict=True):
            assert value == pytest.approx(threshold_metrics(*drawn(maps, labels, masks, w), 0.4)[metric], abs=1e-12)
    counts = [np.ones(20)] * 4
    with pytest.raises(ValueError, match="auc_pr: not a thresholded metric"):
        pooled_counts_metric("auc_pr", *counts, weights)


def test_the_pooled_interval_is_the_percentiles_of_the_pooled_gain_of_each_draw(reference_root, drive_root):
    """Brute force on V-GAN's maps and the same noised (the middle 128 x 128 pixels of each, for speed): each of 40
    draws of the images scored by scikit-learn on its pooled pixels, the gains' percentiles; the interval holds the
    pooled gain."""
    middle = np.s_[:, 228:356, 218:346]
    maps, labels, masks = (x[middle] for x in drive_test_maps(reference_root, drive_root))
    noised = drive_test_maps(reference_root, drive_root, 0.05)[0][middle]
    rows = per_image_metrics(maps, labels, masks)
    vessels = np.array([round(r["vessel_fraction"] * r["n_fov_pixels"]) for r in rows])
    background = np.array([r["n_fov_pixels"] for r in rows]) - vessels
    counts = [pair_counts(m, labels, masks) for m in (maps, noised)]
    of = [lambda w, c=c: pooled_auc_roc(c, vessels, background, w) for c in counts]
    lo, hi = runs_pooled_interval([of[0]], [of[1]], 20, 0.9, seed=3, samples=40)
    weights = np.random.default_rng(3).multinomial(20, np.full(20, 0.05), size=40)
    gains = [roc_auc_score(*drawn(noised, labels, masks, w)[::-1]) - roc_auc_score(*drawn(maps, labels, masks, w)[::-1])
             for w in weights]
    assert (lo, hi) == pytest.approx((np.quantile(gains, 0.05), np.quantile(gains, 0.95)), abs=1e-12)
    whole = of[1](np.ones((1, 20)))[0] - of[0](np.ones((1, 20)))[0]
    assert lo < whole < hi < 0


def test_the_pooled_interval_draws_runs_as_the_per_image_one_does():
    """Runs whose pooled figure is a constant apart: one a side, the interval is that constant; two a side drawn
    apart it spans the runs' spread; drawn as pairs whose gains are equal, it is that gain again."""
    def run(level):
        return lambda w: np.full(len(w), level)

    assert runs_pooled_interval([run(0.5)], [run(0.6)], 20, 0.95) == pytest.approx((0.1, 0.1))
    lo, hi = runs_pooled_interval([run(0.5), run(0.7)], [run(0.6), run(0.8)], 20, 0.95)
    assert lo == pytest.approx(-0.1) and hi == pytest.approx(0.3)
    assert runs_pooled_interval([run(0.5), run(0.7)], [run(0.6), run(0.8)], 20, 0.95, paired=True) == \
        pytest.approx((0.1, 0.1))
    with pytest.raises(ValueError, match="paired runs need as many a side"):
        runs_pooled_interval([run(0.5)], [run(0.6), run(0.8)], 20, 0.95, paired=True)


def test_one_models_interval_is_the_percentiles_of_its_pooled_figure_over_draws(reference_root, drive_root):
    """vgan.evaluate's intervals: V-GAN's maps (the middle 128 x 128 of each), 40 draws of the images each scored by
    scikit-learn; AUC-ROC from the pair counts, F1 from the rows; neither for AUC-PR, nor AUC-ROC without counts."""
    middle = np.s_[:, 228:356, 218:346]
    maps, labels, masks = (x[middle] for x in drive_test_maps(reference_root, drive_root))
    rows = per_image_metrics(maps, labels, masks)
    counts = pair_counts(maps, labels, masks)
    weights = np.random.default_rng(5).multinomial(20, np.full(20, 0.05), size=40)
    drawn_pixels = [drawn(maps, labels, masks, w) for w in weights]
    for metric, of_draw in (("auc_roc", lambda s, t: roc_auc_score(t, s)),
                            ("f1", lambda s, t: f1_score(t, s >= 0.5))):
        lo, hi = pooled_interval(pooled_of_images(metric, rows, counts), 20, 0.9, seed=5, samples=40)
        values = [of_draw(*pixels) for pixels in drawn_pixels]
        assert (lo, hi) == pytest.approx((np.quantile(values, 0.05), np.quantile(values, 0.95)), abs=1e-12)
    assert pooled_of_images("auc_pr", rows, counts) is None and pooled_of_images("auc_roc", rows) is None


def test_skeletons_are_centrelines_one_pixel_wide_each_vessel_tree_in_one_piece(drive_root):
    """DRIVE's 20 test labels (cut to their FOV) and a FOV itself (an untrained model's all-vessel map): the
    skeleton lies inside the shape, is one pixel wide but where vessels cross (a 2x2 block, with 3 or more
    branches leaving it, as Guo and Hall's thinning leaves a crossing), keeps each 8-connected piece in one piece,
    and is its own skeleton. (Pixel for pixel scikit-image's `thin` on these, checked once by hand.)"""
    from scipy import ndimage

    eight = np.ones((3, 3), dtype=bool)
    split = read_pool(DataConfig(dataset="drive", root=str(drive_root)), "test")
    shapes = [(y[0] & k[0]).numpy() for y, k in zip(split.labels, split.masks, strict=True)]
    for shape in [*shapes, split.masks[0, 0].numpy()]:
        line = skeleton(shape)
        assert line.any() and not (line & ~shape).any()
        blocks = np.argwhere(line[:-1, :-1] & line[1:, :-1] & line[:-1, 1:] & line[1:, 1:])
        assert len(blocks) <= 3
        for y, x in blocks:
            ring = line[y - 1 : y + 3, x - 1 : x + 3].copy()
            ring[1:3, 1:3] = False
            assert ndimage.label(ring, eight)[1] >= 3, (y, x)  # branches: a crossing
        assert ndimage.label(line, eight)[1] == ndimage.label(shape, eight)[1]
        assert np.array_equal(skeleton(line), line)
    bar = np.zeros((9, 50), dtype=bool)
    bar[2:7, 5:45] = True
    line = skeleton(bar)
    assert line.sum(axis=0).max() == 1 and line[4, 8:42].all()  # the bar's middle row, its ends kept short of it


def test_cldice_sees_the_thin_vessels_a_map_misses_where_pixel_f1_barely_does(drive_root):
    """clDice by hand; and a map of DRIVE's label without its vessels under 3 pixels wide (an opening): pixel F1
    0.86, as most vessel pixels are in wide vessels, while half the label's centrelines are missed (clDice 0.69)."""
    from scipy import ndimage

    assert float(cldice(3, 4, 1, 2)) == pytest.approx(2 * 0.75 * 0.5 / 1.25)
    assert float(cldice(0, 0, 0, 5)) == 0.0  # a map without vessels
    split = read_pool(DataConfig(dataset="drive", root=str(drive_root)), "test")
    label, fov = (split.labels[0, 0] & split.masks[0, 0]).numpy(), split.masks[0, 0].numpy()
    assert float(cldice(*centreline_counts(label, label))) == 1.0
    wide = ndimage.binary_opening(label, np.ones((3, 3)))
    f1 = threshold_metrics(wide[fov].astype(np.float32), label[fov], 0.5)["f1"]
    kept_pred, pred_px, kept_label, label_px = centreline_counts(wide, label)
    assert kept_pred == pred_px  # what the map holds is all vessel
    assert kept_label / label_px < 0.6 and float(cldice(kept_pred, pred_px, kept_label, label_px)) < f1 - 0.15


def test_cldice_of_any_draw_adds_up_from_each_images_centreline_counts(reference_root, drive_root):
    """Read back from each image's row (its centreline shares and pixels), as vgan.evaluate and vgan.compare take
    them: each draw's clDice is the one of its images' centreline counts summed."""
    maps, labels, masks = drive_test_maps(reference_root, drive_root)
    rows = per_image_metrics(maps, labels, masks, 0.5)
    counts = image_centrelines(maps, labels, masks, 0.5)
    assert [r["skeleton_px"] for r in rows] == counts[:, 1].tolist()
    assert all(r["cldice"] == pytest.approx(float(cldice(*c)), abs=1e-15) for r, c in zip(rows, counts, strict=True))
    weights = np.vstack([np.ones(20), np.random.default_rng(3).multinomial(20, np.full(20, 0.05), size=3)])
    got = pooled_of_images("cldice", rows)(weights)
    for w, value in zip(weights, got, strict=True):
        assert value == pytest.approx(float(cldice(*(w @ counts))), abs=1e-12)


def test_a_vessel_under_three_pixels_across_is_thin_one_wider_is_thick_to_its_ends():
    """Bars 1 to 5 pixels wide, and a diagonal line: every pixel of the 1- and 2-pixel ones thin, every pixel of
    the others thick, their ends too (thinning stops short of a wide bar's end: those pixels take the width at
    the centreline's end)."""
    label = np.zeros((60, 60), dtype=bool)
    for width, top in zip(range(1, 6), (3, 10, 18, 27, 37), strict=True):
        label[top : top + width, 5:40] = True
    diagonal = np.eye(15, dtype=bool)
    label[44:59, 44:59] = diagonal
    thin = thin_vessels(label, skeleton(label))
    assert not (thin & ~label).any()
    for width, top in zip(range(1, 6), (3, 10, 18, 27, 37), strict=True):
        assert thin[top : top + width, 5:40].all() == (width < 3) and thin[top : top + width, 5:40].any() == (width < 3)
    assert thin[44:59, 44:59][diagonal].all()
    assert not thin_vessels(np.zeros((5, 5), dtype=bool), np.zeros((5, 5), dtype=bool)).any()


def test_a_map_without_the_thin_vessels_scores_their_sensitivity_low_and_the_thick_ones_whole(drive_root):
    """DRIVE's test labels, a fifth to a third of whose vessel pixels are thin; a map of each without its vessels
    under 3 pixels wide (an opening by a 3x3 square): thin-vessel sensitivity low (a fifth), thick 1 but for a
    pixel in a thousand, the pixel sensitivity between, their mean weighted by pixels. The label itself finds all
    of both; a map of every FOV pixel too."""
    from scipy import ndimage

    split = read_pool(DataConfig(dataset="drive", root=str(drive_root)), "test")
    labels, masks = split.labels[:, 0].numpy(), split.masks[:, 0].numpy()
    wide = np.stack([ndimage.binary_opening(y & k, np.ones((3, 3))) for y, k in zip(labels, masks, strict=True)])
    counts = image_calibres(wide, labels, masks, 0.5)
    thin_hit, thin_px, thick_hit, thick_px = counts.sum(axis=0)
    assert thin_px + thick_px == int((labels & masks).sum()) and 0.2 < thin_px / (thin_px + thick_px) < 0.4
    got = calibre_sensitivities(counts)
    assert got["thin_sensitivity"] < 0.25 and got["thick_sensitivity"] > 0.998
    sensitivity = threshold_metrics(*fov_pixels(wide.astype(np.float32), labels, masks), 0.5)["sensitivity"]
    assert sensitivity == pytest.approx((thin_hit + thick_hit) / (thin_px + thick_px), abs=1e-12)
    for whole in (labels, masks):
        assert calibre_sensitivities(image_calibres(whole, labels, masks, 0.5)) == \
            {"thin_sensitivity": 1.0, "thick_sensitivity": 1.0}
    assert calibre_sensitivities(np.zeros((3, 4))) == {"thin_sensitivity": None, "thick_sensitivity": None}


def test_thin_and_thick_vessels_auc_roc_ranks_each_widths_pixels_against_the_background(reference_root, drive_root):
    """V-GAN's maps: each width's AUC-ROC is scikit-learn's of that width's vessel pixels against every background
    pixel of the FOV (the other width's in neither class), pooled over the images, and each image's in its row.
    Thin vessels rank lower than thick ones; each width's pair counts give the figure of any draw of the images; a
    map that finds every thick vessel and no thin one ranks them at chance but for the pixels it calls thick."""
    maps, labels, masks = drive_test_maps(reference_root, drive_root)
    thin = label_thin_vessels(labels, masks)
    got = calibre_aucs(maps, labels, masks, thin)
    inside = masks > 0.5
    vessel, thin_px = (labels > 0.5) & inside, np.stack(thin) & inside
    for key, positives in (("thin_auc_roc", thin_px), ("thick_auc_roc", vessel & ~thin_px)):
        kept = positives | (inside & ~vessel)
        assert got[key] == pytest.approx(roc_auc_score(positives[kept], maps[kept]), abs=1e-12)
    assert got["thin_auc_roc"] < got["thick_auc_roc"] - 0.02
    rows = per_image_metrics(maps, labels, masks, 0.5)
    for row, p, y, m, t in zip(rows, maps, labels, masks, thin, strict=True):
        assert row["thin_auc_roc"] == calibre_aucs([p], [y], [m], [t])["thin_auc_roc"]
        assert row["thin_auc_roc"] < row["auc_roc"] < row["thick_auc_roc"]
    # each width's pair counts give its AUC-ROC of any draw of the images (as pair_counts give AUC-ROC's), by pair and
    # by value (8-bit maps past the work limit)
    weights = np.vstack([np.ones(20), np.random.default_rng(5).multinomial(20, np.full(20, 0.05), size=2)])
    for limit in (PAIR_WORK_LIMIT, 0):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("vgan.metrics.PAIR_WORK_LIMIT", limit)
            counts = pair_counts(maps, labels, masks, thin)
        drawn_thin = pooled_of_images("thin_auc_roc", rows, counts)(weights)
        for w, value in zip(weights, drawn_thin, strict=True):
            taken = np.repeat(np.arange(20), w.astype(int))
            want = calibre_aucs(maps[taken], labels[taken], masks[taken], [thin[k] for k in taken])["thin_auc_roc"]
            assert value == pytest.approx(want, abs=1e-12)
    thick_only = (vessel & ~thin_px).astype(np.float32)
    chance = calibre_aucs(thick_only, labels, masks, thin)
    assert chance["thick_auc_roc"] == 1.0 and chance["thin_auc_roc"] == 0.5
    assert calibre_aucs(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), np.ones((1, 4, 4)), [np.zeros((4, 4), bool)]) == \
        {"thin_auc_roc": None, "thick_auc_roc": None}


def test_thin_and_thick_sensitivity_of_any_draw_add_up_from_each_images_counts(reference_root, drive_root):
    """Read back from each image's row (its share and pixels of each width), as vgan.evaluate and vgan.compare
    take them: each draw's figure is the one of its images' counts summed."""
    maps, labels, masks = drive_test_maps(reference_root, drive_root)
    rows = per_image_metrics(maps, labels, masks, 0.5)
    counts = image_calibres(maps, labels, masks, 0.5)
    assert [[r["thin_vessel_px"], r["thick_vessel_px"]] for r in rows] == counts[:, [1, 3]].tolist()
    weights = np.vstack([np.ones(20), np.random.default_rng(4).multinomial(20, np.full(20, 0.05), size=3)])
    for metric in ("thin_sensitivity", "thick_sensitivity"):
        got = pooled_of_images(metric, rows)(weights)
        for w, value in zip(weights, got, strict=True):
            assert value == pytest.approx(calibre_sensitivities(w @ counts)[metric], abs=1e-12)
