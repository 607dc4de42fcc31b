"""Test-time augmentation: a model's probabilities averaged over mirrored views of each image.

Training flips and crops the photographs, but a U-Net's convolutions are not mirror-symmetric: the
map it gives a mirrored photograph, mirrored back, is not its map of the photograph, and the two err
apart. Their mean is the better map (nnU-Net averages mirrored views by default). The views are the
symmetries of the square, each undone on its map before the average:
- `none`: the image as it is (1 pass);
- `hflip`: and mirrored left-right, as a fellow eye is (2 passes);
- `flips`: and mirrored top-bottom, and both (4 passes);
- `dihedral`: those four, and each transposed (8 passes: all rotations by 90 degrees and mirrors).
Each view costs one forward pass. Validation during training takes the image once; the figures
(docs/evaluation.md, `benchmarks/tta.py`) compare the modes on the test photographs of generators chosen that way.
"""

from __future__ import annotations

import torch

from vgan.errors import ConfigError
from vgan.inputs import Model

View = tuple[bool, tuple[int, ...]]  # (transposed, flipped dims), transposed first

_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
VIEWS: dict[str, tuple[View, ...]] = {
    "none": ((False, ()),),
    "hflip": ((False, ()), (False, (-1,))),
    "flips": tuple((False, d) for d in _FLIPS),
    "dihedral": tuple((t, d) for t in (False, True) for d in _FLIPS),
}
TTA_MODES = tuple(VIEWS)
DEFAULT = "none"


def check_tta(mode: str, option: str = "--tta") -> str:
    """`mode` if it names a set of views; else a ConfigError naming `option`."""
    if mode not in VIEWS:
        raise ConfigError(f"{option} {mode!r}: give one of " + ", ".join(TTA_MODES))
    return mode


def _apply(x: torch.Tensor, view: View) -> torch.Tensor:
    transposed, dims = view
    x = x.transpose(-2, -1) if transposed else x
    return x.flip(dims) if dims else x


def _undo(p: torch.Tensor, view: View) -> torch.Tensor:
    transposed, dims = view
    p = p.flip(dims) if dims else p
    return p.transpose(-2, -1) if transposed else p


def with_tta(model: Model, mode: str) -> Model:
    """`model` whose probabilities are the mean over the views of `mode` (`model` itself for `none`)."""
    views = VIEWS[check_tta(mode)]
    if len(views) == 1:
        return model

    def averaged(images: torch.Tensor) -> torch.Tensor:
        total = None
        for view in views:
            p = _undo(model(_apply(images, view)).float(), view)
            total = p.clone() if total is None else total.add_(p)  # clone: never write into the model's output
        return total.div_(len(views))

    return averaged
