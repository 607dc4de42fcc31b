"""benchmarks.mixed_scale: a two-camera pool made from DRIVE, and every arm trained and scored on it."""

import json

import numpy as np
import pytest
import yaml

from benchmarks.mixed_scale import RECIPE, main, write_pool
from vgan.config import DataConfig, config_from_dict
from vgan.data import read_pool, split_indices
from vgan.scale import fov_diameter


def test_the_second_camera_is_drive_enlarged(drive_root, tmp_path):
    write_pool(drive_root, tmp_path, "training", 2, 1.6, first=3)
    made = read_pool(DataConfig(dataset="folder", root=str(tmp_path)), "training")
    drive = read_pool(DataConfig(dataset="drive", root=str(drive_root)), "training")
    assert made.ids == drive.ids[:3] and made.image_size(1) == drive.image_size(1) == (584, 565)
    assert made.image_size(0) == made.image_size(2) == (934, 904)  # 584 x 565 x 1.6
    for i in (0, 2):
        assert fov_diameter(made.own(i, made.masks[i])) == pytest.approx(1.6 * fov_diameter(drive.masks[i]), abs=2)
        share = [float(s.own(i, s.labels[i]).sum() / s.own(i, s.masks[i]).sum()) for s in (drive, made)]
        assert share[1] == pytest.approx(share[0], rel=0.1)  # vessels as wide, relative to the FOV


def test_every_arm_is_trained_and_scored(drive_root, tmp_path, capsys):
    import torch

    out = tmp_path / "rows.json"
    # a few steps, on the threads this test process has (the recipe's 2 slowed a study beside it under -n)
    threads = torch.get_num_threads()
    assert main(["--data", str(drive_root), "--epochs", "1", "--seeds", "0", "--images", "6", "--test-images", "2",
                 "--steps", "4", "--threads", str(threads), "--work", str(tmp_path / "work"), "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert (written["meta"]["steps_per_epoch"], written["meta"]["threads"]) == (4, threads)
    rows = written["rows"]
    for pool in ("pool", "pool_zoomed_test"):  # --test-images: the first 2 of DRIVE's test photographs
        assert sorted(p.name for p in (tmp_path / "work" / pool / "test" / "images").iterdir()) == ["01_test.png",
                                                                                                "02_test.png"]
    as_is, one, median = rows
    assert (as_is["arm"], one["arm"], median["arm"]) == ("as_is", "one_scale", "median")
    # 2 of the 6 training photographs (0, 2, 4 enlarged) are validation; one_scale trains all at DRIVE's scale
    assert abs(one["test_native"]["trained_fov_diameter"] - 540) <= 5
    assert one["test_native"]["scale_factors"] == [1.0]
    assert all(f == pytest.approx(1 / 1.6, abs=0.01) for f in one["test_zoomed"]["scale_factors"])
    assert as_is["test_native_scale_1"]["scale_factors"] == as_is["test_zoomed_scale_1"]["scale_factors"] == [1.0]
    # median: the training split's median FOV diameter, as the recipe carves that split from the pool
    data = config_from_dict(yaml.safe_load(RECIPE.read_text())).data
    pool = read_pool(DataConfig(dataset="folder", root=str(tmp_path / "work" / "pool")), "training")
    train_idx, _ = split_indices(pool.ids, data)
    want = np.median([fov_diameter(pool.own(i, pool.masks[i])) for i in train_idx])
    assert abs(median["test_native"]["trained_fov_diameter"] - want) <= 5 and median["fov_diameter"] == "median"
    assert all(0 < r[k]["auc_roc"] < 1 for r in rows for k in ("test_native", "test_zoomed"))
    assert "test_zoomed  one_scale  AUC-ROC mean" in capsys.readouterr().out


def test_a_work_folder_in_use_is_refused_and_kept(drive_root, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as e:
        main(["--data", str(drive_root), "--work", str(tmp_path)])
    assert e.value.code == 2 and (tmp_path / "notes.txt").read_text() == "mine"
    assert f"--work {tmp_path}: not empty" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--steps", "--threads"])
def test_a_count_below_one_is_refused(drive_root, tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as e:
        main(["--data", str(drive_root), "--work", str(tmp_path / "work"), flag, "0"])
    assert e.value.code == 2 and f"{flag} 0: must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()
