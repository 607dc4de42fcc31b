"""Ensembles: several generators' mean map, each generator at its own scale, in vgan.evaluate and vgan.predict."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from models import tiny_checkpoint
from PIL import Image

from vgan.config import DataConfig
from vgan.data import load_split
from vgan.ensemble import Member, check_one_validation_split, ensemble_predictions
from vgan.errors import ConfigError
from vgan.evaluate import main as evaluate_main
from vgan.evaluate import score_maps
from vgan.images import read_image
from vgan.models import VesselSegmenter
from vgan.predict import main as predict_main
from vgan.scale import AUTO, fov_diameter, predict_at_scale, scaled_predictions
from vgan.trainer import generator_from_checkpoint, load_checkpoint, predict
from vgan.visualize import to_uint16

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny generators: `a`; `b` another seed; `c` trained at a FOV diameter of 36 px (a's: its synthetic
    photographs' own, 44); `d` validated on other images (another split seed)."""
    root = tmp_path_factory.mktemp("members")
    return {"a": tiny_checkpoint(root / "a"), "b": tiny_checkpoint(root / "b", **{"train.seed": 1}),
            "c": tiny_checkpoint(root / "c", **{"data.fov_diameter": 36.0}),
            "d": tiny_checkpoint(root / "d", **{"data.split_seed": 1})}


def generator(path):
    return generator_from_checkpoint(load_checkpoint(path), str(path), CPU)[0]


def member(path) -> Member:
    g = generator(path)
    return Member(lambda x: predict(g, x, CPU, 2), g.trained_fov, AUTO)


@pytest.fixture(scope="module")
def drive_test(drive_root):
    return load_split(DataConfig(dataset="drive", root=str(drive_root), crop_size=None), "test")


def test_each_map_is_the_mean_of_the_members_maps_each_at_its_own_scale(checkpoints, drive_test):
    a, c = member(checkpoints["a"]), member(checkpoints["c"])
    assert abs(c.trained_fov - 36) <= 1 < abs(a.trained_fov - 36)  # two scales: each member resizes by its own
    maps_a, factors_a = scaled_predictions(a.model, a.trained_fov, drive_test, 2, AUTO)
    maps_c, factors_c = scaled_predictions(c.model, c.trained_fov, drive_test, 2, AUTO)

    maps, factors = ensemble_predictions([a, c], drive_test, 2)

    assert factors == [factors_a, factors_c] and factors_a != factors_c
    assert [m.shape for m in maps] == [(584, 565)] * len(drive_test)
    for got, one, other in zip(maps, maps_a, maps_c, strict=True):
        np.testing.assert_allclose(got, (one + other) / 2, atol=1e-6)
    assert not np.allclose(maps_a[0], maps_c[0], atol=1e-3)  # the two members do differ
    alone, _ = ensemble_predictions([a], drive_test, 2)  # one member: its own maps, as they are
    assert all(np.array_equal(x, y) for x, y in zip(alone, maps_a, strict=True))


def test_members_validated_on_other_images_are_refused_where_validation_is_used(tmp_path, monkeypatch):
    same = DataConfig(dataset="drive", root=str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    check_one_validation_split([same, DataConfig(dataset="drive", root=tmp_path.name)], ["a.pt", "b.pt"])
    with pytest.raises(ConfigError, match=r"c.pt: data.split_seed is 1 where a.pt has 0: the members were validated "
                                          r"on different images"):
        check_one_validation_split([same, same, DataConfig(dataset="drive", root=str(tmp_path), split_seed=1)],
                                   ["a.pt", "b.pt", "c.pt"])
    with pytest.raises(ConfigError, match=r"b.pt: data.val_count is 5 where a.pt has 4"):
        check_one_validation_split([same, DataConfig(dataset="drive", root=str(tmp_path), val_count=5)],
                                   ["a.pt", "b.pt"])


def test_members_that_tell_people_apart_otherwise_share_a_split_where_each_image_is_its_own(drive_root, tmp_path):
    """data.person none (a checkpoint saved before it) and eyes give DRIVE's one split: each image its own
    person either way; a pattern that makes people of its images does not."""
    drive = DataConfig(dataset="drive", root=str(drive_root))
    check_one_validation_split([replace(drive, person="none"), drive], ["old.pt", "new.pt"])
    with pytest.raises(ConfigError, match=r"new.pt: data.person is '\^\(\[0-9\]\)' where old.pt has 'none'"):
        check_one_validation_split([replace(drive, person="none"), replace(drive, person="^([0-9])")],
                                   ["old.pt", "new.pt"])


def test_evaluate_scores_the_mean_map_of_several_checkpoints(checkpoints, drive_root, drive_test, tmp_path, capsys):
    out = tmp_path / "eval"
    paths = [str(checkpoints["a"]), str(checkpoints["c"])]
    assert evaluate_main(["--checkpoint", *paths, "--data", str(drive_root), "--scale", "auto",
                          "--out", str(out), "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    maps, factors = ensemble_predictions([member(p) for p in paths], drive_test, 2)
    want = score_maps(maps, drive_test, 0.5)[0]
    assert m["auc_roc"] == pytest.approx(want["auc_roc"], abs=1e-9) and m["f1"] == pytest.approx(want["f1"])
    assert [d["source"] for d in m["members"]] == [str(checkpoints[k].resolve()) for k in "ac"]
    assert [d["trained_fov_diameter"] for d in m["members"]] == [generator(p).trained_fov for p in paths]
    assert [d["scale_factors"] for d in m["members"]] == [[round(f, 4) for f in fs] for fs in factors]
    assert "source" not in m and "epoch" not in m  # said of each member, not of the ensemble
    assert "mean of 2 generators" in said
    saved = np.asarray(Image.open(out / "probabilities" / "01_test.png"))
    np.testing.assert_array_equal(saved, to_uint16(maps[0]))

    # the validation threshold is chosen on the ensemble's maps of one validation split
    assert evaluate_main(["--checkpoint", str(checkpoints["a"]), str(checkpoints["b"]), "--val-threshold",
                          "--out", str(tmp_path / "val"), "--device", "cpu"]) == 0
    m = json.loads((tmp_path / "val" / "metrics.json").read_text())
    val = load_split(generator_from_checkpoint(load_checkpoint(checkpoints["a"]), "a", CPU)[1].data, "val")
    val_maps, _ = ensemble_predictions([member(checkpoints[k]) for k in "ab"], val, 2)
    assert m["threshold_source"] == "validation best F1"
    assert m["threshold"] == pytest.approx(score_maps(val_maps, val, 0.5)[0]["best_f1_threshold"])


@pytest.mark.parametrize("extra, members, fragment", [
    (["--val-threshold"], "ad", "data.split_seed is 1 where"),
    (["--split", "val"], "ad", "data.split_seed is 1 where"),
    (["--noise", "2"], "ab", "--noise draws from one generator: 2 checkpoints given"),
])
def test_an_ensemble_that_cannot_be_scored_so_exits_2(checkpoints, tmp_path, capsys, extra, members, fragment):
    argv = ["--checkpoint", *(str(checkpoints[k]) for k in members), "--out", str(tmp_path / "out"), *extra]
    assert evaluate_main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1, err
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_predict_writes_the_mean_map_of_several_checkpoints(checkpoints, drive_root, tmp_path, capsys):
    image = drive_root / "test" / "images" / "02_test.tif"
    mask = drive_root / "test" / "mask"
    argv = ["--checkpoint", str(checkpoints["a"]), str(checkpoints["c"]), "--input", str(image),
            "--masks", str(mask), "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert predict_main(argv) == 0
    said = capsys.readouterr().out
    x = torch.from_numpy(read_image(image)).permute(2, 0, 1)[None].float() / 255
    fov = np.asarray(Image.open(mask / "02_test_mask.gif")) > 0
    gs = [generator(checkpoints[k]) for k in "ac"]
    prob = sum(predict_at_scale(VesselSegmenter(g).eval(), x, g.trained_fov / fov_diameter(fov)) for g in gs) / 2
    want = to_uint16(prob.detach().numpy()[0, 0] * fov)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "probabilities" / "02_test.png")), want)
    fovs = "/".join(str(round(f)) for f in sorted(g.trained_fov for g in gs))
    assert f"resized to the models' FOVs of {fovs} px: 1 (x" in said  # one image, resized by each
    assert "each map the mean of 2 generators' maps" in said
