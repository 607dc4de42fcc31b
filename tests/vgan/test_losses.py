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


def test_thin_vessel_weights_weigh_each_thin_pixels_bce_and_leave_the_rest():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 1, 6, 6), (torch.rand(2, 1, 6, 6) > 0.5).float()
    thin = target * (torch.rand(2, 1, 6, 6) > 0.5).float()
    weight = losses.thin_vessel_weights(thin, 4.0)
    assert set(weight[thin > 0].tolist()) == {4.0} and set(weight[thin == 0].tolist()) == {1.0}
    each = F.binary_cross_entropy(torch.sigmoid(logits), target, reduction="none")
    assert torch.allclose(losses.seg_bce(logits, target, weight), (each + 3 * each * thin).mean(), atol=1e-6)
    assert torch.equal(losses.seg_bce(logits, target, losses.thin_vessel_weights(thin, 1.0)),
                       losses.seg_bce(logits, target))


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


def vessels(thin_gap: int = 0, shaved: int = 0) -> torch.Tensor:
    """A map (1, 1, 40, 80) of two horizontal vessels, 2 and 8 pixels wide: `thin_gap` columns cut out of the thin
    one, `shaved` pixels taken off the thick one's edge."""
    m = torch.zeros(1, 1, 40, 80)
    m[0, 0, 8:10, 4:76] = 1
    m[0, 0, 24:32, 4:76] = 1
    m[0, 0, 8:10, 38:38 + thin_gap] = 0
    m[0, 0, 24, 20:20 + shaved] = 0
    return m


def test_the_soft_skeleton_of_a_vessel_is_its_centre_line():
    bar = torch.zeros(1, 1, 32, 40)
    bar[0, 0, 10:17, 2:38] = 1  # 7 pixels wide: its centre row is 13
    rows = (losses.soft_skeleton(bar, 10)[0, 0] > 0.5).any(dim=1).nonzero().flatten().tolist()
    assert rows == [13]
    # (7 - 1) / 2 = 3 erosions are enough; with fewer the vessel has no centre line at all (cldice_iters' rule)
    assert torch.equal(losses.soft_skeleton(bar, 3), losses.soft_skeleton(bar, 10))
    assert losses.soft_skeleton(bar, 2).max() == 0


def test_soft_cldice_charges_a_gap_in_a_thin_vessel_more_than_the_same_pixels_off_a_thick_one():
    label = vessels()
    assert losses.soft_cldice(label, label, 10) == pytest.approx(0, abs=1e-6)
    gap, shaved = vessels(thin_gap=4), vessels(shaved=8)  # 8 pixels missed each: the same to BCE
    assert (label - gap).sum() == (label - shaved).sum() == 8
    bce = [F.binary_cross_entropy(m.clamp(0.01, 0.99), label).item() for m in (gap, shaved)]
    assert bce[0] == pytest.approx(bce[1], rel=1e-6)
    cut, edge = losses.soft_cldice(gap, label, 10), losses.soft_cldice(shaved, label, 10)
    # the thick vessel's centre line is still covered, and the map's still inside the label: nothing to clDice
    assert cut > 0.01 and edge == pytest.approx(0, abs=1e-6), (cut, edge)


def test_soft_cldice_gradient_closes_the_gap():
    label = vessels()
    probs = vessels(thin_gap=4).clamp(0.05, 0.95).requires_grad_(True)
    loss = losses.soft_cldice(probs, label, 10)
    loss.backward()
    in_gap = probs.grad[0, 0, 8:10, 38:42]
    assert (in_gap < 0).all(), "raising the gap's probabilities must lower the loss"
    with torch.no_grad():
        closed = probs.clone()
        closed[0, 0, 8:10, 38:42] = 0.95
    assert losses.soft_cldice(closed, label, 10) < loss
