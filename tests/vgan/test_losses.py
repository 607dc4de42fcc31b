import pytest
import torch
import torch.nn.functional as F

from vgan import losses


def test_gradient_penalty_of_a_linear_critic():
    # f(x) = <a, x> has gradient a everywhere: GP = (||a|| - 1)^2 for every sample.
    a = torch.zeros(4, 5, 6)
    a[0, 0, 0], a[1, 2, 3] = 2.0, 2.0 * 3**0.5  # ||a|| = 4
    critic = lambda x: (x * a).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.rand(3, 4, 5, 6), torch.rand(3, 4, 5, 6)
    gp = losses.gradient_penalty(critic, real, fake, torch.rand(3))
    assert torch.allclose(gp, torch.tensor(9.0))


def test_gradient_penalty_norm_is_per_sample_over_all_dims():
    # f(x) = 0.5 ||x||^2 per sample: gradient x, norm ||x_hat|| over all non-batch dims.
    critic = lambda x: 0.5 * (x**2).flatten(1).sum(1)  # noqa: E731
    real, fake, eps = torch.rand(5, 2, 3, 4), torch.rand(5, 2, 3, 4), torch.rand(5)
    x_hat = eps.view(-1, 1, 1, 1) * real + (1 - eps.view(-1, 1, 1, 1)) * fake
    expected = ((x_hat.flatten(1).norm(dim=1) - 1) ** 2).mean()
    assert torch.allclose(losses.gradient_penalty(critic, real, fake, eps), expected)


def test_gradient_penalty_is_differentiable_for_the_critic():
    w = torch.tensor(3.0, requires_grad=True)
    critic = lambda x: w * x.flatten(1).sum(1)  # noqa: E731
    gp = losses.gradient_penalty(critic, torch.rand(2, 1, 2, 2), torch.rand(2, 1, 2, 2), torch.rand(2))
    gp.backward()
    # grad norm = 2|w| (4 inputs), GP = (2w - 1)^2, dGP/dw = 4 (2w - 1) = 20
    assert torch.allclose(w.grad, torch.tensor(20.0))


def test_wgan_losses():
    real, fake = torch.tensor([3.0, 5.0]), torch.tensor([-1.0, 1.0])
    assert losses.wgan_critic_loss(real, fake) == -4.0
    assert losses.wgan_generator_loss(fake) == 0.0


def test_vanilla_losses_match_bce():
    real, fake = torch.randn(8), torch.randn(8)
    expected = -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
    assert torch.allclose(losses.vanilla_discriminator_loss(real, fake), expected, atol=1e-6)
    assert torch.allclose(losses.vanilla_generator_loss(fake), -torch.log(torch.sigmoid(fake)).mean(), atol=1e-6)


def test_seg_bce_matches_torch():
    logits, target = torch.randn(2, 1, 4, 4), (torch.rand(2, 1, 4, 4) > 0.5).float()
    assert torch.allclose(losses.seg_bce(logits, target), F.binary_cross_entropy(torch.sigmoid(logits), target),
                          atol=1e-6)


def _critic_and_pairs():
    from vgan.models import Discriminator, ModelConfig

    torch.manual_seed(0)
    d = Discriminator(ModelConfig(disc_width=8, disc_depth=2))
    return d, torch.rand(4, 4, 32, 32), torch.rand(4, 4, 32, 32), torch.rand(4)


def _gp_and_grads(d, real, fake, eps):
    d.zero_grad()
    gp = losses.gradient_penalty(d.score, real, fake, eps)
    gp.backward()
    # the output bias never reaches the penalty's gradient: it has none
    return gp.detach(), [p.grad.clone() for p in d.parameters() if p.grad is not None]


def assert_close_grads(got, want):
    # bf16 keeps 8 bits of mantissa: the critic's whole gradient within a few per cent
    a, b = torch.cat([g.flatten() for g in got]), torch.cat([g.flatten() for g in want])
    assert (a - b).norm() <= 0.05 * b.norm()
    assert F.cosine_similarity(a, b, dim=0) > 0.998


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")  # raised by mkldnn.flags itself
def test_gradient_penalty_under_bf16_autocast_matches_fp32():
    # The double backward through a bf16 critic: value and critic gradients within bf16 precision.
    # ATen's own CPU kernels, not oneDNN's: on a CPU with AMX, oneDNN's bf16 convolution backward lands 18 % from
    # fp64 on this critic where bf16-rounded operands in fp32 arithmetic land 3.3 % (and oneDNN without AMX 3.8 %),
    # so the test would measure the host's ISA instead of this function. Training uses bf16 on CUDA only.
    d, real, fake, eps = _critic_and_pairs()
    gp32, g32 = _gp_and_grads(d, real, fake, eps)
    with torch.backends.mkldnn.flags(enabled=False), torch.autocast("cpu", dtype=torch.bfloat16):
        gp16, g16 = _gp_and_grads(d, real, fake, eps)
    assert gp16.dtype == torch.float32 and len(g16) == len(g32) == len(list(d.parameters())) - 1
    assert torch.allclose(gp16, gp32, rtol=3e-2, atol=1e-3)
    assert_close_grads(g16, g32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gradient_penalty_under_cuda_autocast_matches_fp32():
    d, real, fake, eps = _critic_and_pairs()
    dev = torch.device("cuda")
    d, real, fake, eps = d.to(dev), real.to(dev), fake.to(dev), eps.to(dev)
    gp32, g32 = _gp_and_grads(d, real, fake, eps)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        gp16, g16 = _gp_and_grads(d, real, fake, eps)
    assert torch.allclose(gp16, gp32, rtol=3e-2, atol=1e-3)
    assert_close_grads(g16, g32)
