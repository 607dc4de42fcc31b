"""The scale a generator was trained at, and photographs brought to it.

A U-Net learns vessels a few pixels wide: a generator trained on DRIVE (field of view ~540 pixels
across) sees a 3000-pixel photograph's vessels five times wider than any it was taught. The field of
view's diameter in pixels is the scale every fundus photograph carries, so the generator records the
median diameter of its training split (`Generator.fov_diameter`) and a photograph is resized so its
own FOV matches before the generator sees it; the probabilities are resized back to the photograph.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from vgan.errors import ConfigError, DataError
from vgan.inputs import Model, unit_float

if TYPE_CHECKING:
    from vgan.data import Split

# A FOV within 10 % of the trained one is used as it is: resampling costs sharpness for no gain
# (DRIVE's own 40 images span 535-541 pixels; STARE's are 647-687, 21 % wider than DRIVE's).
TOLERANCE = 1.1
# A fundus camera's FOV fills most of its frame (DRIVE 92 %, STARE 93 % of the longer side); one
# narrower than a quarter of it is an estimate or a mask gone wrong, not a camera, and resizing by it
# would shrink the photograph to nothing or blow it up (the resized image stays under 4 training FOVs).
MIN_FOV_SHARE = 0.25
MAX_FACTOR = 4.0  # a given --scale: enlarging further only costs memory (x16 the pixels at 4)
MASK_OR_FACTOR = "give its mask (--masks) or a factor (--scale)"  # what the CLIs' users can do about a bad FOV


def fov_diameter(mask: np.ndarray | torch.Tensor) -> float:
    """The diameter in pixels of a field of view (a bool or 0/1 mask, H x W): its larger extent, since
    cameras cut the circle at the top and bottom (STARE: 649 wide, 560 high), not across."""
    m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask) > 0.5
    while m.ndim > 2 and m.shape[0] == 1:  # (1, 1, H, W) from a batch; not squeeze(): a 1-pixel-high image is H x W
        m = m[0]
    if m.ndim != 2:
        raise ValueError(f"fov_diameter takes one H x W mask, got shape {m.shape}")
    extents = [np.flatnonzero(m.any(axis=a)) for a in (0, 1)]
    return float(max(e[-1] - e[0] + 1 if e.size else 0 for e in extents))


# The buffer a VesselSegmenter (and the program exported from it) holds its generator's training FOV in
RECORDED_FOV = "generator.fov_diameter"


def recorded_fovs(segmenter: torch.nn.Module) -> list[float]:
    """The `RECORDED_FOV` buffer of each generator a VesselSegmenter, an EnsembleSegmenter or a program exported
    from one holds (0 where not recorded): one per generator."""
    return [float(b) for name, b in segmenter.named_buffers()
            if name == RECORDED_FOV or name.endswith("." + RECORDED_FOV)]


def recorded_fov(segmenter: torch.nn.Module) -> float | None:
    """The FOV diameter a VesselSegmenter's generator (an EnsembleSegmenter's: its members share one), or
    the program exported from it, was trained at; None for one saved before the scale was recorded (0 in
    the buffer: unknown, as in Generator)."""
    found = set(recorded_fovs(segmenter))
    if len(found) > 1:
        raise ValueError(f"the model's generators were trained at different FOV scales ({sorted(found)} px)")
    return (found.pop() or None) if found else None


DOWN_BLOCK = re.compile(r"(?:^|\.)generator\.down\.(\d+)\.")  # a Generator's encoder blocks: 0..depth


def smallest_side(segmenter: torch.nn.Module) -> int:
    """The fewest pixels a side of an image the program exported from a VesselSegmenter (an EnsembleSegmenter)
    takes: 2**depth of its deepest generator, 1 where it holds none. torch.export traces the U-Net's bottleneck
    (h // 2**depth + 1 pixels after the padding) as wider than 1, and the program's guard refuses a smaller image
    with an AssertionError that names no image (the module itself takes any size)."""
    blocks = [int(m.group(1)) for name, _ in segmenter.named_parameters() if (m := DOWN_BLOCK.search(name))]
    return 2 ** max(blocks) if blocks else 1


def check_side(size: tuple[int, int], factor: float, smallest: int, what: str) -> None:
    """A ScaleError naming `what` where the image of `size`, resized by `factor`, has a side under `smallest`."""
    seen = scaled_size(size, factor)
    if min(seen) < smallest:
        resized = f", resized x{factor:.3g} to {seen[0]} x {seen[1]}," if seen != tuple(size) else ""
        raise ScaleError(f"{what}: {size[0]} x {size[1]} pixels{resized} is under the {smallest} pixels a side the "
                         f"model takes (its U-Net halves an image {smallest.bit_length() - 1} times): no fundus "
                         "photograph is this small")


def median_fov_diameter(masks: torch.Tensor) -> float:
    """The training scale: the median FOV diameter of a split's masks (N, 1, H, W)."""
    return float(np.median([fov_diameter(m) for m in masks]))


def mixed_scale_note(masks: torch.Tensor) -> str | None:
    """What to tell the trainer of a split whose FOVs (masks N, 1, H, W) differ by more than the tolerance:
    its generator learns vessels at several scales, and is used at their median."""
    diameters = [fov_diameter(m) for m in masks]
    lo, hi, median = min(diameters), max(diameters), float(np.median(diameters))
    if hi <= lo * TOLERANCE:
        return None
    return (f"the training photographs' FOVs are {lo:.0f}-{hi:.0f} pixels across: the generator learns vessels at "
            f"more than one scale, and photographs are brought to the median ({median:.0f}) to be segmented; "
            f"data.fov_diameter: median (here {median:.0f}) trains them all at that one")


class ScaleError(DataError):
    """An image whose FOV no camera gives: named, and the other images go on."""


@dataclass(frozen=True)
class ScaleSpec:
    """What `--scale` asked for: `auto` (to the model's FOV) or a fixed factor (1: as the image is)."""

    factor: float | None  # None: auto

    @classmethod
    def parse(cls, text: str, option: str = "--scale") -> ScaleSpec:
        if text == "auto":
            return cls(None)
        try:
            factor = float(text)
        except ValueError:
            raise ConfigError(f"{option} {text}: give 'auto' or a factor such as 0.5") from None
        if not 0 < factor <= MAX_FACTOR:
            raise ConfigError(f"{option} {text}: a factor must be above 0 and at most {MAX_FACTOR:g}")
        return cls(factor)

    def fixed_factor(self, trained: float | None) -> float | None:
        """The factor every image gets whatever its FOV (a given one; 1 under auto for a model that records
        no scale), or None where each image's FOV decides."""
        if self.factor is not None:
            return self.factor
        return None if trained else 1.0

    def factor_of(self, fov: np.ndarray | torch.Tensor, trained: float | None, what: str,
                  remedy: str = MASK_OR_FACTOR, smallest: int = 1) -> float:
        """`factor_for` the image whose field of view is the mask `fov` (H x W, or 1 x H x W); `smallest`: the
        fewest pixels a side of the resized image may have (`check_side`)."""
        size = tuple(fov.shape[-2:])
        factor = self.factor_for(fov_diameter(fov), max(size), trained, what, remedy)
        check_side(size, factor, smallest, what)
        return factor

    def factor_for(self, diameter: float, side: int, trained: float | None, what: str,
                   remedy: str = MASK_OR_FACTOR) -> float:
        """The factor an image is resized by: its FOV is `diameter` pixels across, its longer side `side`;
        `trained` is the model's FOV diameter (None where the model does not record it: auto then keeps
        the image as it is). A FOV no camera gives, or one auto would enlarge more than `MAX_FACTOR` (as training
        refuses to), is a ScaleError naming the image; `remedy` ends its message."""
        fixed = self.fixed_factor(trained)
        if fixed is not None:
            return fixed
        if diameter < MIN_FOV_SHARE * side:
            raise ScaleError(f"{what}: its field of view is {diameter:.0f} pixels across in a {side}-pixel image, "
                             f"too narrow for a fundus camera's: {remedy}")
        factor = trained / diameter
        if factor > MAX_FACTOR:  # the pixels it would be segmented from are not in the photograph
            raise ScaleError(f"{what}: its field of view is {diameter:.0f} pixels across; brought to {trained:.0f} it "
                             f"would be enlarged x{factor:.1f}, more than x{MAX_FACTOR:g} (a thumbnail, a crop, a FOV "
                             f"gone wrong, or a camera of far lower resolution than the model's?): {remedy}")
        return 1.0 if abs(math.log(factor)) <= math.log(TOLERANCE) else factor


AUTO = ScaleSpec(None)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) to `size`, bilinear; antialiased when it shrinks, so thin vessels fade rather than alias.
    Pixels held as uint8 or bool (a Split's) are resized as floats in [0, 1]; at their own size they stay as held."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(unit_float(x), size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)


def scaled_size(size: tuple[int, int], factor: float) -> tuple[int, int]:
    return max(1, round(size[0] * factor)), max(1, round(size[1] * factor))


def predict_at_scale(model: Model, images: torch.Tensor,
                     factor: float) -> torch.Tensor:
    """`model`'s probabilities (N, 1, H, W) for images (N, 3, H, W) in [0, 1] resized by `factor` first,
    resized back to the images' own size."""
    size = tuple(images.shape[-2:])
    probs = model(resize(images, scaled_size(size, factor))).float()
    return resize(probs, size)


def predict_at_factors(model: Model, images: torch.Tensor,
                       factors: list[float]) -> torch.Tensor:
    """`predict_at_scale` with image i of `images` resized by factors[i]: one call where all factors agree."""
    if len(set(factors)) == 1:
        return predict_at_scale(model, images, factors[0])
    return torch.cat([predict_at_scale(model, images[i : i + 1], f) for i, f in enumerate(factors)])


def scaled_predictions(model: Model, trained: float | None, split: Split,
                       batch_size: int, scale: ScaleSpec) -> tuple[list[np.ndarray], list[float]]:
    """Probabilities (H, W) of each image of a split at its own size: `model` (images (N, 3, H, W) in [0, 1]
    in, probabilities out) sees each image resized by its `scale` factor (from its FOV mask and `trained`,
    the model's FOV diameter) and its map is resized back. Returns the maps and the factors."""
    factors = [scale.factor_of(split.own(i, m), trained, f"{split.name} image {name}")
               for i, (name, m) in enumerate(zip(split.ids, split.masks, strict=True))]
    maps: list[np.ndarray] = [np.empty(0)] * len(split)
    for (h, w), idx in split.size_groups():
        # a batch at a time: resizing converts to floats, and a whole test set of large photographs as floats,
        # resized, is gigabytes beside the maps kept
        for batch in (idx[k : k + batch_size] for k in range(0, len(idx), batch_size)):
            images = unit_float(split.images[batch, :, :h, :w])
            probs = predict_at_factors(model, images, [factors[i] for i in batch])
            for i, p in zip(batch, probs.cpu().numpy()[:, 0], strict=True):
                maps[i] = p
    return maps, factors
