"""Pictures for people: the overlay of a map on its photograph; maps saved as files."""

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from vgan.images import read_binary, read_probability
from vgan.visualize import FOV_RIM, VESSEL_TINT, save_map, save_mask, to_uint8, vessel_overlay


def test_the_overlay_tints_as_strongly_as_the_probability_and_draws_the_fovs_rim(drive_root):
    photo = np.asarray(Image.open(drive_root / "test" / "images" / "01_test.tif"), np.float32) / 255
    fov = read_binary(drive_root / "test" / "mask" / "01_test_mask.gif")
    label = read_binary(drive_root / "test" / "1st_manual" / "01_manual1.gif")
    prob = np.where(label, 1.0, 0.0) * fov
    prob[:, :100] *= 0.5  # half-sure vessels on the left
    drawn = vessel_overlay(photo, prob, fov)
    rim = np.all(drawn == to_uint8(FOV_RIM), axis=-1)
    over = drawn.astype(np.float32) / 255
    assert rim[fov].mean() < 0.01 and not rim[~fov].any()  # a thin line, inside the FOV
    assert rim.sum() > np.pi * 540 * 0.9  # around it (cut at the top and bottom as the camera cuts it)
    inner = ~rim
    np.testing.assert_allclose(over[inner & (prob == 0)], photo[inner & (prob == 0)], atol=0.5 / 255 + 1e-6)
    sure, half = inner & (prob == 1), inner & (prob == 0.5)
    np.testing.assert_allclose(over[sure], 0.15 * photo[sure] + 0.85 * VESSEL_TINT, atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(over[half], 0.575 * photo[half] + 0.425 * VESSEL_TINT, atol=0.5 / 255 + 1e-6)


def test_a_saved_map_keeps_the_ranking_of_probabilities_8_bits_would_tie_with_0(tmp_path):
    """A GAN's map lies under 1/510 over most of the FOV, its missed vessels a little above the background there:
    saved, each probability comes back within half a 16-bit level, so its AUC-ROC is the map's own (8 bits made
    them all 0: chance). A binary map is 8-bit, 255 where true, read back as it was."""
    rng = np.random.default_rng(0)
    vessel = rng.random((64, 80)) < 0.2
    prob = np.where(vessel, rng.uniform(5e-4, 1.9e-3, vessel.shape), rng.uniform(1e-5, 1e-3, vessel.shape))
    save_map(tmp_path / "p.png", prob)
    back = read_probability(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode.startswith("I") and np.abs(back - prob).max() <= 0.5 / 65535 + 1e-9
    assert roc_auc_score(vessel.ravel(), back.ravel()) == pytest.approx(roc_auc_score(vessel.ravel(), prob.ravel()),
                                                                       abs=1e-3)
    assert roc_auc_score(vessel.ravel(), to_uint8(prob).ravel()) == 0.5  # what 8 bits kept
    save_mask(tmp_path / "b.png", vessel)
    saved = np.asarray(Image.open(tmp_path / "b.png"))
    assert saved.dtype == np.uint8 and set(np.unique(saved)) == {0, 255}
    assert np.array_equal(read_binary(tmp_path / "b.png"), vessel)
