"""The pyfunc's module segments each image at the scale its generator was trained at, as tuner.predict does;
here on an eager VesselSegmenter (the exported program behaves the same: tests/tuner/test_serving.py)."""

import numpy as np
import pytest
import torch

from tuner.vgan_pyfunc import SCALE_REMEDY, Segmenter
from vgan.errors import ConfigError
from vgan.images import estimate_fov, read_image
from vgan.models import Generator, ModelConfig, VesselSegmenter
from vgan.scale import AUTO, ScaleError, fov_diameter, predict_at_scale, resize, scaled_size


def segmenter(trained_fov: float) -> tuple[Segmenter, VesselSegmenter]:
    torch.manual_seed(0)
    g = Generator(ModelConfig(base_width=4, depth=2))
    g.fov_diameter.fill_(trained_fov)
    module = VesselSegmenter(g).eval()
    return Segmenter(module), module


@pytest.fixture(scope="module")
def drive_pair(drive_root) -> torch.Tensor:
    """DRIVE's 01_test (FOV ~540 px) and the same photograph halved, centred in a black frame of the same
    size (FOV ~270 px): one batch of two cameras' scales."""
    x = torch.from_numpy(read_image(drive_root / "test" / "images" / "01_test.tif").copy()).permute(2, 0, 1)[None] / 255
    h, w = x.shape[-2:]
    small = resize(x, scaled_size((h, w), 0.5))
    framed = torch.zeros_like(x)
    top, left = (h - small.shape[-2]) // 2, (w - small.shape[-1]) // 2
    framed[..., top : top + small.shape[-2], left : left + small.shape[-1]] = small
    return torch.cat([x, framed])


def estimated(image: torch.Tensor) -> float:
    return fov_diameter(estimate_fov(image.permute(1, 2, 0).numpy()))


def test_auto_brings_each_image_of_a_batch_to_the_training_fov(drive_pair):
    seg, module = segmenter(trained_fov=270)
    big, small = (estimated(im) for im in drive_pair)
    assert 520 < big < 560 and 255 < small < 285
    factors = seg.factors(drive_pair, AUTO)
    assert factors[0] == pytest.approx(270 / big) and factors[1] == 1  # within 10 %: as it is
    probs = seg(drive_pair)
    assert probs.shape == (2, 1, *drive_pair.shape[-2:])
    with torch.no_grad():
        torch.testing.assert_close(probs[:1], predict_at_scale(module, drive_pair[:1], factors[0]), rtol=0, atol=0)
        torch.testing.assert_close(probs[1:], module(drive_pair[1:]), rtol=0, atol=0)


def test_a_given_factor_is_taken_and_an_unrecorded_scale_keeps_the_image(drive_pair):
    seg, module = segmenter(trained_fov=270)
    x = drive_pair[:1]
    with torch.no_grad():
        torch.testing.assert_close(seg(x, scale="1"), module(x), rtol=0, atol=0)
        torch.testing.assert_close(seg(x, scale=0.5), predict_at_scale(module, x, 0.5), rtol=0, atol=0)
        unknown, bare = segmenter(trained_fov=0)  # a model saved before the scale was recorded
        assert unknown.trained_fov is None
        torch.testing.assert_close(unknown(x), bare(x), rtol=0, atol=0)


@pytest.mark.parametrize("scale, fragment", [
    ("7", "params scale 7: a factor must be above 0 and at most 4"),
    ("big", "params scale big: give 'auto' or a factor such as 0.5"),
])
def test_a_bad_scale_is_named(scale, fragment):
    seg, _ = segmenter(trained_fov=270)
    with pytest.raises(ConfigError, match=fragment):
        seg(np.zeros((40, 40, 3), np.uint8), scale=scale)


def test_a_fov_no_camera_gives_is_refused_with_what_to_send():
    seg, _ = segmenter(trained_fov=270)
    image = np.zeros((584, 565, 3), np.uint8)
    yy, xx = np.mgrid[:584, :565]
    image[(yy - 300) ** 2 + (xx - 280) ** 2 < 25**2] = 200  # a 50-pixel disc: a thumbnail in a frame
    with pytest.raises(ScaleError) as e:
        seg(image)
    assert str(e.value).startswith("image 0 of 1: its field of view is ") and SCALE_REMEDY in str(e.value)


def test_a_white_frame_is_segmented_as_the_camera_black_surround_it_stands_for(drive_root):
    """A photograph an export framed white is segmented as the same photograph with the frame black (the served
    model and a raw-model user's call alike); the caller's array is left as it was."""
    from vgan.images import read_binary

    seg, module = segmenter(trained_fov=540)
    rgb = read_image(drive_root / "test" / "images" / "01_test.tif").copy()
    inside = read_binary(drive_root / "test" / "mask" / "01_test_mask.gif")
    rgb[~inside] = 255
    black = rgb.copy()
    black[~estimate_fov(rgb / 255.0) & (rgb == 255).all(axis=-1)] = 0
    sent = rgb.copy()
    with torch.no_grad():
        torch.testing.assert_close(seg(sent, scale="1"), seg(black, scale="1"), rtol=0, atol=0)
        assert not torch.equal(seg(sent, scale="1"), module(torch.from_numpy(rgb).permute(2, 0, 1)[None] / 255.0))
    assert np.array_equal(sent, rgb)
