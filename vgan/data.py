"""Datasets read once into memory: DRIVE, STARE, a folder of one's own and a procedural synthetic set.

Each dataset has two pools, `training` and `test`. The validation split is carved from the
training pool by a seeded choice (or k-fold); the test pool is only read by evaluation.
Every problem with the files raises `DataError` naming the file.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from vgan.config import FOV_MEDIAN, DataConfig
from vgan.dicom import decode_dicom, is_dicom, is_dicom_file
from vgan.errors import ConfigError, DataError
from vgan.inputs import ALPHA_DROPPED, LAYOUT_NOTES, InputError, as_batch, unit_float
from vgan.scale import AUTO, median_fov_diameter, resize, scaled_size

SPLITS = ("train", "val", "test")
# What decode_image reads, and the file suffixes a folder's images are found by (DICOM also by its first bytes)
FORMATS = {"PNG": (".png",), "JPEG": (".jpg", ".jpeg"), "TIFF": (".tif", ".tiff"), "PPM/PGM": (".ppm", ".pgm", ".pnm"),
           "GIF": (".gif",), "BMP": (".bmp",), "WebP": (".webp",), "JPEG 2000": (".jp2", ".j2k"),
           "DICOM": (".dcm", ".dicom")}
IMAGE_SUFFIXES = tuple(suffix for suffixes in FORMATS.values() for suffix in suffixes)
IMAGE_FORMATS = ", ".join(FORMATS)
# The names a photograph's FOV mask and vessel label go by, from its stem (the first found is taken):
# the same name, or as the public datasets name theirs (HRF's and DRIVE's `_mask`, STARE's `.ah`, CHASE_DB1's
# first observer `_1stHO`)
MASK_NAMES = ("{}", "{}_mask", "{}.mask", "{}-mask", "{}_fov")
LABEL_NAMES = ("{}", "{}_label", "{}_vessels", "{}_gt", "{}_1stHO", "{}.ah", "{}_manual1")
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


# ---------------------------------------------------------------------------- file reading


def _unit_scale(arr: np.ndarray) -> np.ndarray | None:
    """8- and 16-bit integer pixels to float32 in [0, 1]; None for other types."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    return None


def _read_single_channel(path: Path, what: str, colour: bool = True) -> np.ndarray:
    """One channel of a grey image; `colour`: of one drawn in colour too (its brightest channel), else a colour
    image is a DataError naming it."""
    if not path.is_file():
        raise DataError(f"{path}: file missing")
    if path.suffix.lower() != ".npy":
        arr = read_image(path)
    else:
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - numpy raises several types for damaged files
            raise DataError(f"{path}: unreadable or truncated array ({type(e).__name__}: {e})") from None
    if arr.ndim == 3:
        if arr.shape[0] <= 4 < arr.shape[-1]:  # channels first: (1, H, W) as a map of torch's (N, 1, H, W) is saved
            arr = np.moveaxis(arr, 0, -1)
        rgb = arr[..., : 1 if arr.shape[-1] <= 2 else 3]  # alpha left out
        if not colour and not (rgb == rgb[..., :1]).all():
            raise DataError(f"{path}: a {what} in colour (a colour map of it?): save the values as a grey image or "
                            "an array")
        arr = rgb.max(axis=-1)  # drawn in any colour on black: the brightest channel (grey repeated: its grey)
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a single-channel {what}, got an array of shape {arr.shape}")
    return arr


# EXIF/TIFF Orientation (tag 274): how the stored pixels are turned for display. Phone cameras (and fundus
# adapters on phones) store photographs sideways with this tag; viewers and annotation tools show them turned,
# so labels are drawn on, and maps must line up with, the picture as shown.
ORIENTATION_TAG = 0x0112
UPRIGHT_NOTE = "turned upright as its orientation tag says"


def upright(arr: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels (H, W[, C]) as a viewer shows them under `orientation` (1-8; any other: as stored)."""
    turned = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }.get(orientation)
    return arr if turned is None else np.ascontiguousarray(turned(arr))


TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # little- and big-endian TIFF and BigTIFF
ANIMATED_FORMATS = ("GIF", "PNG", "WEBP")  # PIL's formats whose frames are pictures of their own (APNG's in PNG)


def read_image(path: Path, notes: list[str] | None = None) -> np.ndarray:
    """The pixels (H, W) or (H, W, C), 8- or 16-bit or float, as viewers show them (an EXIF/TIFF orientation
    applied; `notes` is told so). A file of several pictures (an animated GIF, PNG or WebP; TIFF pages of one
    size) is a DataError naming it."""
    return decode_image(read_file(path), str(path), notes)


def read_file(path: Path) -> bytes:
    """An image file's bytes; one that cannot be read is a DataError naming it."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None


def decode_image(data: bytes, what: str, notes: list[str] | None = None) -> np.ndarray:
    """`read_image` of an image file's bytes (a served request's); `what` names it in an error."""
    import io

    from PIL import Image

    if is_dicom(data):
        return decode_dicom(data, what, notes)
    source = io.BytesIO(data)
    arr, orientation, stacked = None, 1, 1
    if data[:4] in TIFF_MAGIC:
        try:  # tifffile keeps 16-bit and float samples (PIL reduces 16-bit RGB to 8 bits)
            import tifffile

            with tifffile.TiffFile(source) as tif:
                page, series = tif.pages[0], tif.series[0]
                if len(series.shape) > len(page.shape):  # pages of one size, one series: several pictures
                    stacked = series.shape[0]
                # tifffile gives the samples as stored: a palette's indices, CMYK's inks, MINISWHITE's inverted
                # grey. PIL turns those into the picture; tifffile's array is taken where it is the picture.
                elif page.photometric in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB):
                    arr = tif.asarray()
                    orientation = int(page.tags.valueof(ORIENTATION_TAG, 1))
            if arr is not None and not arr.size:
                arr = None
        except Exception:  # noqa: BLE001 - e.g. LZW without imagecodecs (DRIVE): PIL reads those
            arr = None
        if stacked > 1:  # as a DICOM of several frames: which one is the photograph is no guess to make
            raise DataError(f"{what}: a TIFF of {stacked} pictures (a stereo pair or a series): save one photograph "
                            "per file")
    if arr is None:
        try:
            source.seek(0)
            with Image.open(source) as im:
                frames = getattr(im, "n_frames", 1)
                # an MPO (a camera's JPEG with its preview after it) holds one photograph: the first frame
                if frames > 1 and im.format in ANIMATED_FORMATS:
                    raise DataError(f"{what}: an animated {im.format} of {frames} frames (a stereo pair or a "
                                    "series): save one photograph per file")
                im.seek(0)
                im.load()
                orientation = im.getexif().get(ORIENTATION_TAG, 1)
                # 16-bit grey: PIL's I;16, and the 32-bit I it holds a 16-bit PGM in (scaled to 16 bits) and PNG in
                sixteen = im.mode.startswith("I;16") or (im.mode == "I" and im.format in ("PPM", "PNG"))
                if im.mode in ("P", "PA"):  # a palette's indices are no picture
                    im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
                elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                    im = im.convert("RGB")
                elif im.mode == "1":
                    im = im.convert("L")
                arr = np.asarray(im).astype(np.uint16) if sixteen else np.asarray(im)
        except DataError:
            raise
        except Image.UnidentifiedImageError:  # its text names an io.BytesIO object, not the file
            raise DataError(f"{what}: " + ("an empty file" if not data else "unreadable or truncated image, or in "
                                           f"none of the formats read ({IMAGE_FORMATS})")) from None
        except Exception as e:  # noqa: BLE001 - PIL raises many types for damaged files
            raise DataError(f"{what}: unreadable or truncated image ({type(e).__name__}: {e})") from None
    if arr.ndim == 3 and arr.shape[-1] == 2:  # grey and alpha (PNG's LA, a TIFF's extra sample): the grey
        arr = arr[..., 0]
        if notes is not None:
            notes.append(ALPHA_DROPPED)
    if orientation in range(2, 9) and notes is not None:
        notes.append(UPRIGHT_NOTE)
    return upright(arr, orientation)


def turned_hint(turned: bool, got: tuple[int, ...], size: tuple[int, ...]) -> str:
    """What to say of a label or mask the size of its image before the image was turned upright."""
    if not turned or tuple(got) != tuple(size)[::-1]:
        return ""
    return (f"; the image is stored {size[1]}x{size[0]} with an orientation tag and is read as viewers show it: "
            "save the label or mask as the image is shown")


def read_photograph(path: Path, notes: list[str] | None = None) -> torch.Tensor:
    """A photograph as (3, H, W), converted as vgan.predict converts one (turned upright, grey repeated,
    alpha dropped, 16-bit scaled: a model is given its photographs later as it was trained on them), but 8-bit
    pixels kept as uint8 (`unit_float` makes them the floats vgan.predict gives the model); float32 in [0, 1]
    else; a white or grey frame made black (`without_frames`). `notes` is told what was converted, as vgan.predict
    says it (8-bit pixels, kept as they are, are not)."""
    if not path.is_file():
        raise DataError(f"{path}: file missing")
    try:
        batch, converted = as_batch(read_image(path, notes), str(path), keep_8bit=True)
    except InputError as e:
        raise DataError(str(e)) from None
    if notes is not None:  # every image file is one (H, W, C) picture: its layout is no conversion
        notes += [note for note in converted if note not in LAYOUT_NOTES and note not in notes]
    batch, framed = without_frames(batch)
    if framed and notes is not None:
        notes.append(FRAME_NOTE)
    return batch[0]


def read_binary(path: Path) -> np.ndarray:
    """A label or FOV mask: 0/255 (or 0/1) single-channel image -> bool array."""
    arr = _read_single_channel(path, "label or mask")
    return arr > (arr.max() / 2 if arr.max() > 1 else 0.5)


# DRIVE's labels are 6-12 % vessel, STARE's 4-10 %: inverted, 88 % or more; the margin is for crops around the disc
MAX_VESSEL_SHARE = 0.75


def read_label(path: Path) -> np.ndarray:
    """A vessel label (`read_binary`): vessels white, or any colour, on black. One with no vessel, or more than
    three quarters vessel (drawn black on white: a fundus label is a tenth vessel or so, inverted nine tenths),
    is a DataError naming it, not a pool that teaches the generator nonsense."""
    label = read_binary(path)
    share = float(label.mean())
    if share == 0:
        raise DataError(f"{path}: a vessel label with no vessel drawn in it (all black)")
    if share > MAX_VESSEL_SHARE:
        raise DataError(f"{path}: a vessel label that is {share:.0%} vessel: drawn black on white? Vessels are white "
                        "(or any colour) on black")
    return label


def read_fov_mask(path: Path) -> np.ndarray:
    """A FOV mask (`read_binary`): the field of view white on black. One with no FOV in it is a DataError."""
    mask = read_binary(path)
    if not mask.any():
        raise DataError(f"{path}: a FOV mask with no field of view in it (all black)")
    return mask


def read_probability(path: Path) -> np.ndarray:
    """A probability map: 8-bit maps are value/255, 16-bit value/65535, float maps as they are."""
    arr = _read_single_channel(path, "probability map", colour=False)
    scaled = _unit_scale(arr)
    return arr.astype(np.float32) if scaled is None else scaled


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


@dataclass(frozen=True)
class Source:
    """An image file found, and the name its outputs take: its path under the folder given, without its suffix
    (`patient07/OD` for photos/patient07/OD.jpg of `photos/`), or its stem for a file given itself."""

    path: Path
    name: str


def image_stem(path: Path) -> str:
    """A file's name without its image suffix (`OD.jpg`: `OD`). A name whose last dot begins no image suffix is kept
    whole: archives name DICOM files by their instance UID (`1.2.840.113619.2.55.3.7`), and the UID's last number
    tells two photographs apart."""
    return path.stem if path.suffix.lower() in IMAGE_SUFFIXES else path.name


RECURSIVE_HINT = "--recursive takes them, their maps in the same subfolders"


def find_images(inputs: Sequence[str], recursive: bool = False, skip: Callable[[Path], bool] | None = None,
                nested: str = RECURSIVE_HINT) -> list[Source]:
    """The images named and those in the folders named (with `recursive`, in their subfolders too, at any depth),
    each with the name its outputs take (`Source`). Hidden files and folders (a dot first: macOS's `._*` copies,
    thumbnail caches) are left out, and no folder `skip` is true of (where maps are written) is entered. Two images
    whose outputs would take one name (`a.png` and `a.jpg`, or `x/a` in two folders given) are refused, as are
    a missing path and a folder with no images (`nested`: what to do where its subfolders hold some)."""
    sources: list[Source] = []
    for text in inputs:
        p = Path(text).expanduser()
        if p.is_dir():
            found = _images_under(p, recursive, skip)
            if not found:
                # a look below, not a walk of the whole tree under a folder given by mistake (a home, a disk)
                deeper = [] if recursive else _images_under(p, True, skip, first=True, max_folders=HINT_FOLDERS)
                hint = f"; its subfolders hold images ({deeper[0].name} first): {nested}" if deeper else ""
                raise DataError(f"{p}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)}){hint}")
            sources += found
        elif p.is_file():
            sources.append(Source(p, image_stem(p)))
        else:
            raise DataError(f"{p}: no such file or folder")
    seen: dict[str, Path] = {}
    for s in sources:
        key = s.name.casefold()  # one file on the case-blind disks of macOS and Windows
        if key in seen:
            raise DataError(f"{seen[key]} and {s.path}: two images named '{s.name}' (one name for their maps, one id)")
        seen[key] = s.path
    return sources


HINT_FOLDERS = 1000  # folders looked into for images below a folder given without --recursive


def _images_under(root: Path, recursive: bool, skip: Callable[[Path], bool] | None, first: bool = False,
                  max_folders: int | None = None) -> list[Source]:
    """The images in `root` (`recursive`: below it too), sorted by folder then name; `first`: the first found
    only; `max_folders`: the most folders looked into."""
    found: list[Source] = []
    entered: set[Path] = set()
    # Linked folders are followed (clinics link their exports), each real folder entered once (a link loop ends)
    for folder, dirs, files in os.walk(root, followlinks=True):
        if (first and found) or (max_folders is not None and len(entered) >= max_folders):
            break
        here = Path(folder)
        real = here.resolve()
        if real in entered:
            dirs[:] = []
            continue
        entered.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (skip and skip(here / d))) \
            if recursive else []
        for name in sorted(files):
            path = here / name
            # any other file is taken if it is DICOM by its first bytes (archives give no suffix, or a UID's)
            if not name.startswith(".") and path.is_file() and (
                    path.suffix.lower() in IMAGE_SUFFIXES or is_dicom_file(path)):
                found.append(Source(path, (path.parent.relative_to(root) / image_stem(path)).as_posix()))
    return found


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
        if folder.is_dir() and _images_under(folder, False, None, first=True):
            return (f"; {folder} holds photographs, not split into training/ and test/: python -m vgan.prepare "
                    f"--images {folder} --out NEW_ROOT --test N puts the last N aside to test on and the rest in "
                    "this layout (--labels DIR, --masks DIR where they have folders of their own)")
    return ""


def _masks_folder(root: Path, pool: str) -> Path | None:
    """A folder dataset's FOV masks; None where it has none (they are estimated from the photographs)."""
    return root / pool / "masks" if (root / pool / "masks").is_dir() else None


def estimate_fov(rgb: np.ndarray) -> np.ndarray:
    """The field of view of a fundus photograph (H, W, 3 in [0, 1]) as a bool mask: the red channel above a
    fraction of its bright level (the camera's black surround is dark in every channel; a white or grey frame an
    export or a scan padded the picture with, `frame_pixels`, is taken as black), opened to drop noise, the largest
    component kept, holes filled, one pixel eroded off the rim."""
    from scipy import ndimage

    red = rgb[..., 0]
    frame = frame_pixels(rgb)
    if frame is not None:
        red = np.where(frame, 0.0, red)
    inside = red > 0.15 * np.percentile(red, 99)
    inside = ndimage.binary_opening(inside, structure=np.ones((5, 5)))
    labels, n = ndimage.label(inside)
    if n == 0:
        return np.ones(red.shape, dtype=bool)  # no dark surround: the whole picture is the FOV
    sizes = ndimage.sum(inside, labels, index=range(1, n + 1))
    inside = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    return ndimage.binary_erosion(inside, iterations=1)


SURROUND_TOLERANCE = 0.1  # of any channel in [0, 1]: a frame's JPEG noise stays within it, a retina's hues do not
FRAME_NOTE = "white or grey frame made black"


def ring_colour(ring: np.ndarray) -> np.ndarray | None:
    """The median colour of a picture's outermost pixels (K, 3 in [0, 1]) where it may be a frame's: grey (its
    channels within SURROUND_TOLERANCE of each other), brighter than a camera's surround, and shared by at least
    half those pixels. None otherwise: the check every photograph read passes through, on its rim alone."""
    colour = np.median(ring, axis=0)
    if colour.max() - colour.min() > SURROUND_TOLERANCE or colour.mean() < 0.25:
        return None
    return colour if (np.abs(ring - colour).max(axis=-1) <= SURROUND_TOLERANCE).mean() >= 0.5 else None


def frame_pixels(rgb: np.ndarray) -> np.ndarray | None:
    """The pixels (H, W) of the bright neutral frame an export or a scan padded a photograph (H, W, 3 in [0, 1])
    with: those of the rim's colour (`ring_colour`), joined to the picture's edge, where the picture inside them is
    in colour (a retina is red: a grey picture's own smooth rim would pass for a frame). None where it has none."""
    from scipy import ndimage

    colour = ring_colour(np.concatenate([rgb[0], rgb[-1], rgb[1:-1, 0], rgb[1:-1, -1]]).reshape(-1, rgb.shape[-1]))
    if colour is None:
        return None
    alike = np.abs(rgb - colour).max(axis=-1) <= SURROUND_TOLERANCE
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    if alike.all() or np.median(chroma[~alike]) <= SURROUND_TOLERANCE:
        return None
    labels, _ = ndimage.label(alike)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.isin(labels, edge[edge > 0])


def outer_pixels(image: torch.Tensor) -> np.ndarray:
    """A photograph's (3, H, W) outermost pixels as (K, 3) floats in [0, 1], without converting the rest."""
    ring = torch.cat([image[:, 0], image[:, -1], image[:, 1:-1, 0], image[:, 1:-1, -1]], dim=1)
    return unit_float(ring).T.cpu().numpy()


def without_frames(batch: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Photographs (N, 3, H, W; uint8 or in [0, 1]) with their white or grey frames (`frame_pixels`) made black,
    as a camera's surround is and as generators learn it; a copy where one had a frame (the caller's tensor is
    left as it is), and how many had one. Seen as it is, the frame's bright rim cost the CPU recipe 0.005 of its
    AUC-ROC on DRIVE's test photographs framed white (0.9650 against 0.9704 unframed, on DRIVE's masks); made
    black, 0.0002 (0.9702). Readers paint before they estimate a FOV, which then meets a black surround."""
    frames = [frame_pixels(unit_float(image).permute(1, 2, 0).cpu().numpy())
              if ring_colour(outer_pixels(image)) is not None else None for image in batch]
    if all(frame is None for frame in frames):
        return batch, 0
    batch = batch.clone()
    for image, frame in zip(batch, frames, strict=True):
        if frame is not None:
            image[:, torch.from_numpy(frame).to(image.device)] = 0
    return batch, sum(frame is not None for frame in frames)


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


def read_item(it: Item, notes: list[str] | None = None) -> tuple[torch.Tensor, np.ndarray, np.ndarray | None]:
    """One image's files as training takes them: the photograph (as read_photograph holds it), its vessel label
    and its FOV mask (None: it has no mask file), each checked; a label or mask of another size is a DataError
    naming it. `notes` is told what was converted in the photograph."""
    turned: list[str] = [] if notes is None else notes
    img, lab = read_photograph(it.image, turned), read_label(it.label)
    size = tuple(img.shape[1:])
    msk = read_fov_mask(it.mask) if it.mask is not None else None
    for path, arr in ((it.label, lab), (it.mask, msk)):
        if arr is not None and arr.shape != size:
            raise DataError(f"{path}: size {arr.shape[0]}x{arr.shape[1]} does not match its image {it.image} "
                            f"({size[0]}x{size[1]}){turned_hint(UPRIGHT_NOTE in turned, arr.shape, size)}")
    return img, lab, msk


def _read_items(items: list[Item], name: str) -> Split:
    images, labels, masks = [], [], []
    converted: dict[str, list[str]] = {}
    for it in items:
        notes: list[str] = []
        img, lab, msk = read_item(it, notes)
        if msk is None:
            msk = estimate_fov(unit_float(img).permute(1, 2, 0).numpy())
        images.append(img)
        labels.append(torch.from_numpy(lab))
        masks.append(torch.from_numpy(msk))
        for note in notes:
            converted.setdefault(note, []).append(it.id)
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
    return [items[i] for i in split_indices(len(items), cfg)[0]]


def split_indices(n: int, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) indices into a training pool of n images."""
    perm = np.random.default_rng(cfg.split_seed).permutation(n)
    if cfg.folds:
        if cfg.folds > n:
            raise DataError(f"data.folds = {cfg.folds} is more than the {n} training images: a fold would be empty")
        folds = np.array_split(perm, cfg.folds)
        val = folds[cfg.fold]
        train = np.concatenate([f for i, f in enumerate(folds) if i != cfg.fold])
    else:
        if cfg.val_count >= n:
            raise DataError(f"data.val_count = {cfg.val_count} leaves the training split empty ({n} training images)")
        val, train = perm[: cfg.val_count], perm[cfg.val_count :]
    return np.sort(train), np.sort(val)


def load_train_val(cfg: DataConfig) -> tuple[Split, Split]:
    """Read the training pool once and carve the validation split from it."""
    pool = read_pool(cfg, "training")
    train_idx, val_idx = split_indices(len(pool), cfg)
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


def converted_text(converted: dict[str, list[str]], total: int, shown: int = 3) -> str | None:
    """`converted_note` of a record's conversions (a metrics.json's), with the first `shown` ids of each."""
    if not converted:
        return None
    said = [f"{note} ({len(ids)} of {total}: {', '.join(ids[:shown])}{', ...' if len(ids) > shown else ''})"
            for note, ids in converted.items()]
    return "photographs converted as read, as vgan.predict converts them: " + "; ".join(said)


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


# ---------------------------------------------------------------------------- synthetic


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
