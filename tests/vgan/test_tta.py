"""vgan.tta: the mean map over mirrored views, each view undone on its map."""

import pytest
import torch
from models import tiny_checkpoint

from vgan.errors import ConfigError
from vgan.images import read_image
from vgan.models import VesselSegmenter
from vgan.trainer import generator_from_checkpoint, load_checkpoint
from vgan.tta import TTA_MODES, VIEWS, check_tta, with_tta


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory) -> VesselSegmenter:
    """A trained tiny generator: convolutions that are not mirror-symmetric, as any generator's."""
    ckpt = tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))
    generator, _ = generator_from_checkpoint(load_checkpoint(ckpt), str(ckpt), torch.device("cpu"))
    return VesselSegmenter(generator).eval()


@pytest.fixture(scope="module")
def photograph(drive_root) -> torch.Tensor:
    """DRIVE's 01_test, cut to 200 x 136 so that rows and columns differ in number (a transposed view
    has another shape) and neither is a multiple of the generator's 2**depth."""
    x = torch.from_numpy(read_image(drive_root / "test" / "images" / "01_test.tif").copy()).permute(2, 0, 1)[None]
    return x[..., 200:400, 200:336].float() / 255


def symmetries(x: torch.Tensor) -> list[tuple[torch.Tensor, callable]]:
    """The 8 symmetries of the square, written as rotations (and a mirror), with the inverse of each:
    the dihedral views counted another way than vgan.tta's flips-then-transpose."""
    out = []
    for mirrored in (False, True):
        m = x.flip(-1) if mirrored else x
        for k in range(4):
            def undo(p, k=k, mirrored=mirrored):
                p = torch.rot90(p, -k, dims=(-2, -1))
                return p.flip(-1) if mirrored else p
            out.append((torch.rot90(m, k, dims=(-2, -1)), undo))
    return out


@torch.no_grad()
def test_dihedral_is_the_mean_over_the_eight_rotations_and_mirrors(segmenter, photograph):
    got = with_tta(segmenter, "dihedral")(photograph)
    want = torch.stack([undo(segmenter(view)) for view, undo in symmetries(photograph)]).mean(0)
    assert got.shape == (1, 1, 200, 136)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@torch.no_grad()
def test_flips_and_hflip_average_the_mirrored_maps_mirrored_back(segmenter, photograph):
    x = photograph
    plain, h, v, hv = (segmenter(x), segmenter(x.flip(-1)).flip(-1), segmenter(x.flip(-2)).flip(-2),
                       segmenter(x.flip(-2, -1)).flip(-2, -1))
    torch.testing.assert_close(with_tta(segmenter, "hflip")(x), (plain + h) / 2, rtol=0, atol=1e-6)
    torch.testing.assert_close(with_tta(segmenter, "flips")(x), (plain + h + v + hv) / 4, rtol=0, atol=1e-6)
    # the generator is not mirror-symmetric: the views disagree, and their mean is another map
    assert (plain - h).abs().max() > 1e-3
    assert with_tta(segmenter, "none") is segmenter


@pytest.mark.parametrize("mode", TTA_MODES)
def test_a_mirror_symmetric_model_is_unchanged_by_any_views(mode):
    """A per-pixel model commutes with every view: undone correctly, the mean is its own map."""
    x = torch.rand(2, 3, 7, 5)
    calls = []

    def per_pixel(images):
        calls.append(tuple(images.shape))
        return torch.sigmoid(images.sum(1, keepdim=True) * torch.tensor([[[[1.0]]]]))

    torch.testing.assert_close(with_tta(per_pixel, mode)(x), per_pixel(x), rtol=0, atol=1e-6)
    assert len(calls) == len(VIEWS[mode]) + 1
    transposed = sum(1 for shape in calls if shape[-2:] == (5, 7))
    assert transposed == (4 if mode == "dihedral" else 0)


def test_the_models_own_output_is_not_written_into():
    held = torch.full((1, 1, 4, 6), 0.25)

    def constant(images):
        return held if images.shape[-2:] == held.shape[-2:] else held.transpose(-2, -1)

    out = with_tta(constant, "dihedral")(torch.zeros(1, 3, 4, 6))
    assert torch.equal(held, torch.full((1, 1, 4, 6), 0.25)) and torch.equal(out, held)


@pytest.mark.parametrize("mode", ["flip", "", "Flips", "8"])
def test_an_unknown_mode_is_refused_naming_the_option(mode):
    with pytest.raises(ConfigError, match=f"params tta '{mode}': give one of none, hflip, flips, dihedral"):
        check_tta(mode, "params tta")
    with pytest.raises(ConfigError, match="--tta"):
        with_tta(lambda x: x, mode)
