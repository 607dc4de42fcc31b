"""Pictures for people: the overlay of a map on its photograph."""

import numpy as np
from PIL import Image

from vgan.images import read_binary
from vgan.visualize import FOV_RIM, VESSEL_TINT, to_uint8, vessel_overlay


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
