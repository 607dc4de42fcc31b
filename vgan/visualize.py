"""Pictures for people: validation previews, probability maps and ROC/PR curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vgan.inputs import unit_float
from vgan.metrics import Curves

PLOT_POINTS = 2000  # per ROC / PR curve: more are not visible at 500 px


def to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def error_overlay(prob: np.ndarray, label: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """RGB map of the binarised prediction inside the FOV: white = hit, red = false vessel,
    blue = missed vessel, black = correct background."""
    pred, truth, inside = prob >= threshold, label > 0.5, mask > 0.5
    out = np.zeros(prob.shape + (3,), dtype=np.float32)
    out[pred & truth & inside] = (1, 1, 1)
    out[pred & ~truth & inside] = (1, 0, 0)
    out[~pred & truth & inside] = (0, 0.4, 1)
    return out


PANEL_TITLES = ("image", "vessel probability", "ground truth",
                "errors at {threshold:.3g}: white hit, red false, blue missed")


def preview(image: np.ndarray, prob: np.ndarray, label: np.ndarray, mask: np.ndarray, title: str = "",
            threshold: float = 0.5) -> np.ndarray:
    """image | probability | ground truth | error overlay at `threshold`, side by side under a strip naming
    each panel (and `title`), (h + H, 4W, 3) uint8. `image` is (3,H,W); the maps are (H,W)."""
    from PIL import ImageDraw, ImageFont

    gray = lambda m: np.repeat(m[..., None], 3, axis=2)  # noqa: E731
    panels = [image.transpose(1, 2, 0), gray(prob), gray(label), error_overlay(prob, label, mask, threshold)]
    body = to_uint8(np.concatenate(panels, axis=1))
    w = image.shape[-1]
    size = max(10, w // 28)
    strip = Image.new("RGB", (body.shape[1], 2 * size + 8), (32, 32, 32))
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default(size=size)
    for i, name in enumerate(PANEL_TITLES):
        draw.text((i * w + 6, 3), name.format(threshold=threshold), fill=(235, 235, 235), font=font)
    if title:
        draw.text((6, size + 5), title, fill=(170, 170, 170), font=font)
    return np.concatenate([np.asarray(strip), body], axis=0)


def save_previews(folder: Path, tag: str, split, probs, title: str = "") -> list[Path]:
    """One `preview` per image of a `vgan.data.Split`, cut to the image's own size; `probs` (N, 1, H, W) on the
    host, as the split holds its images."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(split.ids):
        paths.append(folder / f"{tag}_{name}.png")
        save_preview(paths[-1], split, i, np.asarray(split.own(i, probs[i, 0])), f"{name}, {title}" if title else name)
    return paths


def save_preview(path: Path, split, i: int, prob: np.ndarray, caption: str, threshold: float = 0.5) -> None:
    """The `preview` of image i of a `vgan.data.Split` and its map `prob` (H, W, the image's own size)."""
    image = unit_float(split.own(i, split.images[i])).cpu().numpy()
    label, mask = (split.own(i, t[i, 0]).cpu().numpy() for t in (split.labels, split.masks))
    Image.fromarray(preview(image, prob, label, mask, caption, threshold)).save(path)


VESSEL_TINT = np.array((0.1, 1.0, 0.35), np.float32)  # green: the colour fundus photographs hold least of
FOV_RIM = np.array((1.0, 0.85, 0.0), np.float32)


def vessel_overlay(rgb: np.ndarray, prob: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """The photograph (H, W, 3 in [0, 1]) with its vessel map laid on it, each pixel tinted green as strongly as
    its vessel probability, and the rim of the field of view the map was made in drawn yellow: a map to look at
    over the photograph it was made from, (H, W, 3) uint8."""
    from scipy import ndimage

    alpha = 0.85 * np.clip(prob, 0, 1)[..., None]
    out = rgb * (1 - alpha) + VESSEL_TINT * alpha
    width = max(1, round(max(fov.shape) / 400))  # visible in a thumbnail as in the full picture
    rim = fov & ~ndimage.binary_erosion(fov, iterations=width)
    out[rim] = FOV_RIM
    return to_uint8(out)


MAP_LEVELS = 65535  # a saved probability's: 8 bits made every probability under 1/510 a 0, tied with the background,
# where a GAN's map lies over most of the FOV (the CPU recipe's: 75 %); its AUC-ROC fell from 0.9704 to 0.9606


def save_map(path: Path, prob: np.ndarray) -> None:
    """A 16-bit PNG of a probability map (value = round(65535 p)): its pixels ranked as the generator ranked them."""
    path.write_bytes(map_png(prob))


def map_png(prob: np.ndarray) -> bytes:
    """The bytes of `save_map`'s PNG of a probability map (H, W)."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(to_uint16(prob)).save(buffer, format="PNG")
    return buffer.getvalue()


def to_uint16(prob: np.ndarray) -> np.ndarray:
    """A probability map's saved levels (`save_map`)."""
    return (np.clip(prob, 0, 1) * MAP_LEVELS + 0.5).astype(np.uint16)


def save_mask(path: Path, mask: np.ndarray) -> None:
    """An 8-bit PNG of a binary map (H, W): 255 where true."""
    Image.fromarray(np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8)).save(path)


def save_curves(folder: Path, c: Curves, metrics: dict[str, float], title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    thin = lambda a: a[np.unique(np.linspace(0, len(a) - 1, PLOT_POINTS).round().astype(int))]  # noqa: E731
    for name, x, y, xl, yl, label in (
        ("roc", c.fpr, c.tpr, "false positive rate", "true positive rate (sensitivity)",
         f"AUC-ROC = {metrics['auc_roc']:.4f}"),
        ("pr", c.recall, c.precision, "recall (sensitivity)", "precision", f"AUC-PR = {metrics['auc_pr']:.4f}"),
    ):
        fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
        ax.plot(thin(x), thin(y), lw=1.5, label=label)  # drawing every distinct score costs ~0.5 s
        if name == "roc":
            ax.plot([0, 1], [0, 1], ls="--", c="gray", lw=0.8)
        ax.set(xlabel=xl, ylabel=yl, xlim=(0, 1), ylim=(0, 1.01), title=title)
        ax.legend(loc="lower right" if name == "roc" else "lower left")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = folder / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        out.append(path)
    return out
