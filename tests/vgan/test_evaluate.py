import csv
import json

import numpy as np
import pytest
import yaml
from conftest import folder_dataset, frame_white, two_camera_dataset, write_yaml
from PIL import Image
from test_metrics import reference_table

from vgan.evaluate import main as evaluate_main
from vgan.images import FRAME_NOTE, read_binary, read_probability
from vgan.predict import main as predict_main
from vgan.provenance import code_record
from vgan.scale import fov_diameter
from vgan.train import main as train_main
from vgan.trainer import generator_from_checkpoint, load_checkpoint
from vgan.visualize import error_overlay, to_uint8

KEYS = ("auc_roc", "auc_pr", "average_precision", "threshold", "f1", "accuracy", "sensitivity", "specificity")


def test_scores_vgan_published_maps(reference_root, drive_root, tmp_path, capsys):
    out = tmp_path / "eval"
    assert evaluate_main(["--predictions", str(reference_root / "DRIVE"), "--data", str(drive_root),
                          "--split", "test", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert all(isinstance(m[k], float) for k in KEYS)
    assert m["dataset"] == "drive" and m["n_images"] == 20
    for key, value in reference_table(reference_root)["DRIVE"].items():
        assert round(m[key], 4) == value
    assert (out / "roc.png").is_file() and (out / "pr.png").is_file()
    # each image's own scores: in the split's order in metrics.json, worst AUC-ROC first in per_image.csv
    assert [r["id"] for r in m["per_image"]] == [f"{i:02d}_test" for i in range(1, 21)]
    # pair counts, from which vgan.compare takes the pooled AUC-ROC of any draw of the images: every image once
    pairs = m["pair_counts"]
    assert pairs["ids"] == [r["id"] for r in m["per_image"]] and np.shape(pairs["counts"]) == (20, 20)
    assert np.sum(pairs["counts"]) / (2 * m["n_vessel_pixels"] * (m["n_fov_pixels"] - m["n_vessel_pixels"])) == \
        pytest.approx(m["auc_roc"], abs=1e-12)
    # each pooled figure's interval over the images, as the console says it
    intervals = m["intervals"]
    assert (intervals["confidence"], intervals["draws"]) == (0.95, 10_000)
    scored = ("auc_roc", "f1", "accuracy", "sensitivity", "specificity", "cldice", "thin_sensitivity",
              "thick_sensitivity", "thin_auc_roc", "thick_auc_roc")
    assert set(intervals) - {"confidence", "draws", "seed"} == set(scored)
    for key in scored:
        assert intervals[key][0] < m[key] < intervals[key][1]
    # clDice of the vessels' centrelines: 0.8164 with scikit-image's thin and this FOV protocol (checked once, by
    # hand: the skeletons are pixel for pixel thin's), pooled from the images' centreline counts
    assert round(m["cldice"], 4) == 0.8164
    kept_pred, pred_px, kept_label, label_px = (
        sum(round(r[share] * r[px]) for r in m["per_image"]) if share else sum(r[px] for r in m["per_image"])
        for share, px in (("cl_precision", "skeleton_px"), (None, "skeleton_px"),
                          ("cl_sensitivity", "label_skeleton_px"), (None, "label_skeleton_px")))
    precision, sensitivity = kept_pred / pred_px, kept_label / label_px
    assert m["cldice"] == pytest.approx(2 * precision * sensitivity / (precision + sensitivity), abs=1e-12)
    # the vessels split by width: every labelled FOV pixel thin or thick, each share pooled from the images' counts,
    # and the sensitivity their mean weighted by pixels; V-GAN's maps, as a person's, miss the thin ones most
    thin_px, thick_px = (sum(r[k] for r in m["per_image"]) for k in ("thin_vessel_px", "thick_vessel_px"))
    assert thin_px + thick_px == m["n_vessel_pixels"] and 0.2 < thin_px / m["n_vessel_pixels"] < 0.4
    thin_hit, thick_hit = (sum(round(r[k + "_sensitivity"] * r[k + "_vessel_px"]) for r in m["per_image"])
                           for k in ("thin", "thick"))
    assert (m["thin_sensitivity"], m["thick_sensitivity"]) == (thin_hit / thin_px, thick_hit / thick_px)
    assert m["sensitivity"] == pytest.approx((thin_hit + thick_hit) / (thin_px + thick_px), abs=1e-12)
    assert m["thin_sensitivity"] < m["sensitivity"] - 0.1 < m["thick_sensitivity"] - 0.1
    assert m["thin_auc_roc"] < m["auc_roc"] < m["thick_auc_roc"]  # at no threshold
    for width, px in (("thin", thin_px), ("thick", thick_px)):  # each width's pairs, as the vessels' pair_counts
        background = m["n_fov_pixels"] - m["n_vessel_pixels"]
        assert np.sum(m[f"{width}_pair_counts"]["counts"]) / (2 * px * background) == \
            pytest.approx(m[f"{width}_auc_roc"], abs=1e-12)
    said = capsys.readouterr().out
    assert f"specificity {m['specificity']:.4f}  cldice {m['cldice']:.4f}\n" in said  # the widths on a line of theirs
    lo, hi = intervals["thin_auc_roc"]
    assert ("\nby vessel width (31% of the labelled vessel pixels thin, under 3 px across; intervals as above): "
            f"thin_sensitivity {m['thin_sensitivity']:.4f} [{intervals['thin_sensitivity'][0]:.4f}, ") in said
    assert f"thin_auc_roc {m['thin_auc_roc']:.4f} [{lo:.4f}, {hi:.4f}]  thick_auc_roc {m['thick_auc_roc']:.4f} [" \
        in said
    assert (f"95% intervals over the images (drawn with replacement, 10,000 times; nothing of training's own noise): "
            f"auc_roc [{intervals['auc_roc'][0]:.4f}, {intervals['auc_roc'][1]:.4f}]  f1 [") in said
    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    aucs = [float(r["auc_roc"]) for r in rows]
    assert aucs == sorted(aucs) and len(rows) == 20 and float(rows[0]["f1"]) < m["f1"]
    assert {r["converted"] for r in rows} == {""}  # DRIVE's photographs are read as they are
    worst = min(m["per_image"], key=lambda r: r["auc_roc"])
    assert rows[0]["id"] == worst["id"] and float(rows[0]["auc_roc"]) == round(worst["auc_roc"], 6)
    assert f"lowest AUC-ROC: {worst['id']} {worst['auc_roc']:.4f}" in said
    # previews of the three worst: image | probability | truth | errors at the threshold, at the image's size
    shots = sorted((out / "previews").iterdir())
    assert [p.name for p in shots] == [f"{k}_{r['id']}.png" for k, r in enumerate(rows[:3], 1)]
    shot = np.asarray(Image.open(shots[0]))
    assert shot.shape[1] == 4 * 565 and shot.shape[0] > 584
    errors = error_overlay(read_probability(reference_root / "DRIVE" / f"{worst['id']}.tif"),
                           read_binary(drive_root / "test" / "1st_manual" / f"{worst['id'][:2]}_manual1.gif"),
                           read_binary(drive_root / "test" / "mask" / f"{worst['id']}_mask.gif"))
    np.testing.assert_array_equal(shot[-584:, 3 * 565 :], to_uint8(errors))
    # evaluated again into the same folder: the previews are this evaluation's only
    (out / "previews" / "notes.txt").write_text("a user's file stays")
    assert evaluate_main(["--predictions", str(reference_root / "DRIVE"), "--data", str(drive_root),
                          "--out", str(out), "--previews", "1"]) == 0
    assert sorted(p.name for p in (out / "previews").iterdir()) == [shots[0].name, "notes.txt"]


def test_predictions_by_numeric_id_and_npy(drive_root, tmp_path, capsys):
    # maps named "01.npy" (float) are matched to image 01_test; (1, H, W) as a map of a batch's is saved, or (H, W)
    from vgan.config import DataConfig
    from vgan.data import read_pool

    test = read_pool(DataConfig(dataset="drive", root=str(drive_root)), "test")
    preds = tmp_path / "preds"
    preds.mkdir()
    for i, image_id in enumerate(test.ids):
        label = test.labels[i].numpy() if i % 2 else test.labels[i, 0].numpy()
        np.save(preds / f"{image_id.split('_')[0]}.npy", label * 0.8 + 0.1)
    assert evaluate_main(["--predictions", str(preds), "--data", str(drive_root), "--out", str(tmp_path / "o"),
                          "--previews", "0"]) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["auc_roc"] == 1.0 and m["f1"] == 1.0 and m["fov"] == "masks"
    assert not (tmp_path / "o" / "previews").exists()


def test_a_second_observers_labels_are_scored_as_the_literatures_human_performance(drive_root, stare_root, tmp_path,
                                                                                   capsys):
    """`--observer` scores another observer's labels of the test split as binary maps: DRIVE's 2nd_manual
    (01_manual2.gif: palette GIFs of near-black and near-white, which --predictions refuses as colour) and STARE's
    labels-vk (im0162.vk.ppm), each found as the public sets name a second observer's. STARE's gives
    the agreement its data README states (accuracy 0.938, Se 0.945, Sp 0.937); DRIVE's the literature's
    human performance (accuracy 0.9472-0.9473, Se about 0.776, Sp about 0.972). Their AUC-ROC is that of one
    operating point, and the console says so."""
    human = tmp_path / "human"
    assert evaluate_main(["--observer", str(drive_root / "test" / "2nd_manual"), "--data", str(drive_root),
                          "--out", str(human), "--previews", "1"]) == 0
    m = json.loads((human / "metrics.json").read_text())
    assert m["observer"] is True and m["n_images"] == 20 and m["fov"] == "masks"
    assert [round(m[k], 3) for k in ("accuracy", "sensitivity", "specificity")] == [0.947, 0.775, 0.972]
    assert m["auc_roc"] == pytest.approx((m["sensitivity"] + m["specificity"]) / 2, abs=1e-9)
    assert 0.75 < m["cldice"] < m["f1"] < 0.8
    said = capsys.readouterr().out
    assert "note: another observer's labels, scored as binary maps: AUC-ROC and AUC-PR are those of their one " in said
    assert len(list((human / "previews").iterdir())) == 1
    assert evaluate_main(["--observer", str(stare_root / "labels-vk"), "--data", str(stare_root),
                          "--out", str(tmp_path / "human-stare"), "--previews", "0"]) == 0
    m = json.loads((tmp_path / "human-stare" / "metrics.json").read_text())
    assert [round(m[k], 3) for k in ("accuracy", "sensitivity", "specificity")] == [0.938, 0.945, 0.937]
    # as maps, the same GIFs are colour: refused, and a folder with two files named after one image too
    assert evaluate_main(["--predictions", str(drive_root / "test" / "2nd_manual"), "--data", str(drive_root),
                          "--out", str(tmp_path / "o")]) == 2
    assert "01_manual2.gif: a probability map in colour" in capsys.readouterr().err
    two = tmp_path / "two"  # maps named by the image's number and a suffix: two for one image are refused
    two.mkdir()
    for name in ("01_prob.npy", "01_copy.npy"):
        np.save(two / name, np.zeros((584, 565), np.float32))
    assert evaluate_main(["--predictions", str(two), "--data", str(drive_root), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (f"vgan.evaluate: error: {two}/01_copy.npy and {two}/01_prob.npy: two maps "
                                       "named after image 01_test\n")


def test_missing_or_misfit_prediction_exits_2(reference_root, drive_root, tmp_path, capsys):
    preds = tmp_path / "preds"
    preds.mkdir()
    for f in sorted((reference_root / "DRIVE").glob("*.tif"))[1:]:
        (preds / f.name).symlink_to(f)
    assert evaluate_main(["--predictions", str(preds), "--data", str(drive_root), "--out", str(tmp_path / "o")]) == 2
    assert "no probability map for image 01_test" in capsys.readouterr().err
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(preds / "01_test.png")
    assert evaluate_main(["--predictions", str(preds), "--data", str(drive_root), "--out", str(tmp_path / "o")]) == 2
    assert "01_test.png: size 10x10 does not match image 01_test" in capsys.readouterr().err
    (tmp_path / "taken").write_text("a file where the report would go")
    assert evaluate_main(["--predictions", str(preds), "--data", str(drive_root), "--out",
                          str(tmp_path / "taken" / "o")]) == 2
    assert "taken/o: cannot write there (Not a directory)" in capsys.readouterr().err


def test_pair_counts_past_the_work_limit_are_counted_by_value_or_left_out(reference_root, drive_root, tmp_path,
                                                                           capsys, monkeypatch):
    """V-GAN's 8-bit maps are counted by value whatever the work; the same maps made continuous are not counted past
    the limit, and the evaluation says what that leaves vgan.compare."""
    monkeypatch.setattr("vgan.metrics.PAIR_WORK_LIMIT", 0)
    assert evaluate_main(["--predictions", str(reference_root / "DRIVE"), "--data", str(drive_root),
                          "--out", str(tmp_path / "bytes"), "--previews", "0"]) == 0
    assert "pair_counts" in json.loads((tmp_path / "bytes" / "metrics.json").read_text())
    assert "no pair_counts kept" not in capsys.readouterr().out
    maps = tmp_path / "continuous"
    maps.mkdir()
    for i, path in enumerate(sorted((reference_root / "DRIVE").glob("*_test.tif"))):
        noise = np.random.default_rng(i).normal(0, 0.01, (584, 565))
        np.save(maps / f"{path.stem}.npy", np.clip(read_probability(path) + noise, 0, 1).astype(np.float32))
    assert evaluate_main(["--predictions", str(maps), "--data", str(drive_root), "--out", str(tmp_path / "floats"),
                          "--previews", "0"]) == 0
    m = json.loads((tmp_path / "floats" / "metrics.json").read_text())
    assert "pair_counts" not in m and len(m["per_image"]) == 20
    assert "auc_roc" not in m["intervals"] and m["intervals"]["f1"][0] < m["f1"] < m["intervals"]["f1"][1]
    said = capsys.readouterr().out
    assert f"no pair_counts kept: 20 images x {m['n_vessel_pixels']} vessel pixels pass 0 and the maps take more " \
        "than 4096 values: " \
        "vgan.compare will give this evaluation's AUC-ROC an interval of its mean per-image gain" in said


def test_checkpoint_evaluation_writes_maps_and_metrics(tiny_config_file, tmp_path):
    run = tmp_path / "run"
    assert train_main(["--config", str(tiny_config_file), "--out", str(run)]) == 0
    out = tmp_path / "eval"
    assert evaluate_main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--split", "test",
                          "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert all(isinstance(m[k], float) for k in KEYS) and m["split"] == "test" and m["n_images"] == 3
    assert m["fov"] == "generated"
    probs = sorted((out / "probabilities").glob("*.png"))
    assert [p.stem for p in probs] == ["test000", "test001", "test002"]
    binary = np.asarray(Image.open(out / "binary" / "test000.png"))
    assert set(np.unique(binary)) <= {0, 255}
    assert (out / "roc.png").is_file() and len(list((out / "previews").iterdir())) == 3  # all three: the worst 3

    out2 = tmp_path / "eval_val_thr"
    assert evaluate_main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--val-threshold",
                          "--out", str(out2)]) == 0
    m2 = json.loads((out2 / "metrics.json").read_text())
    assert m2["threshold_source"] == "validation best F1" and m2["auc_roc"] == m["auc_roc"]


def test_tta_scores_the_mean_of_mirrored_views_and_picks_its_threshold_on_them(tiny_config_file, tmp_path, capsys):
    """--tta flips: the test maps are the mean of each image's four mirrored views, and --val-threshold
    picks the best-F1 threshold of validation maps made the same way."""
    import torch

    from vgan.config import config_from_dict
    from vgan.data import load_split
    from vgan.evaluate import score_maps
    from vgan.inputs import unit_float
    from vgan.trainer import generator_from_checkpoint, load_checkpoint, predict
    from vgan.tta import with_tta

    run = tmp_path / "run"
    assert train_main(["--config", str(tiny_config_file), "--out", str(run), "--quiet"]) == 0
    ckpt = run / "checkpoints" / "best.pt"
    scored = {}
    for tta in ("none", "flips"):
        assert evaluate_main(["--checkpoint", str(ckpt), "--val-threshold", "--tta", tta,
                              "--out", str(tmp_path / tta)]) == 0
        scored[tta] = json.loads((tmp_path / tta / "metrics.json").read_text())
    assert "--tta flips, threshold" in capsys.readouterr().out
    g, _ = generator_from_checkpoint(load_checkpoint(ckpt), str(ckpt), torch.device("cpu"))
    cfg = config_from_dict(yaml.safe_load(tiny_config_file.read_text()))
    model = with_tta(lambda x: predict(g, x, torch.device("cpu")), "flips")
    with torch.no_grad():
        want = {name: score_maps([model(unit_float(x[None]))[0, 0].numpy() for x in split.images], split, 0.5)[0]
                for name, split in ((s, load_split(cfg.data, s)) for s in ("val", "test"))}
    m = scored["flips"]
    assert m["tta"] == "flips" and scored["none"]["tta"] == "none"
    assert m["threshold"] == want["val"]["best_f1_threshold"] != scored["none"]["threshold"]
    assert m["auc_roc"] == pytest.approx(want["test"]["auc_roc"], abs=1e-6) != scored["none"]["auc_roc"]
    maps = np.asarray(Image.open(tmp_path / "flips" / "probabilities" / "test000.png"))
    assert (maps != np.asarray(Image.open(tmp_path / "none" / "probabilities" / "test000.png"))).mean() > 0.1


def test_data_of_another_dataset_is_honoured(tiny_config_file, tmp_path, stare_root, capsys):
    """A synthetic-data checkpoint scored on STARE's test images: --data is what gets scored, said so."""
    run = tmp_path / "run"
    assert train_main(["--config", str(tiny_config_file), "--out", str(run), "--quiet"]) == 0
    out = tmp_path / "eval"
    assert evaluate_main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--data", str(stare_root),
                          "--out", str(out)]) == 0
    assert "scoring a generator trained on synthetic on stare" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"] == "stare" and m["trained_on"] == "synthetic" and m["n_images"] == 10
    assert m["code"] == code_record()  # the code that wrote the checkpoint (here: this checkout, as it is)
    assert (out / "probabilities" / "im0162.png").is_file()
    assert m["scale"] == "1" and m["scale_factors"] == [1.0] * 10  # the literature's protocol: as they are
    # --scale auto: each STARE image resized so its FOV is as wide as the synthetic training images'
    auto = tmp_path / "auto"
    assert evaluate_main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--data", str(stare_root),
                          "--out", str(auto), "--scale", "auto"]) == 0
    a = json.loads((auto / "metrics.json").read_text())
    masks = [read_binary(stare_root / "mask" / f"{i}.mask.ppm") for i in ("im0162", "im0163")]
    assert 40 < a["trained_fov_diameter"] < 48 and a["scale"] == "auto"
    assert a["scale_factors"][:2] == [round(a["trained_fov_diameter"] / fov_diameter(k), 4) for k in masks]
    assert a["n_fov_pixels"] == m["n_fov_pixels"] and a["auc_roc"] != m["auc_roc"]  # scored at STARE's size
    assert Image.open(auto / "probabilities" / "im0162.png").size == (700, 605)


def test_a_model_of_ones_own_dataset_is_trained_and_scored(tiny_values, drive_root, tmp_path, capsys):
    """A folder dataset (here DRIVE's first images under names of their own, without FOV masks) trains with
    --data, and vgan.evaluate finds its layout: the test split scored, the maps named after the images,
    the FOV said to be estimated (such scores are not the literature's protocol); a photograph framed white is
    trained on and scored with its frame black, and both commands say so, and the evaluation records it."""
    root = folder_dataset(drive_root, tmp_path / "own", {"training": 5, "test": 2}, masks=False)
    for photo in ("training/images/eye22_training.tif", "test/images/eye01_test.tif"):
        frame_white(drive_root, root / photo)
    tiny_values["data"] = {"dataset": "folder", "val_count": 1, "crop_size": 32}
    config = tmp_path / "own.yaml"
    config.write_text(yaml.safe_dump(tiny_values))
    run = tmp_path / "run"
    assert train_main(["--config", str(config), "--data", str(root), "--out", str(run), "--quiet"]) == 0
    out = tmp_path / "eval"
    assert evaluate_main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--data", str(root),
                          "--split", "test", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"] == m["trained_on"] == "folder" and m["n_images"] == 2 and m["fov"] == "estimated"
    said = capsys.readouterr().out
    assert "(4 train / 1 val images, FOV estimated from the photographs)" in said
    assert "folder test (2 images, FOV estimated from the photographs, threshold 0.5000)" in said
    assert m["converted"] == {FRAME_NOTE: ["eye01_test"]}
    assert said.count("note: photographs converted as read") == 2
    assert (f"note: photographs converted as read, as vgan.predict converts them: {FRAME_NOTE} (1 of 5: "
            "eye22_training)\n") in said
    assert f"as vgan.predict converts them: {FRAME_NOTE} (1 of 2: eye01_test)\n" in said
    with open(out / "per_image.csv") as f:  # and each row names its own, as vgan.predict's report.csv does
        assert {r["id"]: r["converted"] for r in csv.DictReader(f)} == {"eye01_test": FRAME_NOTE, "eye02_test": ""}
    assert all(isinstance(m[k], float) for k in KEYS) and 0 < m["auc_roc"] < 1 and "copies_trained_on" not in m
    assert sorted(p.name for p in (out / "probabilities").iterdir()) == ["eye01_test.png", "eye02_test.png"]


def test_the_folders_the_tools_write_are_scored_from_their_probability_maps(tiny_values, drive_root, tmp_path):
    """`vgan.predict`'s batch folder and `vgan.evaluate`'s own output hold their maps in probabilities/, beside
    binary maps, overlays and plots (roc.png): `--predictions` given either folder scores its probability maps,
    as it would given probabilities/ itself (before, it looked for <id>.png beside them and exited 2)."""
    root = folder_dataset(drive_root, tmp_path / "own", {"training": 4, "test": 2}, masks=False)
    tiny_values["data"] = {"dataset": "folder", "val_count": 1, "crop_size": 32}
    run = tmp_path / "run"
    assert train_main(["--config", str(write_yaml(tmp_path / "own.yaml", tiny_values)), "--data", str(root),
                       "--out", str(run), "--quiet"]) == 0
    checkpoint = str(run / "checkpoints" / "best.pt")
    batch, evaluated = tmp_path / "batch", tmp_path / "eval"
    assert predict_main(["--checkpoint", checkpoint, "--input", str(root / "test" / "images"), "--out",
                         str(batch), "--scale", "1"]) == 0
    assert evaluate_main(["--checkpoint", checkpoint, "--data", str(root), "--split", "test", "--out",
                          str(evaluated)]) == 0
    direct = json.loads((evaluated / "metrics.json").read_text())
    assert (evaluated / "roc.png").is_file() and (batch / "binary" / "eye01_test.png").is_file()
    scored = {}
    for name, folder in [("batch", batch), ("batch maps", batch / "probabilities"), ("evaluation", evaluated)]:
        assert evaluate_main(["--predictions", str(folder), "--data", str(root), "--split", "test", "--out",
                              str(tmp_path / name), "--previews", "0"]) == 0, name
        scored[name] = json.loads((tmp_path / name / "metrics.json").read_text())
        assert scored[name]["source"] == str((folder if name == "batch maps" else folder / "probabilities").resolve())
    # one generator's maps at the images' own size, each saved in 16 bits: alike inside the FOV (the batch's are
    # 0 outside it; its images one at a time, the evaluation's two at once: a level apart here and there), and
    # the unrounded maps' scores
    assert scored["batch"] == {**scored["batch maps"], "source": scored["batch"]["source"]}
    for name in scored:
        assert scored[name]["auc_roc"] == pytest.approx(direct["auc_roc"], abs=1e-4), name


def test_a_test_photograph_that_is_a_training_ones_file_is_named_when_scored(tiny_values, drive_root, tmp_path,
                                                                             capsys):
    """A folder made by hand with a training photograph copied into test under another name: vgan.train reads
    its training pool only, so vgan.evaluate of the test split is where the copy is met: it says so, and records
    it (one copy, named with its pools); the other test photograph is no copy."""
    import shutil

    root = folder_dataset(drive_root, tmp_path / "own", {"training": 4, "test": 1}, masks=False)
    shutil.copy(root / "training" / "images" / "eye22_training.tif", root / "test" / "images" / "eye99_test.tif")
    shutil.copy(root / "training" / "labels" / "eye22_training.png", root / "test" / "labels" / "eye99_test.png")
    tiny_values["data"] = {"dataset": "folder", "val_count": 1, "crop_size": 32}
    run = tmp_path / "run"
    assert train_main(["--config", str(write_yaml(tmp_path / "own.yaml", tiny_values)), "--data", str(root),
                       "--out", str(run), "--quiet"]) == 0
    assert "the same photograph" not in capsys.readouterr().out
    assert evaluate_main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--data", str(root), "--split",
                          "test", "--out", str(tmp_path / "eval"), "--previews", "0"]) == 0
    copied = ("1 of the test split's photographs is also in the training pool, as the same file under another name "
              "(eye22_training (training) and eye99_test (test)): its scores are of photographs the models trained "
              "on; leave one copy out")
    assert f"note: {copied}\n" in capsys.readouterr().out
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["copies_trained_on"] == copied
    # the validation split is no test: scored there, nothing is said
    assert evaluate_main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--data", str(root), "--split",
                          "val", "--out", str(tmp_path / "val"), "--previews", "0"]) == 0
    assert "copies_trained_on" not in json.loads((tmp_path / "val" / "metrics.json").read_text())


def test_a_model_of_two_cameras_photographs_is_trained_and_scored_at_their_sizes(tiny_values, drive_root,
                                                                                 stare_root, tmp_path):
    """DRIVE's and STARE's photographs in one folder dataset: trained on crops of both, validated and scored with
    each photograph at its own size; maps, previews and pooled pixels are each image's own."""
    root = two_camera_dataset(drive_root, stare_root, tmp_path / "own", {"training": (3, 2), "test": (1, 1)})
    tiny_values["data"] = {"dataset": "folder", "val_count": 2, "split_seed": 3, "crop_size": 32}
    config = tmp_path / "own.yaml"
    config.write_text(yaml.safe_dump(tiny_values))
    run = tmp_path / "run"
    assert train_main(["--config", str(config), "--data", str(root), "--out", str(run), "--quiet"]) == 0
    previews = {p.name.split("_", 1)[1]: Image.open(p).size for p in (run / "previews").glob("epoch0002_*.png")}
    assert len(previews) == 2 and all(w == 4 * (565 if name.startswith("eye") else 700)
                                      for name, (w, _) in previews.items()), previews
    out = tmp_path / "eval"
    assert evaluate_main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--data", str(root),
                          "--split", "test", "--scale", "1", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert Image.open(out / "probabilities" / "eye01_test.png").size == (565, 584)
    assert Image.open(out / "binary" / "im0003.png").size == (700, 605)
    fov = [read_binary(p) for p in (root / "test" / "masks" / "eye01_test_mask.gif",
                                    root / "test" / "masks" / "im0003.mask.ppm")]
    assert m["n_images"] == 2 and m["n_fov_pixels"] == sum(int(k.sum()) for k in fov) and 0 < m["auc_roc"] < 1


def test_two_cameras_photographs_trained_at_one_fov_diameter_are_scored_at_it(tiny_values, drive_root, stare_root,
                                                                             tmp_path, capsys):
    """data.fov_diameter: the STARE photographs of a DRIVE + STARE pool are brought to DRIVE's scale to train
    (vgan.train says it, and says the mixed scales of a pool trained without it), the generator records that
    scale, and vgan.evaluate scores the test split at it by default, at each image's own size."""
    root = two_camera_dataset(drive_root, stare_root, tmp_path / "own", {"training": (3, 2), "test": (1, 1)})
    tiny_values["data"] = {"dataset": "folder", "val_count": 2, "split_seed": 3, "crop_size": 32}
    config = tmp_path / "own.yaml"
    config.write_text(yaml.safe_dump(tiny_values))
    assert train_main(["--config", str(config), "--data", str(root), "--out", str(tmp_path / "mixed"), "--epochs", "1",
                       "--quiet"]) == 0
    assert "note: the training photographs' FOVs are 536-" in capsys.readouterr().out
    tiny_values["data"]["fov_diameter"] = "median"  # the training split's: 3 DRIVE + 2 STARE at split seed 3
    config.write_text(yaml.safe_dump(tiny_values))
    assert train_main(["--config", str(config), "--data", str(root), "--out", str(tmp_path / "median"), "--epochs",
                       "1", "--quiet"]) == 0
    said = capsys.readouterr().out
    g = generator_from_checkpoint(load_checkpoint(tmp_path / "median" / "checkpoints" / "best.pt"), "m", "cpu")[0]
    assert f"images at a FOV of {g.trained_fov:.0f} px (their median))" in said and "note:" not in said
    tiny_values["data"]["fov_diameter"] = 540
    config.write_text(yaml.safe_dump(tiny_values))
    run = tmp_path / "run"
    assert train_main(["--config", str(config), "--data", str(root), "--out", str(run), "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "(3 train / 2 val images at a FOV of 540 px)" in said and "note:" not in said
    out = tmp_path / "eval"
    assert evaluate_main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--data", str(root),
                          "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    stare_fov = fov_diameter(read_binary(root / "test" / "masks" / "im0003.mask.ppm"))
    assert abs(m["trained_fov_diameter"] - 540) <= 5 and m["scale"] == "auto"
    assert m["scale_factors"] == [1.0, round(m["trained_fov_diameter"] / stare_fov, 4)]
    assert Image.open(out / "probabilities" / "im0003.png").size == (700, 605)  # scored at its own size
    as_is = tmp_path / "as_is"
    assert evaluate_main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--data", str(root),
                          "--scale", "1", "--out", str(as_is)]) == 0
    m1 = json.loads((as_is / "metrics.json").read_text())
    assert m1["scale"] == "1" and m1["scale_factors"] == [1.0, 1.0] and m1["n_fov_pixels"] == m["n_fov_pixels"]


def test_noise_drawings(tiny_config_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(["--config", str(tiny_config_file), "--out", str(run), "--epochs", "1"]) == 0
    out = tmp_path / "noise"
    assert evaluate_main(["--checkpoint", str(run / "checkpoints" / "last.pt"), "--noise", "2",
                          "--noise-size", "40", "56", "--out", str(out)]) == 0
    drawn = sorted((out / "noise").glob("*.png"))
    assert len(drawn) == 2 and np.asarray(Image.open(drawn[0])).shape == (40, 112, 3)
    for size in (["0", "0"], ["-4", "8"], ["100000", "100000"]):  # tracebacks before, the last after asking 120 GB
        assert evaluate_main(["--checkpoint", str(run / "checkpoints" / "last.pt"), "--noise", "1",
                              "--noise-size", *size, "--out", str(tmp_path / "bad")]) == 2
        assert f"--noise-size {' '.join(size)}: each side must be 1 to 4096 pixels" in capsys.readouterr().err


@pytest.mark.parametrize("argv, fragment", [
    (["--checkpoint", "nowhere.pt"], "nowhere.pt: checkpoint not found"),
    (["--predictions", "p", "--val-threshold"], "--val-threshold needs --checkpoint"),
    (["--predictions", "p"], "--predictions needs --data"),
    (["--predictions", "p", "--data", "d", "--previews", "-1"], "--previews -1: give a number of images, 0 for none"),
    (["--predictions", "p", "--data", "d", "--tta", "flips"], "--tta flips needs --checkpoint"),
    (["--checkpoint", "c.pt", "--noise", "2", "--tta", "hflip"], "--tta hflip: --noise draws each map from noise once"),
    (["--checkpoint", "c.pt", "--scale", "huge"], "--scale huge: give 'auto' or a factor"),
    # a maps folder takes no factor, but a wrong one is refused, not ignored; so are thresholds outside (0, 1)
    (["--predictions", "p", "--data", "d", "--scale", "0"], "--scale 0: a factor must be above 0"),
    (["--predictions", "p", "--data", "d", "--threshold", "1.5"], "--threshold 1.5: must lie strictly between 0 and 1"),
    (["--predictions", "p", "--data", "d", "--threshold", "nan"], "--threshold nan: must lie strictly between"),
])
def test_bad_arguments_exit_2(argv, fragment, tmp_path, capsys):
    assert evaluate_main(argv + ["--out", str(tmp_path / "o")]) == 2
    assert fragment in capsys.readouterr().err
