"""Datasets read once into memory: DRIVE, STARE, a folder of one's own and a procedural synthetic set.

Each dataset has two pools, `training` and `test`. The validation split is carved from the
training pool by a seeded choice (or k-fold); the test pool is only read by evaluation.
Every problem with the files raises `DataError` naming the file. Each file is read as `vgan.images` reads it.
"""

from __future__ import annotations

import glob
import hashlib
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from vgan.config import FOV_MEDIAN, PERSON_EYES, PERSON_NONE, DataConfig, person_pattern
from vgan.errors import ConfigError, DataError
from vgan.images import (
    IMAGE_SUFFIXES,
    UPRIGHT_NOTE,
    estimate_fov,
    find_images,
    image_stem,
    images_under,
    read_fov_mask,
    read_label,
    read_photograph,
    turned_hint,
)
from vgan.inputs import unit_float
from vgan.scale import AUTO, median_fov_diameter, resize, scaled_size
from vgan.synthetic import synthetic_fundus

SPLITS = ("train", "val", "test")
# The names a photograph's FOV mask and vessel label go by, from its stem (the first found is taken):
# the same name, or as the public datasets name theirs (HRF's and DRIVE's `_mask`, STARE's `.ah`, CHASE_DB1's
# first observer `_1stHO`)
MASK_NAMES = ("{}", "{}_mask", "{}.mask", "{}-mask", "{}_fov")
LABEL_NAMES = ("{}", "{}_label", "{}_vessels", "{}_gt", "{}_1stHO", "{}.ah", "{}_manual1")
# A second observer's labels, as the public sets name them (CHASE_DB1's, DRIVE's, STARE's): left out of training,
# scored as the literature's human performance (vgan.evaluate --observer)
OTHER_OBSERVERS = ("{}_2ndHO", "{}_manual2", "{}.vk")
FOLDER_LAYOUT = "{pool}/images, {pool}/labels (named as the images) and, if there are FOV masks, {pool}/masks"
# V-GAN's (and DRIU's) STARE protocol: the first 10 ids (sorted) train, the last 10 test.
STARE_TRAIN_COUNT = 10


@dataclass
class Split:
    """Images (N,3,H,W) as held: uint8 (0..255) read from 8-bit files, else float32 in [0, 1]; vessel labels
    and FOV masks (N,1,H,W) bool. Held compact (5 bytes a pixel for 8-bit photographs, not float32's 20),
    as a trial holds its splits for its whole run: `unit_float` gives the floats where they are used.

    Photographs of different sizes (cameras) are held padded to the largest, at the top left: `sizes` has each
    image's own (h, w), None where every image fills the tensor. The padding is outside every FOV mask, so
    FOV-pooled metrics never see it; crops and predictions are taken within each image's own size.

    `converted`: what reading changed in its photographs, as vgan.predict says it of a batch (a frame made
    black, an orientation tag applied, 16-bit values scaled, ...), each with the ids of the images it was done to."""

    name: str
    ids: list[str]
    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    sizes: list[tuple[int, int]] | None = None
    converted: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype not in (torch.uint8, torch.float32):
            raise TypeError(f"split {self.name!r}: images must be uint8 or float32, got {self.images.dtype}")
        # Labels and masks given as floats (0/1, or a resized map) are read as pixels above one half.
        self.labels = self.labels if self.labels.dtype == torch.bool else self.labels > 0.5
        self.masks = self.masks if self.masks.dtype == torch.bool else self.masks > 0.5
        if self.sizes is not None:
            h, w = self.size
            if len(self.sizes) != len(self.ids) or any(not (0 < a <= h and 0 < b <= w) for a, b in self.sizes):
                raise ValueError(f"split {self.name!r}: sizes must give each of its {len(self.ids)} images an (h, w) "
                                 f"within the held {h}x{w}, got {self.sizes}")
            self.sizes = [(int(a), int(b)) for a, b in self.sizes]
            if all(hw == (h, w) for hw in self.sizes):
                self.sizes = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def size(self) -> tuple[int, int]:
        """The held size: every image's, or the largest height and width of a mixed-size split."""
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    def image_size(self, i: int) -> tuple[int, int]:
        return self.size if self.sizes is None else self.sizes[i]

    def own(self, i: int, t: torch.Tensor) -> torch.Tensor:
        """`t` (..., H, W), something of image i held at the split's size, cut to the image's own size."""
        h, w = self.image_size(i)
        return t[..., :h, :w]

    def size_groups(self) -> list[tuple[tuple[int, int], list[int]]]:
        """The images by their own size: (size, indices) in order of first appearance."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i in range(len(self)):
            groups.setdefault(self.image_size(i), []).append(i)
        return list(groups.items())

    def subset(self, index: list[int] | np.ndarray, name: str) -> Split:
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        ids = [self.ids[i] for i in idx.tolist()]
        chosen = set(ids)
        converted = {note: kept for note, done in self.converted.items() if (kept := [i for i in done if i in chosen])}
        return Split(name, ids, self.images[idx], self.labels[idx], self.masks[idx],
                     None if self.sizes is None else [self.sizes[i] for i in idx.tolist()], converted)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.name, self.ids, self.images.to(device), self.labels.to(device), self.masks.to(device),
                     self.sizes, self.converted)


@dataclass
class Item:
    """The files of one image: photo, vessel label, field-of-view mask."""

    id: str
    image: Path
    label: Path
    mask: Path | None  # None: estimated from the photograph (a folder dataset without masks)


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise DataError(f"{path}: folder missing ({what})")


def _drive_items(root: Path, pool: str) -> list[Item]:
    sub = "training" if pool == "training" else "test"
    folder = root / sub / "images"
    _require_dir(folder, f"DRIVE layout expects {sub}/images, {sub}/1st_manual, {sub}/mask")
    items = []
    for image in sorted(folder.glob(f"*_{sub}.tif")):
        number = image.stem.split("_")[0]
        items.append(
            Item(
                image.stem,
                image,
                root / sub / "1st_manual" / f"{number}_manual1.gif",
                root / sub / "mask" / f"{number}_{sub}_mask.gif",
            )
        )
    if not items:
        raise DataError(f"{folder}: no images named NN_{sub}.tif")
    return items


def _stare_items(root: Path, pool: str) -> list[Item]:
    folder = root / "images"
    _require_dir(folder, "STARE layout expects images/, labels-ah/, mask/")
    ids = sorted(p.stem for p in folder.glob("*.ppm"))
    if len(ids) <= STARE_TRAIN_COUNT:
        raise DataError(
            f"{folder}: {len(ids)} images; V-GAN's STARE split needs more than {STARE_TRAIN_COUNT} "
            f"(the first {STARE_TRAIN_COUNT} train, the rest test)"
        )
    ids = ids[:STARE_TRAIN_COUNT] if pool == "training" else ids[STARE_TRAIN_COUNT:]
    return [
        Item(i, folder / f"{i}.ppm", root / "labels-ah" / f"{i}.ah.ppm", root / "mask" / f"{i}.mask.ppm") for i in ids
    ]


def _folder_items(root: Path, pool: str) -> list[Item]:
    """One's own dataset: photographs and their vessel labels matched by name; FOV masks where given."""
    base, layout = root / pool, FOLDER_LAYOUT.format(pool=pool)
    _require_dir(base / "images", f"a folder dataset expects {layout}{unsplit_hint(root)}")
    _require_dir(base / "labels", f"a folder dataset expects {layout}")
    masks = _masks_folder(root, pool)
    return [Item(s.name, s.path, find_named(base / "labels", s.path, LABEL_NAMES, "vessel label"),
                 find_named(masks, s.path, MASK_NAMES, "FOV mask") if masks else None)
            for s in find_images([str(base / "images")], nested=f"a dataset's photographs are read from {pool}/images "
                                 f"itself, each with its label in {pool}/labels: move them up, out of the subfolders")]


def unsplit_hint(root: Path) -> str:
    """Where a dataset root holds its photographs as published, not split into training/ and test/ (CHASE_DB1's
    in one folder, HRF's in images/): the command that puts them in the folder layout."""
    for folder in (root, root / "images"):
        if folder.is_dir() and images_under(folder, False, None, first=True):
            return (f"; {folder} holds photographs, not split into training/ and test/: python -m vgan.prepare "
                    f"--images {folder} --out NEW_ROOT --test N puts the last N aside to test on and the rest in "
                    "this layout (--labels DIR, --masks DIR where they have folders of their own)")
    return ""


def _masks_folder(root: Path, pool: str) -> Path | None:
    """A folder dataset's FOV masks; None where it has none (they are estimated from the photographs)."""
    return root / pool / "masks" if (root / pool / "masks").is_dir() else None


def find_named(folder: Path, image: Path, names: tuple[str, ...], what: str) -> Path:
    """The image file in `folder` named after `image` by the first of `names` that one is."""
    for pattern in names:
        name = pattern.format(image_stem(image))
        found = [f for f in sorted(folder.glob(glob.escape(name) + ".*"))
                 if f.suffix.lower() in IMAGE_SUFFIXES and f.stem == name]
        if len(found) > 1:
            raise DataError(f"{found[0]} and {found[1]}: two files named '{name}' in one folder")
        if found:
            return found[0]
    raise DataError(f"{folder}: no {what} for {image.name} (expected e.g. {names[0].format(image_stem(image))}.png "
                    f"or {names[1].format(image_stem(image))}.png)")


def read_item(it: Item, converted: dict[str, list[str]] | None = None
              ) -> tuple[torch.Tensor, np.ndarray, np.ndarray | None]:
    """One image's files as training takes them: the photograph (as read_photograph holds it), its vessel label
    and its FOV mask (None: it has no mask file), each checked; a label or mask of another size is a DataError
    naming it. `converted` (`Split.converted`: each conversion with its images' ids) is given the image's id
    under each conversion made in its photograph."""
    notes: list[str] = []
    img, lab = read_photograph(it.image, notes), read_label(it.label)
    size = tuple(img.shape[1:])
    msk = read_fov_mask(it.mask) if it.mask is not None else None
    for path, arr in ((it.label, lab), (it.mask, msk)):
        if arr is not None and arr.shape != size:
            raise DataError(f"{path}: size {arr.shape[0]}x{arr.shape[1]} does not match its image {it.image} "
                            f"({size[0]}x{size[1]}){turned_hint(UPRIGHT_NOTE in notes, arr.shape, size)}")
    for note in notes if converted is not None else ():
        converted.setdefault(note, []).append(it.id)
    return img, lab, msk


def _read_items(items: list[Item], name: str) -> Split:
    images, labels, masks = [], [], []
    converted: dict[str, list[str]] = {}
    for it in items:
        img, lab, msk = read_item(it, converted)
        if msk is None:
            msk = estimate_fov(unit_float(img).permute(1, 2, 0).numpy())
        images.append(img)
        labels.append(torch.from_numpy(lab))
        masks.append(torch.from_numpy(msk))
    if len({t.dtype for t in images}) > 1:  # 8- and 16-bit files in one pool: hold all as floats
        images = [unit_float(t) for t in images]
    return assemble(name, [it.id for it in items], images, labels, masks, converted)


def assemble(name: str, ids: list[str], images: list[torch.Tensor], labels: list[torch.Tensor],
             masks: list[torch.Tensor], converted: dict[str, list[str]] | None = None) -> Split:
    """A split of photographs (3, H, W; one dtype), labels and masks (H, W) each at its own size: stacked,
    or padded to the largest where the sizes differ."""
    sizes = [tuple(t.shape[1:]) for t in images]
    converted = converted or {}
    if len(set(sizes)) == 1:
        return Split(name, ids, torch.stack(images), torch.stack(labels)[:, None], torch.stack(masks)[:, None],
                     converted=converted)
    h, w = max(a for a, _ in sizes), max(b for _, b in sizes)
    padded = torch.zeros((len(ids), 3, h, w), dtype=images[0].dtype)
    held_labels, held_masks = (torch.zeros((len(ids), 1, h, w), dtype=torch.bool) for _ in range(2))
    for i, (a, b) in enumerate(sizes):
        padded[i, :, :a, :b], held_labels[i, 0, :a, :b], held_masks[i, 0, :a, :b] = images[i], labels[i], masks[i]
    return Split(name, ids, padded, held_labels, held_masks, sizes, converted)


def at_fov(pool: Split, diameter: float) -> tuple[Split, list[float]]:
    """The pool with each photograph, its label and its mask resized so that its FOV is `diameter` pixels
    across (`data.fov_diameter`): a generator trained on photographs from several cameras then learns one
    vessel scale, the one `tuner.predict` brings every photograph to. An image within `vgan.scale`'s
    tolerance is kept as it is. Labels are resized as maps and read as pixels above one half, so a vessel
    narrower than a pixel at the new scale is not a vessel there. Returns the factors (1.0: kept).
    A FOV no camera gives (`vgan.scale.ScaleError`) or one to enlarge more than `MAX_FACTOR` is a DataError
    naming the image: a pool is trained on whole or not at all."""
    images, labels, masks, factors = [], [], [], []
    for i, image_id in enumerate(pool.ids):
        img, lab, msk = (pool.own(i, t[i]) for t in (pool.images, pool.labels, pool.masks))
        what = f"{pool.name} image {image_id}"
        factor = AUTO.factor_of(msk, diameter, what, remedy="give it a FOV mask or leave data.fov_diameter unset")
        if factor != 1.0:
            size = scaled_size(tuple(img.shape[-2:]), factor)
            img = resize(img[None], size)[0]
            if pool.images.dtype == torch.uint8:  # held as read: 8-bit stays 8-bit
                img = (img * 255).round_().to(torch.uint8)
            lab, msk = (resize(t[None], size)[0] > 0.5 for t in (lab, msk))
        images.append(img)
        labels.append(lab[0])
        masks.append(msk[0])
        factors.append(factor)
    return assemble(pool.name, list(pool.ids), images, labels, masks, pool.converted), factors


def dataset_root(cfg: DataConfig) -> Path:
    if cfg.root is None:
        raise ConfigError(f"data.root is required for dataset '{cfg.dataset}' (give --data ROOT)")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: dataset root missing")
    return root


def dataset_name(cfg: DataConfig) -> str:
    """The name a dataset goes by in records (registered models, MLflow datasets): drive, stare or synthetic, and
    one's own by its root folder's name, lower-cased, other characters as '-' (chase_db1 for .../CHASE_DB1)."""
    if cfg.dataset != "folder" or not cfg.root:
        return cfg.dataset
    return re.sub(r"[^a-z0-9._-]+", "-", Path(cfg.root).name.lower()).strip("-.") or "folder"


LAYOUTS = {"drive": "DRIVE's layout", "stare": "STARE's layout", "folder": "the folder layout of one's own dataset"}


def held_layout(root: Path) -> tuple[str, str] | None:
    """(the dataset whose layout a root is in, a sentence that says so), or None where it is in none."""
    held = detect_dataset(Path(root).expanduser())
    return (held, f"{root} is in {LAYOUTS[held]}") if held else None


def detect_dataset(root: Path) -> str | None:
    """The layout a dataset root holds ("folder", "drive" or "stare"), or None where it holds none of them."""
    if any((root / pool / "labels").is_dir() for pool in ("training", "test")):
        return "folder"
    if any((root / pool / "1st_manual").is_dir() for pool in ("training", "test")):
        return "drive"
    if (root / "images").is_dir() and (root / "labels-ah").is_dir():
        return "stare"
    return None


def read_pool(cfg: DataConfig, pool: str) -> Split:
    """All images of the `training` or `test` pool of the configured dataset."""
    if pool not in ("training", "test"):
        raise ValueError(f"pool must be 'training' or 'test', got {pool!r}")
    if cfg.dataset == "synthetic":
        return synthetic_pool(cfg, pool)
    items = pool_files(cfg, pool)
    with layout_named(cfg):
        return _read_items(items, pool)


def check_pool(cfg: DataConfig, pool: str) -> tuple[list[str], dict[str, list[str]]]:
    """Every photograph, label and mask of a pool read and checked as read_pool reads them, none of them kept:
    a bad file found before the work that reads the pool at its end (a study reads its test split only to
    register its best model). Returns the images' ids and what reading converted (`Split.converted`)."""
    converted: dict[str, list[str]] = {}
    items = pool_files(cfg, pool)
    with layout_named(cfg):
        for it in items:
            read_item(it, converted)
    return [it.id for it in items], converted


def pool_files(cfg: DataConfig, pool: str) -> list[Item]:
    if cfg.dataset == "synthetic":
        raise ConfigError("the synthetic dataset has no files")
    root = dataset_root(cfg)
    with layout_named(cfg):
        return {"drive": _drive_items, "stare": _stare_items, "folder": _folder_items}[cfg.dataset](root, pool)


@contextmanager
def layout_named(cfg: DataConfig) -> Iterator[None]:
    """A file or folder the configured dataset misses, in a root that holds another layout, says which
    data.dataset reads the root (DRIVE's reader finds a folder dataset's `<name>_training.tif`, then no label)."""
    try:
        yield
    except DataError as e:
        layout = held_layout(cfg.root) if cfg.root else None
        if layout is None or layout[0] == cfg.dataset:
            raise
        held, said = layout
        raise DataError(f"{e}; {said}, which data.dataset: {held} reads (here: {cfg.dataset})") from None


def train_files(cfg: DataConfig) -> list[Item]:
    """The files of the training split (for loaders that read from disk, e.g. the benchmark's baseline)."""
    items = pool_files(cfg, "training")
    return [items[i] for i in split_indices([it.id for it in items], cfg)[0]]


# An eye marker at the end of an id (CHASE_DB1's Image_01L and Image_01R; OD and OS, the right and left eye
# in clinical notes): what is before it names the person where another id names the same with the other eye
EYE_MARKER = re.compile(r"^(.+?)[_\- ]?(L|R|OD|OS|left|right)$", re.IGNORECASE)


def people(ids: Sequence[str], how: str, strict: bool = True) -> list[list[int]]:
    """Each person's images (indices into `ids`), in the order of each one's first image, as `how`
    (data.person) tells them: `eyes`, ids the same but for their last eye marker (only where both are there);
    `none`, each image its own; else a regular expression whose first group is the person (an id it matches
    none of refused, naming it; not `strict`: that image its own person)."""
    keys: list[object]
    if how == PERSON_NONE:
        keys = list(range(len(ids)))
    elif how == PERSON_EYES:
        stems = [m.group(1) if (m := EYE_MARKER.match(i)) else None for i in ids]
        counts = Counter(stems)
        keys = [stem if stem is not None and counts[stem] > 1 else k for k, stem in enumerate(stems)]
    else:
        pattern, keys = person_pattern(how), []
        for image_id in ids:
            found = pattern.search(image_id) if pattern is not None else None
            if (found is None or not found.group(1)) and not strict:
                keys.append(len(keys))  # an index: no person's name, which are strings
                continue
            if found is None or not found.group(1):
                raise DataError(f"data.person {how!r} names no person in image {image_id!r} (its first group must "
                                "match a part of every image's id)")
            keys.append(found.group(1))
    held: dict[object, list[int]] = {}
    for index, key in enumerate(keys):
        held.setdefault(key, []).append(index)
    return list(held.values())


def split_indices(ids: Sequence[str], cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) indices into a training pool of images with these ids, each person's images
    (`people`, by data.person) in one split: validation holds whole people until it holds data.val_count
    images or more; each fold whole people. Where each image is its own person, as for DRIVE and STARE, the
    draw is the one it was before people were told apart."""
    n, groups = len(ids), people(ids, cfg.person)
    whose = "" if len(groups) == n else f" of {len(groups)} people (data.person: {cfg.person})"
    perm = np.random.default_rng(cfg.split_seed).permutation(len(groups))
    if cfg.folds:
        if cfg.folds > len(groups):
            raise DataError(f"data.folds = {cfg.folds} is more than the {n} training images{whose}: a fold would be "
                            "empty")
        folds = [[i for g in fold for i in groups[g]] for fold in np.array_split(perm, cfg.folds)]
        val = np.array(folds[cfg.fold], dtype=np.int64)
        train = np.array([i for k, f in enumerate(folds) if k != cfg.fold for i in f], dtype=np.int64)
    else:
        val_list: list[int] = []
        for g in perm:
            if len(val_list) >= cfg.val_count:
                break
            val_list.extend(groups[g])
        if len(val_list) >= n:
            raise DataError(f"data.val_count = {cfg.val_count} leaves the training split empty ({n} training "
                            f"images{whose})")
        val = np.array(val_list, dtype=np.int64)
        train = np.setdiff1d(np.arange(n), val)
    return np.sort(train), np.sort(val)


def told_apart(how: str, option: str = "data.person") -> str:
    """How people were told apart, for a message: `how` as `option` (data.person, --person) gave it."""
    return "by the eye in their names" if how == PERSON_EYES else f"by {option} {how!r}"


def shown_people(ids: Sequence[str], groups: list[list[int]], shown: int = 2) -> str:
    """The first `shown` people's images, for a message: `Image_01L and Image_01R; ...`."""
    return "; ".join(" and ".join(ids[i] for i in g) for g in groups[:shown]) + ("; ..." if len(groups) > shown else "")


def copies(cfg: DataConfig, pools: Sequence[str] = ("training", "test")) -> list[list[tuple[str, str]]]:
    """Each photograph file found in the dataset's pools under two names or more, as its (id, pool) names, in the
    pools' order (none for a synthetic dataset). Files compared by their bytes (vgan.prepare compares pixels,
    having decoded them)."""
    if cfg.dataset == "synthetic":
        return []
    held: dict[str, list[tuple[str, str]]] = {}
    for pool in pools:
        for it in pool_files(cfg, pool):
            held.setdefault(hashlib.sha256(it.image.read_bytes()).hexdigest(), []).append((it.id, pool))
    return [names for names in held.values() if len(names) > 1]


def shown_copies(found: Sequence[Sequence[tuple[str, str]]], shown: int = 3) -> str:
    """The first `shown` copies, for a message: `eye21_training (training) and eye99_test (test); ...`."""
    return "; ".join(" and ".join(f"{i} ({pool})" for i, pool in names) for names in found[:shown]) + (
        "; ..." if len(found) > shown else "")


def copies_note(cfg: DataConfig, pools: Sequence[str] = ("training", "test")) -> str | None:
    """What is said where one photograph file is in the dataset's pools under two names or more (None: none, or
    a synthetic dataset): a copy in training and test makes test scores of a photograph trained on, one twice in
    training may put a copy of a training photograph in validation."""
    found = copies(cfg, pools)
    if not found:
        return None
    return (f"the same photograph file under two names or more ({len(found)}): {shown_copies(found)}: a copy "
            "in training and test makes test scores of a photograph trained on, one twice in training may put a copy "
            "of a training photograph in validation; leave one copy out")


def shared_people_note(training: Sequence[str], test: Sequence[str], cfg: DataConfig) -> str | None:
    """What is said where people (`people`, by data.person) have images in both the training pool and the test
    split (None: none): the test scores are then of people the model saw, not of new ones."""
    ids = [*training, *test]  # a test image data.person's pattern names no one in is its own person
    both = [g for g in people(ids, cfg.person, strict=False) if min(g) < len(training) <= max(g)]
    if not both:
        return None
    return (f"{len(both)} of the test split's people {'has' if len(both) == 1 else 'have'} images in the training "
            f"pool too ({told_apart(cfg.person)}: {shown_people(ids, both)}): its scores are of people the models "
            "trained on, not of new ones; put each person's images on one side")


def people_note(cfg: DataConfig, train: Split, val: Split) -> str | None:
    """What is said before training where images of one person were found in the training pool (None: each
    image its own): how many people hold several, the first of them, and what the validation split holds."""
    ids = sorted(train.ids + val.ids)
    groups = people(ids, cfg.person)
    several = [g for g in groups if len(g) > 1]
    if not several:
        return None
    in_val = set(val.ids)
    held = sum(ids[g[0]] in in_val for g in groups)
    return (f"{len(several)} people with several images in the training pool ({told_apart(cfg.person)}: "
            f"{shown_people(ids, several)}) each kept in one split: the validation split holds {len(val)} images of "
            f"{held} {'person' if held == 1 else 'people'} (data.person: {PERSON_NONE} splits image by image)")


def load_train_val(cfg: DataConfig) -> tuple[Split, Split]:
    """Read the training pool once and carve the validation split from it."""
    pool = read_pool(cfg, "training")
    train_idx, val_idx = split_indices(pool.ids, cfg)
    if cfg.fov_diameter is not None:
        pool, _ = at_fov(pool, pool_diameter(cfg, pool, train_idx))
    train, val = pool.subset(train_idx, "train"), pool.subset(val_idx, "val")
    check_crop(cfg, train)
    return train, val


def pool_diameter(cfg: DataConfig, pool: Split, train_idx: np.ndarray) -> float:
    """The FOV diameter `data.fov_diameter` brings the training pool to: its number, or for `median` the median
    of the training split's photographs as they are (the validation split's are not looked at)."""
    if cfg.fov_diameter == FOV_MEDIAN:
        return median_fov_diameter(pool.masks[torch.as_tensor(train_idx)])
    return float(cfg.fov_diameter)


def fov_source(cfg: DataConfig, split: str) -> str:
    """Where a split's FOV masks come from: "masks" (files), "estimated" (from the photographs: a folder
    dataset without masks/; its scores are not the literature's protocol) or "generated" (synthetic)."""
    if cfg.dataset == "synthetic":
        return "generated"
    pool = "test" if split == "test" else "training"
    return "estimated" if cfg.dataset == "folder" and _masks_folder(dataset_root(cfg), pool) is None else "masks"


FOV_ESTIMATED = "FOV estimated from the photographs"  # what is said of scores on a split without FOV masks


def fov_note(source: str) -> str:
    """What the console adds to a split's description for a `fov_source`: only an estimated FOV is said."""
    return f", {FOV_ESTIMATED}" if source == "estimated" else ""


def converted_note(*splits: Split) -> str | None:
    """What reading changed in the splits' photographs, said once before they are trained on or scored (None:
    nothing): the generator meets them as converted, and a frame or an orientation tag no one knew of is a fact
    about the data to know."""
    done: dict[str, list[str]] = {}
    for s in splits:
        for note, ids in s.converted.items():
            done.setdefault(note, []).extend(ids)
    return converted_text(done, sum(len(s) for s in splits))


def converted_text(converted: dict[str, list[str]], total: int, shown: int = 3,
                   what: str = "photographs") -> str | None:
    """`converted_note` of a record's conversions (a metrics.json's), with the first `shown` ids of each."""
    if not converted:
        return None
    said = [f"{note} ({len(ids)} of {total}: {', '.join(ids[:shown])}{', ...' if len(ids) > shown else ''})"
            for note, ids in converted.items()]
    return f"{what} converted as read, as vgan.predict converts them: " + "; ".join(said)


def load_split(cfg: DataConfig, split: str) -> Split:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    if split == "test":
        return read_pool(cfg, "test")
    train, val = load_train_val(cfg)
    return train if split == "train" else val


def split_fingerprint(*splits: Split) -> str:
    """Short hash of the ids and pixels of splits, to tell which images a model saw or was scored on."""
    h = hashlib.sha256()
    for s in splits:
        h.update(f"{s.name}:{','.join(s.ids)};".encode())
        for t in (s.images, s.labels, s.masks):
            for i, x in enumerate(t):  # each image's float32 bytes at its own size: not how the split holds it
                h.update(unit_float(s.own(i, x)).detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def check_crop(cfg: DataConfig, train: Split) -> None:
    h, w = min((train.image_size(i) for i in range(len(train))), key=min)
    if cfg.crop_size is not None and cfg.crop_size > min(h, w):
        smallest = "" if train.sizes is None else "the smallest of "
        raise DataError(
            f"data.crop_size = {cfg.crop_size} is larger than {smallest}the training images "
            f"({h}x{w}) of {cfg.root or cfg.dataset}"
        )


def normalization_stats(train: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over the FOV pixels of the training split only."""
    # One image at a time, summed in float64: the whole split's FOV pixels as floats at once would be
    # gigabytes for HRF-size photographs, and their selection's index more.
    def fov_pixels(i: int) -> torch.Tensor:
        return unit_float(train.images[i])[:, train.masks[i, 0]].double()

    n = sum(int(m.sum()) for m in train.masks)
    mean = sum(fov_pixels(i).sum(dim=1) for i in range(len(train))) / n
    var = sum(((fov_pixels(i) - mean[:, None]) ** 2).sum(dim=1) for i in range(len(train))) / (n - 1)
    return mean.float(), var.sqrt().float().clamp_min(1e-3)


def synthetic_pool(cfg: DataConfig, pool: str) -> Split:
    s = cfg.synthetic
    n = s.num_train if pool == "training" else s.num_test
    stream = 0 if pool == "training" else 1
    images, labels, masks = [], [], []
    for i in range(n):
        img, lab, fov = synthetic_fundus(s.size, np.random.default_rng([s.seed, stream, i]))
        images.append(img)
        labels.append(lab)
        masks.append(fov)
    return Split(
        pool,
        [f"{'train' if stream == 0 else 'test'}{i:03d}" for i in range(n)],
        torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(np.stack(labels)).unsqueeze(1),
        torch.from_numpy(np.stack(masks)).unsqueeze(1),
    )
