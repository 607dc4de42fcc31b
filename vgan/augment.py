"""Batched joint augmentation on the training device.

The reference implementation's transforms (colour jitter on the image; random crop and
flips shared by image, label and mask), done as tensor ops on the whole batch: one gather
does crop and flips for all three, so on a GPU nothing leaves the GPU. Random numbers come
from a CPU `torch.Generator` (its state goes into checkpoints, so a resumed run draws the
same batches) and only tiny per-sample factors are copied to the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vgan.inputs import unit_float

# Jitter ranges at strength 1, in torchvision ColorJitter's terms: brightness and contrast
# factors in [1 - r, 1 + r], hue shift in [-r, r] turns of the colour wheel.
BRIGHTNESS = 0.3
CONTRAST = 0.3
HUE = 0.05

# RGB <-> YIQ: hue is a rotation of the (I, Q) chroma plane.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


@dataclass
class Batch:
    images: torch.Tensor  # (B,3,h,w) in [0,1]
    labels: torch.Tensor  # (B,1,h,w) in {0,1}
    masks: torch.Tensor  # (B,1,h,w) in {0,1}
    thin: torch.Tensor | None = None  # (B,1,h,w) in {0,1}: the label's thin-vessel pixels, where a loss weighs them


def get_transform(train: bool, crop_size: int | None, strength: float, flip: bool,
                  sizes: torch.Tensor | None = None, grey: float = 0.0):
    """The one transform factory: training gets crop/flip/jitter (and grey, with probability `grey`), evaluation
    gets nothing. `sizes`: each image's own (h, w), (N, 2) int64, where the stacked images are padded to the
    largest (None: none is)."""
    if not train:
        return lambda stacked, index, gen: _unstack(stacked[index])
    return lambda stacked, index, gen: augment(stacked, index, crop_size, strength, flip, gen, sizes, grey)


def stack(images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, thin: torch.Tensor | None = None
          ) -> torch.Tensor:
    """(N,5,H,W): image, label and mask in one tensor so one gather crops all three alike (N,6,H,W with the labels'
    thin vessels, `thin`). In the images' dtype: uint8 photographs stay uint8 (on a GPU too), only the crops
    become floats."""
    extra = [] if thin is None else [thin.to(images.dtype)]
    return torch.cat([images, labels.to(images.dtype), masks.to(images.dtype), *extra], dim=1)


def _unstack(x: torch.Tensor) -> Batch:
    return Batch(unit_float(x[:, :3]), x[:, 3:4].float(), x[:, 4:5].float(),
                 x[:, 5:6].float() if x.shape[1] > 5 else None)


def _axis_index(offset: torch.Tensor, length: int, flipped: torch.Tensor) -> torch.Tensor:
    ramp = torch.arange(length)
    return offset[:, None] + torch.where(flipped[:, None], length - 1 - ramp, ramp)


def augment(
    stacked: torch.Tensor,
    index: torch.Tensor,
    crop_size: int | None,
    strength: float,
    flip: bool,
    gen: torch.Generator,
    sizes: torch.Tensor | None = None,
    grey: float = 0.0,
) -> Batch:
    """Crop, flip and jitter the samples `index` (CPU int64) of a stacked (N,5,H,W) or (N,6,H,W) tensor; with `sizes`
    (N, 2), each crop lies within its image's own size (uniform over the offsets it allows); with `grey` > 0,
    that share of them turned grey (`to_grey`), after the jitter."""
    b = index.numel()
    _, _, h, w = stacked.shape
    ch, cw = (h, w) if crop_size is None else (crop_size, crop_size)
    if sizes is None or crop_size is None:  # whole (padded) images have one offset: 0
        ys = torch.randint(0, h - ch + 1, (b,), generator=gen)
        xs = torch.randint(0, w - cw + 1, (b,), generator=gen)
    else:
        room = sizes[index] - torch.tensor([ch, cw]) + 1
        ys = (torch.rand(b, generator=gen, dtype=torch.float64) * room[:, 0]).long()
        xs = (torch.rand(b, generator=gen, dtype=torch.float64) * room[:, 1]).long()
    hflip = torch.rand(b, generator=gen) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)
    vflip = torch.rand(b, generator=gen) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)
    jitter = torch.rand(b, 3, generator=gen) * 2 - 1  # brightness, contrast, hue in [-1, 1]

    dev = stacked.device
    rows = _axis_index(ys, ch, vflip).to(dev, non_blocking=True)
    cols = _axis_index(xs, cw, hflip).to(dev, non_blocking=True)
    idx = index.to(dev, non_blocking=True)
    out = stacked[idx[:, None, None, None], torch.arange(stacked.shape[1], device=dev)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]
    batch = _unstack(out)
    if strength > 0:
        batch.images = color_jitter(batch.images, jitter.to(dev, non_blocking=True), strength)
    if grey > 0:  # drawn last and only then: a run without it draws the batches it drew before it existed
        turned = torch.rand(b, generator=gen) < grey
        green = torch.rand(b, generator=gen) < 0.5
        batch.images = to_grey(batch.images, turned.to(dev, non_blocking=True), green.to(dev, non_blocking=True))
    return batch


def to_grey(images: torch.Tensor, turned: torch.Tensor, green: torch.Tensor) -> torch.Tensor:
    """The samples `turned` (B,) bool as one grey in all three channels, as vgan.predict reads a grey file: their
    green channel where `green` (a red-free photograph: taken through a green filter), else their luminance (a
    colour photograph saved as grey)."""
    luminance = (images * _RGB2YIQ[0].to(images).view(1, 3, 1, 1)).sum(1, keepdim=True)
    grey = torch.where(green.view(-1, 1, 1, 1), images[:, 1:2], luminance)
    return torch.where(turned.view(-1, 1, 1, 1), grey.expand_as(images), images)


def color_jitter(images: torch.Tensor, u: torch.Tensor, strength: float) -> torch.Tensor:
    """Brightness, contrast and hue per sample; u (B,3) in [-1,1] picks each factor."""
    bright = (1 + BRIGHTNESS * strength * u[:, 0]).view(-1, 1, 1, 1)
    contrast = (1 + CONTRAST * strength * u[:, 1]).view(-1, 1, 1, 1)
    angle = 2 * math.pi * HUE * strength * u[:, 2]
    x = (images * bright).clamp(0, 1)
    gray = (x * _RGB2YIQ[0].to(x).view(1, 3, 1, 1)).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    x = ((x - gray) * contrast + gray).clamp(0, 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(len(u), 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = _YIQ2RGB.to(x) @ rot @ _RGB2YIQ.to(x)  # (B,3,3): hue rotation in RGB space
    return torch.einsum("bij,bjhw->bihw", m, x).clamp(0, 1)
