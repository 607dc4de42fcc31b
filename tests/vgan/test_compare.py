"""vgan.compare: two evaluations of DRIVE's test split, paired image by image (V-GAN's published maps, and the same
maps blurred or noised as the worse or equal model)."""

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from vgan.compare import MetricGain
from vgan.compare import main as compare_main
from vgan.evaluate import main as evaluate_main
from vgan.images import read_probability


def evaluation(maps_of, reference_root, drive_root, out, *extra):
    """vgan.evaluate of V-GAN's DRIVE test maps, each turned by `maps_of(map, index)` first, into `out`."""
    maps = out.parent / f"{out.name}-maps"
    maps.mkdir()
    for i, path in enumerate(sorted((reference_root / "DRIVE").glob("*_test.tif"))):
        np.save(maps / f"{path.stem}.npy", maps_of(read_probability(path), i).astype(np.float32))
    assert evaluate_main(["--predictions", str(maps), "--data", str(drive_root), "--split", "test", "--out", str(out),
                          "--previews", "0", *extra]) == 0
    return out


def blurred(sigma):
    return lambda m, i: gaussian_filter(m, sigma)


def noised(seed):
    return lambda m, i: np.clip(m + np.random.default_rng(seed + i).normal(0, 0.1, m.shape), 0, 1)


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory, reference_root, drive_root):
    root = tmp_path_factory.mktemp("evaluations")
    return {name: evaluation(maps_of, reference_root, drive_root, root / name)
            for name, maps_of in (("vgan", lambda m, i: m), ("blurred", blurred(1.0)), ("blurred_15", blurred(1.5)),
                                  ("blurred_06", blurred(0.6)), ("noised_a", noised(100)), ("noised_b", noised(200)))}


def compared(capsys, *argv):
    code = compare_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_worse_model_is_lower_on_every_metric_beyond_the_images_noise(evaluations, capsys, tmp_path):
    code, out, _ = compared(capsys, evaluations["vgan"], evaluations["blurred"], "--json", tmp_path / "c.json")
    assert code == 0
    record = json.loads((tmp_path / "c.json").read_text())
    base = json.loads((evaluations["vgan"] / "metrics.json").read_text())
    blurred = json.loads((evaluations["blurred"] / "metrics.json").read_text())
    assert record["images"] == 20 and set(record["metrics"]) == {"auc_roc", "auc_pr", "f1"}
    for metric, g in record["metrics"].items():
        assert g["baseline"] == base[metric] and g["candidate"] == blurred[metric]
        assert g["gain"] == pytest.approx(blurred[metric] - base[metric])
        gains = [b[metric] - a[metric] for a, b in zip(base["per_image"], blurred["per_image"], strict=True)]
        assert g["mean_gain"] == pytest.approx(np.mean(gains))
        assert g["interval"][0] < g["mean_gain"] < g["interval"][1] < 0
        assert g["higher_on"] == sum(x > 0 for x in gains) <= 1 and g["verdict"] == "lower"
    assert "auc_roc" in out and "lower" in out and "higher" not in out.replace("higher on", "")
    assert "it says nothing of training's own noise" in out

    code, out, _ = compared(capsys, evaluations["blurred"], evaluations["vgan"], "--json", tmp_path / "r.json")
    reverse = json.loads((tmp_path / "r.json").read_text())["metrics"]
    for metric, g in record["metrics"].items():  # the same images drawn: the interval mirrored
        assert reverse[metric]["mean_gain"] == pytest.approx(-g["mean_gain"])
        assert reverse[metric]["interval"] == pytest.approx([-g["interval"][1], -g["interval"][0]])
        assert reverse[metric]["verdict"] == "higher"


def test_the_pooled_gain_has_its_own_interval_where_the_images_counts_give_it(evaluations, capsys, tmp_path):
    """AUC-ROC from the pair counts vgan.evaluate keeps, F1 from each image's confusion counts: the interval of the
    pooled gain, drawn as the per-image one is, holds it; AUC-PR has none. Seeded, and mirrored when the sides swap
    (the same draws)."""
    def record(base, cand, *extra):
        code, out, _ = compared(capsys, evaluations[base], evaluations[cand], "--json", tmp_path / "c.json", *extra)
        assert code == 0
        return json.loads((tmp_path / "c.json").read_text())["metrics"], out

    got, out = record("vgan", "blurred")
    for metric in ("auc_roc", "f1"):
        lo, hi = got[metric]["pooled_interval"]
        assert lo < got[metric]["gain"] < hi < 0 and got[metric]["pooled_verdict"] == "lower"
    assert got["auc_pr"]["pooled_interval"] is None and got["auc_pr"]["pooled_verdict"] is None
    assert "each draw's figures pooled over the pixels of the images drawn" in out
    assert "no interval of the pooled gain for auc_pr (its curve does not add up image by image)" in out
    swapped, _ = record("blurred", "vgan")
    assert swapped["auc_roc"]["pooled_interval"] == pytest.approx([-x for x in got["auc_roc"]["pooled_interval"][::-1]])
    assert record("vgan", "blurred", "--seed", "1")[0]["auc_roc"]["pooled_interval"] != \
        got["auc_roc"]["pooled_interval"]
    noise, _ = record("noised_a", "noised_b")
    assert noise["auc_roc"]["pooled_interval"][0] < 0 < noise["auc_roc"]["pooled_interval"][1]

    def reordered(m):  # the same evaluation, its rows in one order and its pair counts in another
        m["per_image"].reverse()
        ids, counts = m["pair_counts"]["ids"], m["pair_counts"]["counts"]
        turn = list(range(3, len(ids))) + [0, 1, 2]
        m["pair_counts"]["ids"] = [ids[k] for k in turn]
        m["pair_counts"]["counts"] = [[counts[i][j] for j in turn] for i in turn]

    code, _, _ = compared(capsys, evaluations["vgan"], edited(evaluations, tmp_path, reordered), "--json",
                          tmp_path / "r.json")
    assert code == 0
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["auc_roc"]["pooled_interval"] == \
        got["auc_roc"]["pooled_interval"]


def test_cldice_is_compared_image_by_image_and_pooled_from_each_images_centreline_counts(evaluations, capsys,
                                                                                          tmp_path):
    """clDice (of the vessels' centrelines): the blurred maps lose thin vessels at 0.5, lower beyond the images'
    noise by both intervals; centreline counts that do not give the file's figure are refused, and an evaluation
    written before vgan.evaluate scored clDice is named, with what to do."""
    code, out, _ = compared(capsys, evaluations["vgan"], evaluations["blurred"], "--metrics", "cldice,f1", "--json",
                            tmp_path / "c.json")
    assert code == 0
    got = json.loads((tmp_path / "c.json").read_text())["metrics"]["cldice"]
    lo, hi = got["pooled_interval"]
    assert lo < got["gain"] < hi < 0 and got["verdict"] == got["pooled_verdict"] == "lower"
    assert re.search(r"^cldice +0\.8164 ", out, re.M)
    code, out, err = compared(capsys, evaluations["vgan"], edited(
        evaluations, tmp_path, lambda m: m["per_image"][4].update(skeleton_px=m["per_image"][4]["skeleton_px"] + 500)),
        "--metrics", "cldice")
    assert code == 2 and "its per_image rows give a pooled cldice of " in err

    def before_cldice(m):
        m.pop("cldice")
        for row in m["per_image"]:
            row.pop("cldice")
    code, out, err = compared(capsys, evaluations["vgan"], edited(evaluations, tmp_path, before_cldice),
                              "--metrics", "auc_roc,cldice")
    assert code == 2 and out == ""
    assert err.endswith("edited/metrics.json: no cldice (evaluated before vgan.evaluate scored it): evaluate it "
                        "again\n")


def test_thin_vessels_are_compared_apart_from_the_thick_ones(evaluations, capsys, tmp_path):
    """Blurring loses the thin vessels at 0.5 and keeps the thick ones: the thin vessels' sensitivity lower beyond
    the images' noise, pooled from each image's counts of them, and their AUC-ROC, pooled from their pair counts
    (an evaluation without those: image by image); the thick ones' sensitivity gains far less. An evaluation
    written before vgan.evaluate split the vessels by width is named, with what to do."""
    code, out, _ = compared(capsys, evaluations["vgan"], evaluations["blurred"], "--metrics",
                            "thin_sensitivity,thick_sensitivity,thin_auc_roc", "--json", tmp_path / "c.json")
    assert code == 0
    got = json.loads((tmp_path / "c.json").read_text())["metrics"]
    base = json.loads((evaluations["vgan"] / "metrics.json").read_text())
    thin, thick = got["thin_sensitivity"], got["thick_sensitivity"]
    assert thin["baseline"] == base["thin_sensitivity"] and re.search(r"^thin_sensitivity +0\.6496 ", out, re.M)
    lo, hi = thin["pooled_interval"]
    assert lo < thin["gain"] < hi < 0 and thin["verdict"] == thin["pooled_verdict"] == "lower"
    assert abs(thick["gain"]) < abs(thin["gain"]) / 3
    # at no threshold too, pooled from each pair of images' counts of thin-vessel and background pixels ranked
    ranked = got["thin_auc_roc"]
    lo, hi = ranked["pooled_interval"]
    assert lo < ranked["gain"] < hi < 0 and ranked["verdict"] == ranked["pooled_verdict"] == "lower"
    code, out, _ = compared(capsys, evaluations["vgan"], edited(evaluations, tmp_path,
                                                                lambda m: m.pop("thin_pair_counts")),
                            "--metrics", "thin_auc_roc")
    assert code == 0 and "no interval of the pooled gain for thin_auc_roc (no thin_pair_counts in " in out
    assert "edited: written before vgan.evaluate kept them" in out

    def before_widths(m):
        for key in ("thin_sensitivity", "thick_sensitivity"):
            m.pop(key)
            for row in m["per_image"]:
                row.pop(key)
    code, out, err = compared(capsys, evaluations["vgan"], edited(evaluations, tmp_path, before_widths),
                              "--metrics", "thin_sensitivity")
    assert code == 2 and err.endswith("edited/metrics.json: no thin_sensitivity (evaluated before vgan.evaluate "
                                      "scored it): evaluate it again\n")


def test_an_evaluation_without_pair_counts_has_no_pooled_auc_roc_interval(evaluations, capsys, tmp_path):
    """One written before vgan.evaluate kept them (or of a split too large): AUC-ROC is compared image by image alone,
    F1's pooled interval still given (its counts are in the rows)."""
    code, out, _ = compared(capsys, evaluations["vgan"], edited(evaluations, tmp_path, lambda m: m.pop("pair_counts")),
                            "--json", tmp_path / "c.json")
    got = json.loads((tmp_path / "c.json").read_text())["metrics"]
    assert code == 0 and got["auc_roc"]["pooled_interval"] is None and got["auc_roc"]["verdict"] == "lower"
    assert got["f1"]["pooled_interval"] is not None
    assert "no interval of the pooled gain for auc_roc (no pair_counts in " in out and "edited:" in out


def test_the_verdict_of_the_pooled_gain_is_said_where_it_differs():
    g = MetricGain("auc_roc", 0.98, 0.981, 0.001, 0.0008, (0.0002, 0.0015), 15, 20, "higher", [0.98], [0.981], 0.0,
                   (-0.0001, 0.002), "within noise")
    assert g.row.endswith("higher; pooled: within noise") and "+0.0010 [-0.0001, +0.0020]" in g.row
    assert not replace(g, pooled_verdict="higher").row.endswith("within noise")


def test_two_noises_of_one_model_are_within_noise(evaluations, capsys, tmp_path):
    code, out, _ = compared(capsys, evaluations["noised_a"], evaluations["noised_b"], "--metrics", "auc_roc",
                            "--json", tmp_path / "c.json")
    g = json.loads((tmp_path / "c.json").read_text())["metrics"]["auc_roc"]
    assert code == 0 and g["interval"][0] < 0 < g["interval"][1] and g["verdict"] == "within noise"
    assert "within noise" in out


def test_a_margin_tells_a_gain_that_matters_from_an_equivalent_model(evaluations, capsys, tmp_path):
    """The blurred model loses on every image: lower than V-GAN's maps beyond a margin below its interval, equivalent
    within one beyond the interval's far end, undecided at a margin inside the interval. The margin changes the verdict
    alone; it is of the mean per-image gain, and a metric not named in METRIC=M has none."""
    def record(*extra):
        code, out, _ = compared(capsys, evaluations["vgan"], evaluations["blurred"], "--metrics", "auc_roc,f1",
                                "--json", tmp_path / "c.json", *extra)
        assert code == 0
        return json.loads((tmp_path / "c.json").read_text())["metrics"], out

    plain, out = record()
    lo, hi = plain["auc_roc"]["interval"]
    assert hi < 0 and "with a margin" not in out
    for margin, verdict, said in ((-hi / 2, "lower", "lower by more than"),
                                  (-lo * 1.01, "equivalent", "equivalent within +-"),
                                  (-(lo + hi) / 2, "undecided", "undecided at +-")):
        got, out = record("--margin", f"{margin:.6f}")
        assert got["auc_roc"]["verdict"] == verdict and got["auc_roc"]["margin"] == float(f"{margin:.6f}")
        assert {k: v for k, v in got["auc_roc"].items() if k not in ("verdict", "pooled_verdict", "margin")} == \
            {k: v for k, v in plain["auc_roc"].items() if k not in ("verdict", "pooled_verdict", "margin")}
        assert f"{said}{'' if said.endswith('-') else ' '}{float(f'{margin:.6f}'):g}" in out
        assert "with a margin M: higher or lower, the interval beyond +-M" in out
    got, out = record("--margin", f"auc_roc={-lo * 1.01:.6f}")
    assert (got["auc_roc"]["verdict"], got["f1"]["verdict"], got["f1"]["margin"]) == ("equivalent", "lower", 0.0)
    code, out, _ = compared(capsys, evaluations["noised_a"], evaluations["noised_b"], "--metrics", "auc_roc",
                            "--margin", "0.01", "--json", tmp_path / "n.json")
    assert code == 0 and json.loads((tmp_path / "n.json").read_text())["metrics"]["auc_roc"]["verdict"] == "equivalent"


def test_the_interval_is_seeded_and_widens_with_the_confidence(evaluations, capsys, tmp_path):
    def interval(*extra):
        assert compared(capsys, evaluations["vgan"], evaluations["blurred"], "--metrics", "auc_pr", "--json",
                        tmp_path / "c.json", *extra)[0] == 0
        return json.loads((tmp_path / "c.json").read_text())["metrics"]["auc_pr"]["interval"]

    assert interval() == interval("--seed", "0") != interval("--seed", "1")
    wide, narrow = interval("--confidence", "0.99"), interval("--confidence", "0.8")
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_an_image_without_an_auc_is_left_out_of_that_metric(evaluations, capsys, tmp_path):
    """An image whose FOV holds no vessel has no AUC (vgan.metrics.per_image_metrics): it is paired on F1 alone."""
    for name in ("vgan", "blurred"):
        m = json.loads((evaluations[name] / "metrics.json").read_text())
        m["per_image"][3]["auc_roc"] = None
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(m))
    assert compared(capsys, tmp_path / "vgan", tmp_path / "blurred", "--metrics", "auc_roc,f1", "--json",
                    tmp_path / "c.json")[0] == 0
    record = json.loads((tmp_path / "c.json").read_text())["metrics"]
    assert record["auc_roc"]["images"] == 19 and record["f1"]["images"] == 20


def test_paired_runs_cancel_what_a_pair_shares(evaluations, capsys, tmp_path):
    """Two 'generators', each scored without and with a change that helps both: V-GAN's maps blurred at sigma 1, then
    as they are; the same noised, then blurred at 1.5 instead. The generators differ more than the change gains:
    drawn apart, the better one's 'without' against the worse one's 'with' is a loss, and the gain is within noise;
    drawn as the pairs they are, it is higher."""
    e = {k: str(v) for k, v in evaluations.items()}
    argv = ["--baseline", e["blurred"], e["noised_a"], "--candidate", e["vgan"], e["blurred_15"], "--metrics",
            "auc_roc", "--json", str(tmp_path / "c.json")]
    assert compared(capsys, *argv)[0] == 0
    apart = json.loads((tmp_path / "c.json").read_text())
    code, out, _ = compared(capsys, *argv, "--paired-runs")
    paired = json.loads((tmp_path / "c.json").read_text())
    assert code == 0 and paired["paired_runs"] and not apart["paired_runs"]
    assert apart["metrics"]["auc_roc"]["verdict"] == "within noise"
    assert paired["metrics"]["auc_roc"]["verdict"] == "higher"
    assert paired["metrics"]["auc_roc"]["mean_gain"] == apart["metrics"]["auc_roc"]["mean_gain"]  # the interval alone
    assert "the interval draws the 2 pairs of runs and the 20 images with replacement" in out


def test_paired_runs_of_the_same_generators_in_another_order_are_refused(capsys):
    """Two DRIVE generators (seeds 2 and 3 of the CPU recipe) scored without and with --tta: given with the
    candidate's runs swapped, each pair was two generators, and the interval came out without a word (the seeds
    differ by more than flips gain). Refused, naming the order to give; apart, the order does not matter."""
    paired = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "paired"
    runs = {name: str(paired / f"{name}.json") for name in ("s2-none", "s3-none", "s2-flips", "s3-flips")}
    swapped = ["--baseline", runs["s2-none"], runs["s3-none"], "--candidate", runs["s3-flips"], runs["s2-flips"],
               "--metrics", "auc_roc"]
    code, out, err = compared(capsys, *swapped, "--paired-runs")
    assert code == 2 and out == ""
    assert (f"--paired-runs: pair 1 is {runs['s2-none']} of /tmp/s48/runs/s2/checkpoints/best.pt against "
            f"{runs['s3-flips']} of /tmp/s48/runs/s3/checkpoints/best.pt: the candidate's runs are the baseline's "
            f"generators in another order; give them in the baseline's: --candidate {runs['s2-flips']} "
            f"{runs['s3-flips']}") in err
    assert compared(capsys, *swapped)[0] == 0
    code, out, _ = compared(capsys, "--baseline", runs["s2-none"], runs["s3-none"], "--candidate", runs["s2-flips"],
                            runs["s3-flips"], "--metrics", "auc_roc", "--paired-runs")
    assert code == 0 and "higher" in out


def test_other_thresholds_are_said(reference_root, drive_root, evaluations, capsys, tmp_path):
    other = evaluation(lambda m, i: m, reference_root, drive_root, tmp_path / "t04", "--threshold", "0.4")
    code, out, _ = compared(capsys, evaluations["vgan"], other / "metrics.json")
    assert code == 0
    assert "note: f1 at each evaluation's own threshold: baseline 0.5 (fixed), candidate 0.4 (fixed)" in out


def test_another_observers_aucs_are_said_to_be_of_one_operating_point(drive_root, evaluations, capsys, tmp_path):
    """DRIVE's second observer against V-GAN's maps: the maps' AUC-ROC gain (+0.107) is one of a ranking over a
    single operating point, and the console says so where a ranking metric is compared; not for F1 alone."""
    human = tmp_path / "human"
    assert evaluate_main(["--observer", str(drive_root / "test" / "2nd_manual"), "--data", str(drive_root),
                          "--out", str(human), "--previews", "0"]) == 0
    code, out, _ = compared(capsys, human, evaluations["vgan"])
    assert code == 0 and re.search(r"auc_roc\s+0\.8735\s+0\.9803", out)
    assert (f"note: {human} scored another observer's labels: its auc_roc, auc_pr are of one operating point, not of "
            "a ranking (a probability map's are higher by construction): compare f1, accuracy, sensitivity, "
            "specificity, cldice") in out
    code, out, _ = compared(capsys, human, evaluations["vgan"], "--metrics", "f1,cldice")
    assert code == 0 and "one operating point" not in out and re.search(r"f1\s+0\.7891\s+0\.8256\s+\+0\.0365", out)


def test_several_runs_a_side_hold_trainings_noise(evaluations, capsys, tmp_path):
    """Two 'recipes' whose runs differ as seeds do: the baseline's V-GAN's maps and the same blurred at sigma 1.5,
    the candidate's blurred at 1.0 and 0.6 (a blur of 1 costs nearly every image; of 0.6 next to nothing). V-GAN's
    maps against the blur of 1 alone: lower, beyond the images' noise; the runs' spread, drawn too, puts the gain
    of the recipes within noise."""
    e = {k: str(v) for k, v in evaluations.items()}

    said = []

    def record(*argv):
        code, out, _ = compared(capsys, *argv, "--metrics", "auc_roc", "--json", tmp_path / "c.json")
        assert code == 0
        said.append(out)
        return json.loads((tmp_path / "c.json").read_text())["metrics"]["auc_roc"]

    pair = record(e["vgan"], e["blurred"])
    assert pair["verdict"] == "lower" and pair["interval"][1] < 0
    assert record("--baseline", e["vgan"], "--candidate", e["blurred"]) == pair  # one run a side: the pair's
    runs = record("--baseline", e["vgan"], e["blurred_15"], "--candidate", e["blurred"], e["blurred_06"])
    pooled = {k: json.loads((evaluations[k] / "metrics.json").read_text())["auc_roc"]
              for k in ("vgan", "blurred", "blurred_15", "blurred_06")}
    assert runs["baseline_runs"] == [pooled["vgan"], pooled["blurred_15"]]
    assert runs["baseline"] == pytest.approx((pooled["vgan"] + pooled["blurred_15"]) / 2)
    assert runs["candidate"] == pytest.approx((pooled["blurred"] + pooled["blurred_06"]) / 2)
    assert runs["interval"][0] < 0 < runs["interval"][1] and runs["verdict"] == "within noise"
    assert "the interval draws each side's runs (2 and 2) and the 20 images with replacement" in said[-1]
    assert "candidate 2 runs (" in said[-1] and "nothing of training's own noise" in said[0]


def edited(evaluations, tmp_path, edit):
    m = json.loads((evaluations["blurred"] / "metrics.json").read_text())
    edit(m)
    (tmp_path / "edited").mkdir(exist_ok=True)
    path = tmp_path / "edited" / "metrics.json"
    path.write_text(json.dumps(m))
    return path


PAIR_KEYS = ("pair_counts", "thin_pair_counts", "thick_pair_counts")


@pytest.mark.parametrize("edit, message", [
    (lambda m: (m["per_image"].pop(5), [m.pop(k) for k in PAIR_KEYS]),
     "not the images .* scored \\(06_test only in the baseline's\\)"),
    (lambda m: (m["per_image"][2].update(id="x_test"), [m[k]["ids"].__setitem__(2, "x_test") for k in PAIR_KEYS]),
     "03_test only in the baseline's; x_test only in this one"),
    (lambda m: m["per_image"][0].update(n_fov_pixels=224000), "01_test was scored with FOV pixels 224000, in .* "
     "with 224377: not the same masks or labels"),
    (lambda m: m["per_image"][1].update(vessel_fraction=0.2), "02_test was scored with vessel fraction of the label"),
    (lambda m: m["per_image"][4].update(f1="0.8"), "per_image 05_test has no f1 \\('0.8'\\)"),
    (lambda m: m.pop("per_image"), "no per_image rows"),
    (lambda m: m["per_image"].append(dict(m["per_image"][0])), "per_image holds 01_test twice"),
    (lambda m: m["pair_counts"]["ids"].pop(), "pair_counts.ids are not the ids of its per_image rows"),
    (lambda m: m["pair_counts"]["counts"][3].__setitem__(4, -1), "pair_counts.counts is not a 20 x 20 table of counts"),
    (lambda m: m["pair_counts"]["counts"][3].__setitem__(4, 1.5), "pair_counts.counts is not a 20 x 20 table"),
    (lambda m: m["pair_counts"]["counts"].pop(), "pair_counts.counts is not a 20 x 20 table"),
    (lambda m: m.update(pair_counts=[]), "pair_counts.ids are not the ids"),
    (lambda m: m["thin_pair_counts"]["ids"].pop(), "thin_pair_counts.ids are not the ids of its per_image rows"),
    (lambda m: m["pair_counts"]["counts"][3].__setitem__(4, m["pair_counts"]["counts"][3][4] + 10**9),
     "its pair_counts give a pooled auc_roc of 0.9.*, its file says 0.9.*: not the counts of the maps it scored"),
    (lambda m: m["per_image"][4].update(sensitivity=0.5), "its per_image rows give a pooled f1 of .*: not the counts"),
])
def test_evaluations_not_of_the_same_pixels_are_refused(evaluations, capsys, tmp_path, edit, message):
    code, out, err = compared(capsys, evaluations["vgan"], edited(evaluations, tmp_path, edit))
    assert code == 2 and out == ""
    assert err.startswith("vgan.compare: error: ") and "edited/metrics.json" in err
    assert re.search(message, err), err


@pytest.mark.parametrize("argv, message", [
    (["{vgan}", "{missing}"], "missing: no such folder or file (give a folder vgan.evaluate wrote"),
    (["{vgan}", "{empty}"], "empty/metrics.json: no such file (not a folder vgan.evaluate wrote?)"),
    (["{vgan}", "{vgan}/metrics.json"], "vgan/metrics.json: given twice"),
    (["{vgan}", "{blurred}", "--metrics", "auc_roc,dice"], "--metrics 'auc_roc,dice': unknown dice; give some of"),
    (["{vgan}", "{blurred}", "--metrics", ","], "none named"),
    (["{vgan}", "{blurred}", "--confidence", "1"], "--confidence 1.0: must lie strictly between 0 and 1"),
    (["{vgan}", "{not_json}"], "not_json/metrics.json: not a metrics file vgan.evaluate writes"),
    (["{vgan}", "{blurred}", "{noised_a}"], "3 evaluation(s) given: give two, BASELINE CANDIDATE"),
    (["{vgan}", "{blurred}", "--baseline", "{noised_a}"], "give BASELINE CANDIDATE, or --baseline EVAL"),
    (["--baseline", "{vgan}", "{blurred}"], "--candidate: missing"),
    (["{vgan}", "{blurred}", "--paired-runs"], "--paired-runs pairs --baseline's runs with --candidate's"),
    (["--baseline", "{vgan}", "{blurred}", "--candidate", "{noised_a}", "--paired-runs"],
     "--paired-runs: 2 baseline runs and 1 candidate runs: pairs need as many a side"),
    (["--baseline", "{vgan}", "{blurred}", "--candidate", "{noised_a}", "{blurred}"],
     "blurred/metrics.json: given twice"),
    (["{vgan}", "{blurred}", "--margin", "-0.01"], "--margin '-0.01': '-0.01' is not a figure of 0 or more"),
    (["{vgan}", "{blurred}", "--margin", "nan"], "--margin 'nan': 'nan' is not a figure of 0 or more"),
    (["{vgan}", "{blurred}", "--margin", "auc_roc=x"], "--margin 'auc_roc=x': auc_roc: 'x' is not a figure"),
    (["{vgan}", "{blurred}", "--margin", "dice=0.1"], "'dice=0.1' is not METRIC=FIGURE for a metric compared "
     "(auc_roc, auc_pr, f1; --metrics names them)"),
    (["{vgan}", "{blurred}", "--margin", "auc_roc=0.1,0.2"], "'0.2' is not METRIC=FIGURE"),
    (["{vgan}", "{blurred}", "--metrics", "f1", "--margin", "auc_roc=0.1"], "'auc_roc=0.1' is not METRIC=FIGURE "
     "for a metric compared (f1;"),
    (["{vgan}", "{blurred}", "--margin", "f1=0.1,f1=0.2"], "--margin 'f1=0.1,f1=0.2': f1 given twice"),
])
def test_bad_arguments_exit_2_naming_them(evaluations, capsys, tmp_path, argv, message):
    (tmp_path / "not_json").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "not_json" / "metrics.json").write_text("{auc")
    paths = {**{k: str(v) for k, v in evaluations.items()}, "missing": str(tmp_path / "missing"),
             "not_json": str(tmp_path / "not_json"), "empty": str(tmp_path / "empty")}
    code, out, err = compared(capsys, *(a.format(**paths) for a in argv))
    assert code == 2 and out == "" and message in err, err


def test_a_json_that_cannot_be_written_is_refused_before_anything_is_printed(evaluations, capsys, tmp_path):
    (tmp_path / "file").write_text("")
    code, out, err = compared(capsys, evaluations["vgan"], evaluations["blurred"], "--json", tmp_path / "file" / "c")
    assert code == 2 and out == "" and "--json" in err and "is a file, not a folder" in err


def test_an_evaluation_is_named_as_it_was_given(evaluations, capsys, tmp_path):
    """Its folder, or the file where metrics.json was kept under another name (two such files share a folder)."""
    for name in ("vgan", "blurred"):
        (tmp_path / f"{name}.json").write_text((evaluations[name] / "metrics.json").read_text())
    code, out, _ = compared(capsys, tmp_path / "vgan.json", tmp_path / "blurred.json")
    assert code == 0 and out.startswith(f"candidate {tmp_path / 'blurred.json'} against baseline "
                                        f"{tmp_path / 'vgan.json'}: drive test, 20 images")
    code, out, _ = compared(capsys, evaluations["vgan"] / "metrics.json", evaluations["blurred"])
    assert out.startswith(f"candidate {evaluations['blurred']} against baseline {evaluations['vgan']}: ")
