"""Pure loss functions. Discriminator outputs are raw scores (logits / critic values)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def seg_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target)


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
