"""Images as users have them, turned into what the generator takes: (N, 3, H, W) float32 in [0, 1].

Users hold numpy arrays from PIL or imageio (H, W, C, 8-bit), float64 arrays after `/ 255.0`,
torch tensors with or without a batch dimension, grey or RGBA pictures. `as_batch` takes all
of these and says what it converted; what it cannot take without guessing (floats outside
[0, 1]: 0..255 floats or a standardised image) it refuses with a message that says what to do,
instead of returning a map of nonsense.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from vgan.errors import BadInputError

CHANNELS = (1, 3, 4)  # grey, RGB, RGBA
BATCHED, CHANNELS_LAST = "batch dimension added", "channels-last (H, W, C) read as (C, H, W)"
LAYOUT_NOTES = (BATCHED, CHANNELS_LAST)
ALPHA_DROPPED = "alpha channel dropped"
EIGHT_BIT = "8-bit values divided by 255"  # the common case: said in a batch's summary, not on each image's row
# What segments: a generator wrapped for inference, an exported program, their views averaged (vgan.tta)
Model = Callable[[torch.Tensor], torch.Tensor]  # RGB (N, 3, H, W) in [0, 1] -> vessel probabilities (N, 1, H, W)


class InputError(BadInputError):
    """An image the model cannot take (exit status 2 in the CLIs)."""


def as_batch(x: Any, what: str = "input", keep_8bit: bool = False) -> tuple[torch.Tensor, list[str]]:
    """(N, 3, H, W) float32 in [0, 1] and the conversions made (empty for an exact fit).

    Accepted: numpy arrays or torch tensors of rank 2 (H, W: grey), 3 (H, W, C or C, H, W) or
    4 (N, H, W, C or N, C, H, W) with C in 1 (grey, repeated), 3 (RGB) or 4 (RGBA, alpha dropped);
    uint8 (/ 255), uint16 (/ 65535), bool, or floats in [0, 1] of any precision. A 3-D array is
    read channels-first when its first axis is a channel count and its last is not (torch's
    convention), else channels-last (numpy's and PIL's). keep_8bit: uint8 pixels stay uint8, for images
    held in memory (a quarter of float32's bytes); `unit_float` converts them where they are used."""
    notes: list[str] = []
    if isinstance(x, np.ndarray):
        if x.dtype == np.uint16:  # PIL's 16-bit grey and 16-bit TIFFs; torch has few uint16 ops
            x = x.astype(np.float32) / 65535
            notes.append("16-bit values divided by 65535")
        elif x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise InputError(f"{what}: expected numbers, got an array of {x.dtype}")
        x = np.ascontiguousarray(x)
        t = torch.from_numpy(x if x.flags.writeable else x.copy())  # PIL's arrays are read-only
    elif isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        raise InputError(f"{what}: expected a numpy array or a torch tensor, got {type(x).__name__}")
    shape = tuple(t.shape)
    if t.ndim == 2:
        t, channels_last = t[None, None], False
    elif t.ndim == 3:
        channels_last = not (shape[0] in CHANNELS and shape[-1] not in CHANNELS)
        t = t[None]
        notes.append(BATCHED)
    elif t.ndim == 4:
        channels_last = shape[1] not in CHANNELS and shape[-1] in CHANNELS
    else:
        raise InputError(f"{what}: expected an image (H, W, C), (C, H, W) or a batch (N, C, H, W); got shape {shape}")
    if channels_last:
        t = t.permute(0, 3, 1, 2)
        notes.append(CHANNELS_LAST)
    c = t.shape[1]
    if c not in CHANNELS:
        raise InputError(f"{what}: shape {shape} has {c} channels; expected 3 (RGB), 4 (RGBA) or 1 (grey)")
    if c == 4:
        t = t[:, :3]
        notes.append(ALPHA_DROPPED)
    elif c == 1:
        t = t.expand(-1, 3, -1, -1)
        notes.append("grey repeated to 3 channels")
    if not (keep_8bit and t.dtype == torch.uint8):
        t = _unit_float(t, what, notes)
    return t.contiguous(), notes


def unit_float(t: torch.Tensor) -> torch.Tensor:
    """Pixels as held (uint8 0..255, bool, or float in [0, 1]) as float in [0, 1], on their device: the same
    values `as_batch` gives, so an image held as uint8 meets the generator exactly as if read as float."""
    if t.dtype == torch.uint8:
        return t.float() / 255
    return t.float() if t.dtype == torch.bool else t


def _unit_float(t: torch.Tensor, what: str, notes: list[str]) -> torch.Tensor:
    if t.dtype == torch.uint8:
        notes.append(EIGHT_BIT)
    if t.dtype in (torch.bool, torch.uint8):
        return unit_float(t)
    if not t.is_floating_point():
        # JSON (a served request) has no uint8: an 8-bit image arrives as int64
        if int(t.min()) < 0 or int(t.max()) > 255:
            raise InputError(f"{what}: {str(t.dtype).removeprefix('torch.')} values {int(t.min())}..{int(t.max())} "
                             "are no 8-bit image: give uint8, uint16 or floats in [0, 1]")
        notes.append("integer values read as 8-bit")
        return t.float() / 255
    if t.dtype != torch.float32:
        notes.append(f"{str(t.dtype).removeprefix('torch.')} cast to float32")
        t = t.float()
    if not bool(torch.isfinite(t).all()):
        raise InputError(f"{what}: contains NaN or infinite values")
    lo, hi = float(t.min()), float(t.max())
    if lo < 0 or hi > 1:
        hint = "divide 8-bit values by 255" if hi > 1 and lo >= 0 and hi <= 255 else \
            "give the RGB image itself, not a normalised one"
        raise InputError(f"{what}: float values must lie in [0, 1], got {lo:.4g}..{hi:.4g}: {hint}")
    return t
