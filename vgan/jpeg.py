"""What saving as JPEG does to a photograph, as tensor ops on a batch (for augmentation on the training device).

Baseline JPEG as libjpeg (and so PIL) writes it: RGB to YCbCr (JFIF, full range), the chroma averaged over 2x2
pixels (4:2:0, the default of cameras and libraries), each 8x8 block's DCT divided by the standard tables scaled
to the quality (libjpeg's `jpeg_quality_scaling`) and rounded, then decoded: the inverse DCT, the chroma
upsampled as libjpeg's "fancy" filter does (bilinear between sample centres), back to 8-bit RGB. Floating-point
where libjpeg computes in integers: on a DRIVE photograph it stays 0.6-0.75 of a level (of 255) from PIL's
decoded file on average, where the file is 1.2-2.7 levels from the photograph (quality 95 to 30; a test).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ITU T.81 Annex K: the example quantisation tables every encoder starts from (quality 50).
_LUMA_TABLE = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
_CHROMA_TABLE = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32
_RGB2YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC2RGB = torch.tensor([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]])


def _dct_matrix() -> torch.Tensor:
    """The orthonormal 8-point DCT-II: a block's coefficients are D @ block @ D.T."""
    k, n = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    d = torch.cos((2 * n + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d


_DCT = _dct_matrix()


def quant_tables(quality: torch.Tensor) -> torch.Tensor:
    """(B,) integer qualities 1-100 -> (B, 2, 8, 8) tables (luma, chroma), as libjpeg scales them (baseline:
    each entry 1 to 255)."""
    q = quality.to(torch.float32).clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q).view(-1, 1, 1, 1)
    base = torch.tensor([_LUMA_TABLE, _CHROMA_TABLE], dtype=torch.float32).view(1, 2, 8, 8)
    return torch.floor((base * scale + 50) / 100).clamp(1, 255)


def _blockwise(x: torch.Tensor, fn) -> torch.Tensor:
    """`fn` applied to every 8x8 block of (B, C, H, W) with H, W multiples of 8, as (B, C, H/8, W/8, 8, 8)."""
    b, c, h, w = x.shape
    blocks = x.view(b, c, h // 8, 8, w // 8, 8).transpose(3, 4)
    return fn(blocks).transpose(3, 4).reshape(b, c, h, w)


def _code(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """A level-shifted plane (B, 1, H, W) through the DCT, quantised by `table` (B, 8, 8), and back."""
    d = _DCT.to(plane)
    t = table.to(plane).view(-1, 1, 1, 1, 8, 8)
    return _blockwise(plane, lambda blk: d.T @ (torch.round((d @ blk @ d.T) / t) * t) @ d)


def jpeg(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Photographs (B, 3, H, W) in [0, 1] as saved as JPEG at `quality` ((B,) integers 1-100) and read back, in
    [0, 1] on 8-bit levels. Any size: padded at the bottom and right by repeating the edge, as encoders pad
    to whole blocks, and cut back."""
    b, _, h, w = images.shape
    ph, pw = -h % 16, -w % 16  # whole chroma blocks: 8 subsampled pixels are 16 full ones
    x = F.pad(images * 255, (0, pw, 0, ph), mode="replicate") if ph or pw else images * 255
    ycc = torch.einsum("ij,bjhw->bihw", _RGB2YCC.to(x), x)
    ycc[:, 1:] += 128
    tables = quant_tables(quality)
    luma = _code(ycc[:, :1] - 128, tables[:, 0]) + 128
    chroma = F.avg_pool2d(ycc[:, 1:], 2)
    chroma = torch.cat([_code(chroma[:, i : i + 1] - 128, tables[:, 1]) for i in range(2)], dim=1) + 128
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    ycc = torch.cat([luma, chroma], dim=1).clamp(0, 255)
    ycc[:, 1:] -= 128
    rgb = torch.einsum("ij,bjhw->bihw", _YCC2RGB.to(x), ycc)
    return (torch.round(rgb.clamp(0, 255)) / 255)[:, :, :h, :w]
