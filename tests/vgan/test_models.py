import pytest
import torch
from torch import nn

from vgan.models import Discriminator, Generator, ModelConfig


@pytest.mark.parametrize("h, w", [(37, 53), (64, 64), (1, 1), (584, 565)])
def test_generator_keeps_any_size(h, w):
    g = Generator(ModelConfig(base_width=4, depth=4)).eval()
    with torch.no_grad():
        out = g(torch.rand(2, 3, h, w))
    assert out.shape == (2, 1, h, w)


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
