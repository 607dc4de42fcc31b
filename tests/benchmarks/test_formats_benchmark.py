"""benchmarks.formats scores a generator on the test photographs as an archive holds them, as vgan.evaluate
scores the files a user has: red-free or grey PNGs, JPEGs."""

import json

import numpy as np
import pytest
from models import tiny_checkpoint
from PIL import Image

from benchmarks.formats import KEYS, main, stored
from vgan.evaluate import main as evaluate_main

VIEWS = ("green", "luminance", "jpeg60")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def saved_as(drive_few, root, view):
    """DRIVE's photographs of `drive_few` saved by PIL as a user's archive would hold them (a red-free PNG, a
    colour photograph saved as grey, a JPEG at quality 60), with their labels and masks: the folder layout."""
    for sub in ("images", "labels", "masks"):
        (root / "test" / sub).mkdir(parents=True)
    for photo in sorted((drive_few / "test" / "images").iterdir()):
        n, image = photo.name[:2], Image.open(photo)
        if view == "green":
            image.getchannel("G").save(root / "test" / "images" / f"{n}.png")
        elif view == "luminance":
            image.convert("L").save(root / "test" / "images" / f"{n}.png")
        else:
            image.save(root / "test" / "images" / f"{n}.jpg", quality=60)
        Image.open(drive_few / "test" / "1st_manual" / f"{n}_manual1.gif").save(root / "test" / "labels" / f"{n}.png")
        Image.open(drive_few / "test" / "mask" / f"{n}_test_mask.gif").save(root / "test" / "masks" / f"{n}.png")
    return root


def test_views_score_as_vgan_evaluate_scores_the_files(checkpoint, drive_few, tmp_path, capsys):
    out = tmp_path / "formats.json"
    assert main(["--checkpoint", str(checkpoint), "--drive", str(drive_few), "--views", ",".join(VIEWS),
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {r["view"]: r for r in result["rows"]}
    assert list(rows) == ["colour", *VIEWS] and all(r["dataset"] == "DRIVE" for r in rows.values())
    for view, row in rows.items():
        data = drive_few if view == "colour" else saved_as(drive_few, tmp_path / view, view)
        assert evaluate_main(["--checkpoint", str(checkpoint), "--data", str(data), "--scale", "1",
                              "--dataset", "drive" if view == "colour" else "folder",
                              "--out", str(tmp_path / f"e-{view}")]) == 0
        m = json.loads((tmp_path / f"e-{view}" / "metrics.json").read_text())
        assert {k: row[k] for k in KEYS} == {k: round(m[k], 4) for k in KEYS}, view
        assert row["labelled"] == round(m["n_vessel_pixels"] / m["n_fov_pixels"], 4)
        vessel, fov = m["n_vessel_pixels"], m["n_fov_pixels"]  # the share called vessel, from evaluate's rates
        assert row["vessels"] == round((m["sensitivity"] * vessel + (1 - m["specificity"]) * (fov - vessel)) / fov, 4)
    assert len({row["auc_roc"] for row in rows.values()}) == 4  # four pictures, four scores
    lines = result["summary"]
    assert lines[1].startswith("DRIVE     green (1 checkpoint(s)): auc_roc")
    assert f"change {rows['green']['auc_roc'] - rows['colour']['auc_roc']:+.4f} / " in lines[1]
    assert lines[1] in capsys.readouterr().out


def test_a_grey_view_is_one_grey_in_three_channels_and_jpeg_loses_more_at_lower_quality():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for view in ("green", "luminance"):
        grey = stored(image, view)
        assert grey.shape == image.shape and (grey == grey[..., :1]).all()
    assert (stored(image, "green")[..., 0] == image[..., 1]).all()
    errors = [np.abs(stored(image, f"jpeg{q}").astype(int) - image).mean() for q in (95, 75, 50)]
    assert 0 < errors[0] < errors[1] < errors[2]


def test_an_unknown_view_is_refused_before_anything_is_read(checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit, match="2"):
        main(["--checkpoint", str(checkpoint), "--drive", str(tmp_path / "none"), "--views", "green,jpeg0,sepia"])
    assert "--views: unknown jpeg0, sepia (choose from colour, green, luminance, jpeg95, jpeg75, jpeg50, or jpegQ " \
           "with Q in 1-100)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown view 'jpeg101'"):
        stored(np.zeros((4, 4, 3), np.uint8), "jpeg101")
