"""The V-GAN networks: a U-Net generator and a discriminator on concat(image, vessel map).

Only `nn.Module`s live here, built from their config dataclass `ModelConfig` (defined in vgan.config with the
rest of the config tree, which reads without torch; importable from here too); losses and training are elsewhere.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vgan.config import DISC_HEADS, DISC_NORMS, ModelConfig  # noqa: F401  (this module's names since it began)


class ConvBlock(nn.Sequential):
    """Two Conv3x3-BN-ReLU layers, the unit of the reference implementation's U-Net."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class Generator(nn.Module):
    """U-Net mapping RGB in [0, 1] of any size to vessel logits of the same size.

    Normalisation statistics and the training split's field-of-view diameter are buffers (set
    from the training split) and padding to a multiple of 2**depth happens inside, so a saved
    generator is self-contained: it knows the colours and the scale (`vgan.scale`) it was taught.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.depth = cfg.depth
        widths = [cfg.base_width * 2**i for i in range(cfg.depth + 1)]
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5))
        self.register_buffer("std", torch.full((1, 3, 1, 1), 0.25))
        self.register_buffer("fov_diameter", torch.tensor(0.0))  # pixels; 0: unknown
        self.down = nn.ModuleList([ConvBlock(3, widths[0])])
        self.down.extend(ConvBlock(widths[i - 1], widths[i]) for i in range(1, cfg.depth + 1))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2) for i in range(cfg.depth, 0, -1)
        )
        self.merge = nn.ModuleList(ConvBlock(2 * widths[i - 1], widths[i - 1]) for i in range(cfg.depth, 0, -1))
        self.head = nn.Conv2d(widths[0], 1, 1)

    @torch.no_grad()
    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean.reshape(1, 3, 1, 1))
        self.std.copy_(std.reshape(1, 3, 1, 1))

    @torch.no_grad()
    def set_fov_diameter(self, pixels: float) -> None:
        self.fov_diameter.fill_(pixels)

    @property
    def trained_fov(self) -> float | None:
        """The FOV diameter (pixels) of the photographs it was trained on; None for a generator saved
        before it was recorded."""
        return float(self.fov_diameter) or None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Generators saved before the scale was recorded lack the buffer: this one's value stays (0,
        # unknown, in a fresh generator; the training split's when a trainer resumes from such a file).
        state_dict.setdefault(prefix + "fov_diameter", self.fov_diameter.clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        pad_h, pad_w = (-h) % m, (-w) % m
        x = (x - self.mean) / self.std
        # Zero in normalised space is the mean colour: padding blends with the FOV border.
        x = F.pad(x, (0, pad_w, 0, pad_h))
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)[..., :h, :w]


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, ch)  # LayerNorm over (C, H, W) for conv features
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    return nn.Identity()


class Discriminator(nn.Module):
    """Scores concat(image, vessel map); returns raw scores (no sigmoid: WGAN needs a critic).

    Heads after V-GAN: `pixel` scores every pixel (1x1 convolutions), `patch` scores
    receptive-field patches after `disc_depth` stride-2 convolutions, `image` pools to one
    score per image. Output shape (N, 1, h, w) with h, w depending on the head.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.head_kind = cfg.disc_head
        w = cfg.disc_width
        layers: list[nn.Module] = []
        bias = cfg.disc_norm == "none"  # a normalisation right after a conv cancels its bias
        if cfg.disc_head == "pixel":
            ch = 4
            for out in (w, 2 * w):
                layers += [nn.Conv2d(ch, out, 1, bias=bias), _norm(cfg.disc_norm, out), nn.LeakyReLU(0.2, inplace=True)]
                ch = out
        else:
            layers += [nn.Conv2d(4, w, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            ch = w
            for i in range(cfg.disc_depth):
                out = w * 2 ** min(i + 1, 3)
                layers += [
                    nn.Conv2d(ch, out, 4, stride=2, padding=1, bias=bias),
                    _norm(cfg.disc_norm, out),
                    nn.LeakyReLU(0.2, inplace=True),
                ]
                ch = out
        self.features = nn.Sequential(*layers)
        self.out = nn.Conv2d(ch, 1, 1 if cfg.disc_head == "pixel" else 3, padding=0 if cfg.disc_head == "pixel" else 1)

    def forward(self, image: torch.Tensor, vessel_map: torch.Tensor) -> torch.Tensor:
        return self.score(torch.cat([image, vessel_map], dim=1))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of an already concatenated (N,4,H,W) input (the gradient penalty needs it)."""
        score = self.out(self.features(x))
        if self.head_kind == "image":
            score = score.mean(dim=(2, 3), keepdim=True)
        return score


class VesselSegmenter(nn.Module):
    """What ships: RGB in [0, 1], shape (N, 3, H, W) of any size -> probabilities (N, 1, H, W).
    Values outside [0, 1] raise a RuntimeError that says so.

    Pads by 1..2**depth rows and columns (never 0) of the training mean colour before the
    generator, so `torch.export` traces a single branch that holds for every input size
    (a padding of 0 vs > 0 would otherwise be baked into the exported graph).
    """

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # An 8-bit image not divided by 255 would give a map of nonsense, silently: refuse it. (An
        # assertion op, so the check survives torch.export.)
        torch._assert_async((x.min() >= 0) & (x.max() <= 1),
                            "VesselSegmenter takes RGB values in [0, 1]: divide 8-bit images by 255")
        h, w = x.shape[-2:]
        m = 2**self.generator.depth
        mean = self.generator.mean
        # m - h % m, written so that torch.export's symbolic sizes stay sums of multiples (8*(s0//8) + 8): with
        # Mod() in them every size below was a nested sympy expression, which export and load work through one by
        # one (DRIVE CPU generator: first export 8.5 s, load_model 6.8 s; now 3.1 s and 3.7 s: benchmarks.model_save)
        x = F.pad(x - mean, (0, (w // m + 1) * m - w, 0, (h // m + 1) * m - h)) + mean  # mean colour = 0 normalised
        return torch.sigmoid(self.generator(x))[..., :h, :w]


class EnsembleSegmenter(nn.Module):
    """Several generators shipped as one: RGB in [0, 1] (N, 3, H, W) -> the mean of their `VesselSegmenter`
    probabilities. Generators trained apart err apart, so the mean map is the better one (`vgan.ensemble`).

    One photograph is resized once for all members (`vgan.scale`), so they must have been trained at one
    FOV scale; a ValueError says which differ."""

    def __init__(self, generators: Sequence[Generator]):
        super().__init__()
        if not generators:
            raise ValueError("an ensemble needs at least one generator")
        scales = [g.trained_fov for g in generators]
        if len(set(scales)) > 1:
            raise ValueError(f"the generators were trained at different FOV scales ({scales} px): an ensemble "
                             "resizes a photograph once for all its members")
        self.members = nn.ModuleList(VesselSegmenter(g) for g in generators)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(m(x) for m in self.members) / len(self.members)
