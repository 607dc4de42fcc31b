"""The built-in synthetic dataset's pictures: fundus-like photographs drawn from a seed, vessels grown as
branching trees from the optic disc, with their exact labels and FOV masks (no download: the main command runs
on a fresh machine)."""

from __future__ import annotations

import numpy as np


def _draw_segment(label: np.ndarray, p0: np.ndarray, p1: np.ndarray, width: float) -> None:
    h, w = label.shape
    r = width / 2
    y0, y1 = int(max(min(p0[0], p1[0]) - r - 1, 0)), int(min(max(p0[0], p1[0]) + r + 2, h))
    x0, x1 = int(max(min(p0[1], p1[1]) - r - 1, 0)), int(min(max(p0[1], p1[1]) + r + 2, w))
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    d = p1 - p0
    length2 = float(d @ d) or 1e-9
    t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / length2, 0, 1)
    dist2 = (yy - p0[0] - t * d[0]) ** 2 + (xx - p0[1] - t * d[1]) ** 2
    label[y0:y1, x0:x1] |= dist2 <= r * r


def _grow(label, rng, point, angle, width, length, size, fov_r, centre, depth) -> None:
    step = size * 0.015
    while length > 0 and width >= 0.7:
        angle += rng.normal(0, 0.12)
        nxt = point + step * np.array([np.sin(angle), np.cos(angle)])
        if np.hypot(*(nxt - centre)) > fov_r * 1.02:
            return
        _draw_segment(label, point, nxt, width)
        point, length, width = nxt, length - step, width * 0.995
        if depth < 5 and rng.random() < 0.07:
            side = rng.choice([-1.0, 1.0])
            _grow(label, rng, point.copy(), angle + side * rng.uniform(0.4, 1.0), width * rng.uniform(0.55, 0.8),
                  length * rng.uniform(0.4, 0.8), size, fov_r, centre, depth + 1)
            width *= 0.9


def synthetic_fundus(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One fundus-like image (H,W,3 float32 in [0,1]), its exact vessel label and FOV mask."""
    centre = np.array([size / 2, size / 2])
    fov_r = 0.46 * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dist = np.hypot(yy - centre[0], xx - centre[1])
    fov = dist <= fov_r
    side = rng.choice([-1.0, 1.0])
    disc = centre + np.array([rng.normal(0, 0.03), side * rng.uniform(0.22, 0.3)]) * size

    label = np.zeros((size, size), dtype=bool)
    for base_angle in (-0.5 * np.pi, 0.5 * np.pi):  # trunks leave the disc upwards and downwards
        for spread in (-0.35, 0.35):
            angle = base_angle + spread * -side + rng.normal(0, 0.1)
            _grow(label, rng, disc.copy(), angle, size / 40 * rng.uniform(0.8, 1.2), size * rng.uniform(0.8, 1.1),
                  size, fov_r, centre, 0)

    colour = np.array([0.78, 0.38, 0.16]) * rng.uniform(0.85, 1.15, 3)
    shading = 1.0 - 0.45 * (dist / fov_r) ** 2
    blob = np.zeros_like(dist)
    for _ in range(4):  # low-frequency illumination blotches
        c = rng.uniform(0, size, 2)
        blob += rng.normal(0, 0.08) * np.exp(-((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / (2 * (size * 0.2) ** 2))
    disc_glow = 0.5 * np.exp(-((yy - disc[0]) ** 2 + (xx - disc[1]) ** 2) / (2 * (size * 0.045) ** 2))
    img = colour[None, None, :] * (shading + blob)[..., None] + disc_glow[..., None] * np.array([0.3, 0.5, 0.5])
    vessel = label.astype(np.float32)
    # A 3x3 blur gives soft vessel edges in the image; the label stays exact.
    pad = np.pad(vessel, 1)
    soft = sum(pad[i : i + size, j : j + size] for i in range(3) for j in range(3)) / 9
    img = img * (1 - soft[..., None] * np.array([0.35, 0.55, 0.45]) * rng.uniform(0.8, 1.2))
    img = img + rng.normal(0, 0.02, img.shape)
    img = np.clip(img, 0, 1) * fov[..., None]
    return img.astype(np.float32), label & fov, fov
