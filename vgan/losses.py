"""Pure loss functions. Discriminator outputs are raw scores (logits / critic values)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def seg_bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean BCE over the pixels, each weighted by `weight` (None: alike)."""
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight)


def thin_vessel_weights(thin: torch.Tensor, thin_weight: float) -> torch.Tensor:
    """Per-pixel BCE weights: `thin_weight` on a label's thin-vessel pixels (`thin`, in {0, 1}), 1 elsewhere."""
    return 1 + (thin_weight - 1) * thin


def wgan_critic_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Wasserstein critic loss D(fake) - D(real) (without the gradient penalty)."""
    return d_fake.mean() - d_real.mean()


def wgan_generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    return -d_fake.mean()


def vanilla_discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """The paper's GAN loss: BCE of real scores against 1 and fake scores against 0."""
    return F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + F.binary_cross_entropy_with_logits(
        d_fake, torch.zeros_like(d_fake)
    )


def vanilla_generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    eps: torch.Tensor,
) -> torch.Tensor:
    """WGAN-GP term E[(||grad_x D(x)||_2 - 1)^2] at x = eps*real + (1-eps)*fake.

    The norm is taken per sample over all non-batch dimensions (the reference
    implementation took it per pixel). `eps` has shape (B,) and comes from the caller's
    generator so runs are reproducible. The graph is kept for the critic's backward.
    """
    e = eps.view(-1, *([1] * (real.dim() - 1))).to(real)
    x = (e * real + (1 - e) * fake.detach()).requires_grad_(True)
    out = critic(x).float()  # under autocast the critic may answer in bf16: sum and norm in fp32
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return ((grad.float().flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def soft_erode(p: torch.Tensor) -> torch.Tensor:
    """Grey-level erosion of maps (..., C, H, W), each channel alone, by a 3x3 cross: the minimum of a vertical and a
    horizontal one."""
    return torch.minimum(-F.max_pool2d(-p, (3, 1), 1, (1, 0)), -F.max_pool2d(-p, (1, 3), 1, (0, 1)))


def soft_dilate(p: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(p, 3, 1, 1)


def soft_skeleton(p: torch.Tensor, iters: int) -> torch.Tensor:
    """Shit et al. (CVPR 2021)'s soft skeleton of maps in [0, 1]: what each of `iters` erosions removes that an
    opening does not restore. A vessel wider than 2 * iters + 1 pixels gets none: it never thins to a line."""
    eroded = soft_erode(p)
    skel = F.relu(p - soft_dilate(eroded))
    for _ in range(iters):
        # an opening's erosion is the next erosion: eroding once a step, not twice, takes 40 % off the term's time
        p, eroded = eroded, soft_erode(eroded)
        delta = F.relu(p - soft_dilate(eroded))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def soft_cldice(probs: torch.Tensor, target: torch.Tensor, iters: int, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft clDice (Shit et al. 2021) of vessel probabilities and labels (N, 1, H, W), pooled over the
    batch as the metric pools its images: the harmonic mean of the share of the map's soft centrelines inside
    the labelled vessels and of the label's centrelines the map covers. A gap in a thin vessel costs it what it
    costs the metric's sensitivity, where BCE counts the few pixels of the gap."""
    # the batch as channels, channels-last: CPU max pooling vectorises over channels, and the term (forward and
    # backward) takes 30-35 ms a step of the CPU recipe's 8 crops of 96 pixels on 2 threads, 52 ms on (N, 1, H, W)
    probs, target = (m.reshape(1, -1, *m.shape[-2:]).contiguous(memory_format=torch.channels_last)
                     for m in (probs, target))
    with torch.no_grad():
        skel_t = soft_skeleton(target, iters)
    skel_p = soft_skeleton(probs, iters)
    precision = ((skel_p * target).sum() + smooth) / (skel_p.sum() + smooth)
    sensitivity = ((skel_t * probs).sum() + smooth) / (skel_t.sum() + smooth)
    return 1 - 2 * precision * sensitivity / (precision + sensitivity)
