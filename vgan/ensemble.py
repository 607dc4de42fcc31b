"""Ensembles: each image's map is the mean of several generators' maps.

Generators trained apart (other seeds, a study's best trials) err apart, so the mean of their maps is
a better map than each one's. Each member sees an image at its own scale (`vgan.scale`: resized to the
FOV of its training photographs, or by the factor asked) and its map is resized back, so the maps are
averaged at the image's own size. `vgan.evaluate` and `vgan.predict` take several `--checkpoint`s,
`tuner.predict` several `--model`s; one is the single-model case, computed as before.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from vgan.config import DataConfig
from vgan.data import Split, people, pool_files
from vgan.errors import ConfigError, DataError
from vgan.inputs import Model
from vgan.models import EnsembleSegmenter, Generator, VesselSegmenter
from vgan.scale import AUTO, ScaleSpec, predict_at_scale, scaled_predictions

# What chooses a run's validation images from its training pool (vgan.data.load_train_val)
SPLIT_KEYS = ("dataset", "root", "val_count", "folds", "fold", "split_seed", "person", "synthetic")


@dataclass(frozen=True)
class Member:
    model: Model  # images (N, 3, H, W) in [0, 1] in, probabilities out
    trained_fov: float | None = None  # the FOV diameter of its training photographs; None: not recorded
    scale: ScaleSpec = AUTO  # how it sees an image (auto: at trained_fov)
    min_side: int = 1  # the fewest pixels a side of the image it sees may have (an exported program's: 2**depth)


def segmenter_of(generators: Sequence[Generator]) -> VesselSegmenter | EnsembleSegmenter:
    """What ships for these generators (one: its `VesselSegmenter`; several: their `EnsembleSegmenter`, which refuses
    generators trained at different FOV scales with a ValueError), in inference mode, holding no gradients (so a
    user's `probs.numpy()` works)."""
    module = VesselSegmenter(generators[0]) if len(generators) == 1 else EnsembleSegmenter(generators)
    return module.eval().requires_grad_(False)


def member_factors(members: Sequence[Member], fov: np.ndarray | torch.Tensor, what: str) -> list[float]:
    """The factor each member resizes an image by, from its FOV mask; all are checked before any is run."""
    return [m.scale.factor_of(fov, m.trained_fov, what, smallest=m.min_side) for m in members]


def ensemble_map(members: Sequence[Member], images: torch.Tensor, factors: Sequence[float]) -> torch.Tensor:
    """The mean of the members' probabilities (N, 1, H, W) for images (N, 3, H, W), member i's at factors[i]."""
    return sum(predict_at_scale(m.model, images, f) for m, f in zip(members, factors, strict=True)) / len(members)


def running_means(runs: Iterable[list[np.ndarray]]) -> Iterator[list[np.ndarray]]:
    """After each of `runs` (each a list of maps, one per image), each image's mean map over the runs so far:
    the mean of the first k, for k = 1, 2, ... Summed in order as they come, so only one run beside the sum is
    held. One run's maps come back unchanged (divided by 1)."""
    total, k = None, 0
    for maps in runs:
        total = maps if total is None else [t + p for t, p in zip(total, maps, strict=True)]
        k += 1
        yield [t / k for t in total]


def mean_maps(runs: Iterable[list[np.ndarray]]) -> list[np.ndarray]:
    """Each image's mean map over all `runs` (`running_means`' last; the ones before it are not kept)."""
    return deque(running_means(runs), maxlen=1)[0]


def ensemble_predictions(members: Sequence[Member], split: Split,
                         batch_size: int) -> tuple[list[np.ndarray], list[list[float]]]:
    """Each image's map (H, W) at its own size, the mean over members of `scaled_predictions`, and each
    member's factors."""
    factors: list[list[float]] = []

    def runs():
        for m in members:
            maps, f = scaled_predictions(m.model, m.trained_fov, split, batch_size, m.scale)
            factors.append(f)
            yield maps

    return mean_maps(runs()), factors


def _split_value(data: DataConfig, key: str):
    value = getattr(data, key)
    return str(Path(value).resolve()) if key == "root" and value is not None else value


def same_people(a: DataConfig, b: DataConfig) -> bool:
    """Whether data.person as `a` and as `b` say it tell the same people apart in `a`'s training pool: DRIVE's
    images are each their own person either way (a checkpoint saved before data.person reads `none`)."""
    try:
        ids = [it.id for it in pool_files(a, "training")]
        return people(ids, a.person) == people(ids, b.person)
    except (ConfigError, DataError):  # no files (synthetic), or a pattern that names no one: not shown the same
        return False


def check_one_validation_split(datas: Sequence[DataConfig], sources: Sequence[str]) -> None:
    """Members scored on a validation split must have been validated on the same images: else one's
    validation images are another's training images, and a threshold or score chosen there is biased."""
    for data, source in zip(datas[1:], sources[1:], strict=True):
        for key in SPLIT_KEYS:
            theirs, first = _split_value(data, key), _split_value(datas[0], key)
            if theirs != first and not (key == "person" and same_people(datas[0], data)):
                raise ConfigError(
                    f"{source}: data.{key} is {theirs!r} where {sources[0]} has {first!r}: the members were "
                    "validated on different images (one's validation images may be another's training images); "
                    "a validation split needs members trained on one split")
