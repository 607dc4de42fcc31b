import io

import numpy as np
import pytest
import torch
from PIL import Image

from vgan.jpeg import _CHROMA_TABLE, _LUMA_TABLE, jpeg, quant_tables


@pytest.fixture(scope="module")
def photograph(drive_root):
    return np.array(Image.open(drive_root / "test" / "images" / "01_test.tif").convert("RGB"))


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize("quality", [30, 50, 75, 95])
def test_a_photograph_loses_what_pils_jpeg_file_loses(photograph, quality):
    buffer = io.BytesIO()
    Image.fromarray(photograph).save(buffer, format="JPEG", quality=quality)
    pil = np.array(Image.open(buffer).convert("RGB")).astype(int)
    mine = (jpeg(as_tensor(photograph), torch.tensor([quality]))[0].permute(1, 2, 0).numpy() * 255).round()
    file_loss, my_loss = np.abs(pil - photograph).mean(), np.abs(mine - photograph).mean()
    assert abs(my_loss / file_loss - 1) < 0.1, (my_loss, file_loss)  # as much lost as the file loses
    assert np.abs(mine - pil).mean() < 0.8  # and mostly the same: within a level of 255 on average


def test_quality_scales_the_standard_tables_as_libjpeg_does():
    tables = quant_tables(torch.tensor([50, 100, 10]))
    assert tables[0, 0].flatten().tolist() == _LUMA_TABLE and tables[0, 1].flatten().tolist() == _CHROMA_TABLE
    assert (tables[1] == 1).all()
    assert (tables[2] >= tables[0]).all() and tables[2].max() == 255  # quality 10: x5, capped for baseline


def test_any_size_comes_back_its_size_on_8_bit_levels_and_grey_stays_grey():
    torch.manual_seed(0)
    grey = torch.rand(2, 1, 37, 53).expand(2, 3, 37, 53)
    out = jpeg(grey, torch.tensor([40, 90]))
    assert out.shape == grey.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out * 255, (out * 255).round())
    assert (out - out[:, :1]).abs().max() <= 1.5 / 255  # no chroma to lose: one grey (to a level's rounding)
    assert (out[0] - grey[0]).abs().mean() > (out[1] - grey[1]).abs().mean()  # lower quality, more lost
