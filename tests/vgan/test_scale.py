"""vgan.scale: the FOV diameter a generator records, and images brought to it."""

import math

import numpy as np
import pytest
import torch
from conftest import TINY

from vgan.config import config_from_dict
from vgan.data import load_train_val
from vgan.errors import ConfigError
from vgan.images import read_binary
from vgan.inputs import as_batch
from vgan.models import EnsembleSegmenter, Generator, ModelConfig, VesselSegmenter
from vgan.scale import (
    AUTO,
    MIN_FOV_SHARE,
    ScaleError,
    ScaleSpec,
    check_side,
    fov_diameter,
    predict_at_scale,
    resize,
    smallest_side,
)
from vgan.trainer import Trainer, generator_from_checkpoint, load_checkpoint


def test_the_fov_diameter_of_drive_and_stare_is_their_circles_width(drive_root, stare_root):
    drive = [fov_diameter(read_binary(p)) for p in sorted((drive_root / "training" / "mask").glob("*.gif"))]
    stare = [(fov_diameter(m := read_binary(p)), m) for p in sorted((stare_root / "mask").glob("*.ppm"))]
    assert all(530 <= d <= 545 for d in drive), drive
    # STARE's camera cuts the circle at the top and bottom: the diameter is the width, not the height
    for d, m in stare:
        rows = np.flatnonzero(m.any(axis=1))
        assert 640 <= d <= 690 and rows[-1] - rows[0] + 1 < d - 50


def test_a_mask_one_pixel_high_is_a_mask_and_a_batchs_is_its_image():
    strip = np.zeros((1, 96), bool)
    strip[0, 10:60] = True
    assert fov_diameter(strip) == 50  # not squeezed to a row of 96 (a ValueError that stopped a whole batch)
    assert fov_diameter(torch.from_numpy(strip)[None, None]) == 50 and fov_diameter(strip.T) == 50
    with pytest.raises(ValueError, match=r"got shape \(2, 1, 96\)"):
        fov_diameter(np.stack([strip, strip]))


def test_the_smallest_side_a_shipped_model_takes_is_two_to_its_depth():
    def generator(depth: int) -> Generator:
        g = Generator(ModelConfig(base_width=4, depth=depth))
        g.fov_diameter.fill_(40)
        return g

    assert smallest_side(VesselSegmenter(generator(2))) == 4 and smallest_side(VesselSegmenter(generator(4))) == 16
    assert smallest_side(EnsembleSegmenter([generator(2), generator(3)])) == 8  # the deepest member's
    assert smallest_side(torch.nn.Conv2d(3, 1, 1)) == 1
    check_side((4, 500), 1.0, 4, "a.png")
    with pytest.raises(ScaleError, match=r"^a.png: 3 x 500 pixels is under the 4 pixels a side the model takes \(its "
                                         r"U-Net halves an image 2 times\)"):
        check_side((3, 500), 1.0, 4, "a.png")
    with pytest.raises(ScaleError, match=r"^b.png: 40 x 400 pixels, resized x0.05 to 2 x 20, is under the 4 pixels"):
        ScaleSpec(0.05).factor_of(np.ones((40, 400)), 100.0, "b.png", smallest=4)
    assert ScaleSpec(0.1).factor_of(np.ones((40, 400)), 100.0, "b.png", smallest=4) == 0.1


def test_a_trained_generator_records_its_training_fov_and_keeps_it_in_checkpoints(tmp_path):
    cfg = config_from_dict(TINY)
    train, val = load_train_val(cfg.data)
    t = Trainer(cfg, train, val, torch.device("cpu"))
    want = float(np.median([fov_diameter(m) for m in train.masks]))
    assert t.G.trained_fov == want and 0.85 * 48 < want < 48  # the synthetic FOV: a circle 0.92 of the side
    t.save_checkpoint(tmp_path / "last.pt")
    g, _ = generator_from_checkpoint(load_checkpoint(tmp_path / "last.pt"), "last.pt", torch.device("cpu"))
    assert g.trained_fov == want


def test_a_generator_saved_before_the_fov_was_recorded_still_loads(tmp_path):
    cfg = config_from_dict(TINY)
    t = Trainer(cfg, *load_train_val(cfg.data), torch.device("cpu"))
    old = {k: v for k, v in t.G.state_dict().items() if k != "fov_diameter"}
    fresh = Generator(cfg.model)
    fresh.load_state_dict(old)
    assert fresh.trained_fov is None and torch.equal(fresh.std, t.G.std)  # unknown, the rest loaded
    resumed = Trainer(cfg, *load_train_val(cfg.data), torch.device("cpu"))
    resumed.G.load_state_dict(old)
    assert resumed.G.trained_fov == t.G.trained_fov  # a resumed trainer keeps its training split's
    with pytest.raises(RuntimeError, match="Missing key.*std"):  # other keys are still required
        fresh.load_state_dict({k: v for k, v in old.items() if k != "std"})


@pytest.mark.parametrize("text, fragment", [
    ("big", "--scale big: give 'auto' or a factor such as 0.5"),
    ("0", "--scale 0: a factor must be above 0 and at most 4"),
    ("-1", "a factor must be above 0"),
    ("8", "a factor must be above 0 and at most 4"),
    ("nan", "a factor must be above 0"),
])
def test_a_bad_scale_is_refused(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        ScaleSpec.parse(text)


def test_auto_brings_a_fov_to_the_training_diameter_and_leaves_near_ones_alone():
    auto = ScaleSpec.parse("auto")
    assert auto.factor_for(2 * 538, 1168, 538, "x") == 0.5
    assert auto.factor_for(649, 700, 538, "x") == pytest.approx(538 / 649)  # STARE for a DRIVE model: 21 % off
    assert auto.factor_for(560, 584, 538, "x") == 1  # within 10 %: as it is, no resampling
    assert auto.factor_for(1614, 1752, 88, "x") == pytest.approx(88 / 1614)  # a small model's scale, however far
    assert auto.factor_for(3000, 3504, None, "x") == 1  # the model records no scale
    assert ScaleSpec.parse("0.5").factor_for(538, 584, 538, "x") == 0.5  # a given factor is taken as it is
    assert auto.factor_for(MIN_FOV_SHARE * 2000, 2000, 1000, "x") == 2  # a quarter of the frame: still a camera
    for diameter in (0, MIN_FOV_SHARE * 2000 - 1):  # no FOV, or a sliver of the frame: no camera's
        with pytest.raises(ScaleError, match="photo.png: its field of view is .* pixels across in a 2000-pixel image"):
            auto.factor_for(diameter, 2000, 538, "photo.png")


class MatchedFilter(torch.nn.Module):
    """A vessel detector of a fixed width in pixels, as every trained generator is: the green channel's
    difference of Gaussians (sigma 1.5 and 4 pixels, separable), vessels darker than their surround -> high."""

    def __init__(self):
        super().__init__()
        r = torch.arange(-12, 13, dtype=torch.float32)
        self.taps = [g / g.sum() for g in (torch.exp(-(r**2) / (2 * s**2)) for s in (1.5, 4.0))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = torch.nn.functional.conv2d
        def blur(g: torch.Tensor) -> torch.Tensor:
            return conv(conv(x[:, 1:2], g.view(1, 1, -1, 1), padding=(12, 0)), g.view(1, 1, 1, -1), padding=(0, 12))

        narrow, wide = (blur(g) for g in self.taps)
        return torch.sigmoid(40 * (wide - narrow))


def test_a_photograph_at_twice_the_resolution_is_segmented_like_the_original(drive_root):
    """The same DRIVE image at double resolution, brought back to the detector's scale, gets the original's
    map (enlarged); fed as it is, the detector sees vessels twice as wide as it was made for."""
    from vgan.images import read_image

    model = MatchedFilter()
    x = as_batch(read_image(drive_root / "test" / "images" / "01_test.tif"))[0]
    fov = torch.from_numpy(read_binary(drive_root / "test" / "mask" / "01_test_mask.gif"))[None, None].float()
    big, big_fov = (resize(t, (2 * x.shape[-2], 2 * x.shape[-1])) for t in (x, fov))
    inside = big_fov > 0.5
    with torch.no_grad():
        want = resize(model(x), big.shape[-2:])
        at_scale, as_is = predict_at_scale(model, big, 0.5), predict_at_scale(model, big, 1.0)
    assert at_scale.shape == as_is.shape == (1, 1, 1168, 1130)
    err_at_scale, err_as_is = ((p - want)[inside].abs().mean().item() for p in (at_scale, as_is))
    assert err_at_scale < 0.25 * err_as_is, (err_at_scale, err_as_is)
    assert torch.equal(predict_at_scale(model, x, 1.0), model(x))  # factor 1: the model's own answer


def test_the_factor_is_what_the_fov_says(drive_root):
    mask = read_binary(drive_root / "test" / "mask" / "01_test_mask.gif")
    d = fov_diameter(mask)
    big = resize(torch.from_numpy(mask).float()[None, None], (3 * mask.shape[0], 3 * mask.shape[1]))[0, 0] > 0.5
    assert math.isclose(fov_diameter(big), 3 * d, rel_tol=0.01)
    assert math.isclose(AUTO.factor_for(fov_diameter(big), max(big.shape), d, "x"), 1 / 3, rel_tol=0.01)
