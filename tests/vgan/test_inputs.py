"""Images as users have them: every accepted form gives the same batch; the rest is refused clearly."""

import numpy as np
import pytest
import torch

from vgan.inputs import InputError, as_batch

RGB = np.random.default_rng(0).random((17, 23, 3), dtype=np.float32)  # H, W, C in [0, 1]
CANON = torch.from_numpy(RGB).permute(2, 0, 1)[None]  # (1, 3, 17, 23)


@pytest.mark.parametrize("given, notes", [
    (CANON, []),
    (CANON[0], ["batch dimension added"]),
    (RGB, ["batch dimension added", "channels-last (H, W, C) read as (C, H, W)"]),
    (RGB[None], ["channels-last (H, W, C) read as (C, H, W)"]),
    (RGB.astype(np.float64), ["batch dimension added", "channels-last (H, W, C) read as (C, H, W)",
                              "float64 cast to float32"]),
    (np.concatenate([RGB, np.ones_like(RGB[..., :1])], -1), ["batch dimension added",
                                                             "channels-last (H, W, C) read as (C, H, W)",
                                                             "alpha channel dropped"]),
])
def test_accepted_forms_give_the_canonical_batch(given, notes):
    batch, said = as_batch(given)
    assert batch.dtype == torch.float32 and batch.shape == (1, 3, 17, 23)
    assert torch.allclose(batch, CANON, atol=1e-7) and said == notes


def test_integer_images_are_scaled_by_their_depth():
    u8 = (RGB * 255).round().astype(np.uint8)
    batch, said = as_batch(u8)
    assert torch.allclose(batch, CANON, atol=0.5 / 255) and "8-bit values divided by 255" in said
    u16 = (RGB * 65535).round().astype(np.uint16)
    batch, said = as_batch(u16)
    assert torch.allclose(batch, CANON, atol=0.5 / 65535) and "16-bit values divided by 65535" in said


def test_integers_as_json_gives_them_are_read_as_8_bit():
    batch, said = as_batch((RGB * 255).round().astype(np.int64))
    assert torch.allclose(batch, CANON, atol=0.5 / 255) and "integer values read as 8-bit" in said


def test_grey_is_repeated_to_three_channels():
    grey = RGB[..., 0]
    for given in (grey, grey[..., None], torch.from_numpy(grey)[None, None]):
        batch, said = as_batch(given)
        assert batch.shape == (1, 3, 17, 23) and "grey repeated to 3 channels" in said
        assert torch.equal(batch[:, 0], batch[:, 2]) and torch.allclose(batch[0, 1], torch.from_numpy(grey))


@pytest.mark.parametrize("given, fragment", [
    (RGB * 255, "float values must lie in [0, 1], got 0.0"),
    (RGB * 255, "divide 8-bit values by 255"),
    (RGB - 0.5, "give the RGB image itself, not a normalised one"),
    (np.where(RGB > 0.9, np.nan, RGB), "NaN or infinite"),
    (RGB[..., :2], "has 2 channels"),
    (RGB[None, None], "got shape (1, 1, 17, 23, 3)"),
    ((RGB * 1000).astype(np.int64), "int64 values 0..999 are no 8-bit image"),
    (np.array([["a"]]), "expected numbers"),
    ([[0.1, 0.2]], "expected a numpy array or a torch tensor, got list"),
])
def test_what_cannot_be_taken_without_guessing_is_refused(given, fragment):
    with pytest.raises(InputError) as e:
        as_batch(given, "photo.png")
    assert str(e.value).startswith("photo.png: ") and fragment in str(e.value)
