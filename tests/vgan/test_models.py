import pytest
import torch
from torch import nn

from vgan.models import Discriminator, EnsembleSegmenter, Generator, ModelConfig, VesselSegmenter
from vgan.scale import recorded_fov


@pytest.mark.parametrize("h, w", [(37, 53), (64, 64), (1, 1), (584, 565)])
def test_generator_keeps_any_size(h, w):
    g = Generator(ModelConfig(base_width=4, depth=4)).eval()
    with torch.no_grad():
        out = g(torch.rand(2, 3, h, w))
    assert out.shape == (2, 1, h, w)


@pytest.mark.parametrize("h", [32, 33, 39, 40])
def test_the_segmenter_pads_by_one_to_a_multiple_of_mean_colour(h):
    """1..2**depth rows and columns, never 0 (one traced branch for every size), of the training mean colour."""
    g = Generator(ModelConfig(base_width=4, depth=3)).eval()
    g.set_normalization(torch.tensor([0.2, 0.4, 0.6]), torch.tensor([0.1, 0.2, 0.3]))
    seen = []
    g.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    x = torch.rand(1, 3, h, h + 1)
    assert VesselSegmenter(g)(x).shape == (1, 1, h, h + 1)
    (padded,) = seen
    assert padded.shape[-2:] == ((h // 8 + 1) * 8, ((h + 1) // 8 + 1) * 8)
    torch.testing.assert_close(padded[..., :h, : h + 1], x)
    rim = torch.cat([padded[..., h:, :].flatten(2), padded[..., h + 1:].flatten(2)], dim=2)
    torch.testing.assert_close(rim, torch.tensor([0.2, 0.4, 0.6]).reshape(1, 3, 1).expand_as(rim))


def test_generator_normalisation_is_part_of_its_state():
    g = Generator(ModelConfig(base_width=4, depth=2))
    g.set_normalization(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1.0, 2.0, 3.0]))
    g2 = Generator(ModelConfig(base_width=4, depth=2))
    g2.load_state_dict(g.state_dict())
    assert torch.equal(g2.mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))


def test_generator_widths_follow_config():
    g = Generator(ModelConfig(base_width=8, depth=3))
    assert g.down[-1][0].out_channels == 8 * 2**3
    assert len(g.up) == 3


@pytest.mark.parametrize(
    "head, shape", [("pixel", (2, 1, 40, 56)), ("patch", (2, 1, 5, 7)), ("image", (2, 1, 1, 1))]
)
def test_discriminator_heads(head, shape):
    d = Discriminator(ModelConfig(disc_head=head, disc_width=8, disc_depth=3))
    out = d(torch.rand(2, 3, 40, 56), torch.rand(2, 1, 40, 56))
    assert out.shape == shape


def test_critic_has_no_sigmoid_nor_batchnorm_by_default():
    d = Discriminator(ModelConfig(disc_width=8))
    kinds = {type(m) for m in d.modules()}
    assert nn.Sigmoid not in kinds and nn.BatchNorm2d not in kinds
    torch.manual_seed(0)
    out = d(torch.rand(4, 3, 32, 32) * 10, torch.rand(4, 1, 32, 32) * 10)
    assert (out < 0).any() or (out > 1).any()  # raw scores, not probabilities


@pytest.mark.parametrize("norm, cls", [("instance", nn.InstanceNorm2d), ("layer", nn.GroupNorm),
                                       ("batch", nn.BatchNorm2d)])
def test_discriminator_norm_is_configurable(norm, cls):
    d = Discriminator(ModelConfig(disc_norm=norm, disc_width=8))
    assert any(isinstance(m, cls) for m in d.modules())


def _trained_at(fov: float, **shape) -> Generator:
    g = Generator(ModelConfig(**{"base_width": 4, "depth": 2, **shape})).eval()
    g.set_fov_diameter(fov)
    return g


def test_an_ensemble_segmenter_is_the_mean_of_its_members_maps():
    torch.manual_seed(0)
    gs = [_trained_at(540.0), _trained_at(540.0, base_width=6, depth=3)]  # shapes may differ
    e = EnsembleSegmenter(gs).eval()
    x = torch.rand(2, 3, 45, 61)
    with torch.no_grad():
        torch.testing.assert_close(e(x), (VesselSegmenter(gs[0])(x) + VesselSegmenter(gs[1])(x)) / 2)
    assert recorded_fov(e) == 540.0 == recorded_fov(VesselSegmenter(gs[0]))


def test_an_ensemble_takes_generators_of_one_scale():
    with pytest.raises(ValueError, match=r"different FOV scales \(\[540.0, 680.0\] px\)"):
        EnsembleSegmenter([_trained_at(540.0), _trained_at(680.0)])
    with pytest.raises(ValueError, match="at least one generator"):
        EnsembleSegmenter([])
