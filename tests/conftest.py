"""Shared fixtures. Real data comes from ../shared/data (or $VGAN_SHARED_DATA); tests that
need it fail loudly when it is missing rather than skip, so CI cannot pass without it."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VGAN_SHARED_DATA", REPO.parent / "shared" / "data"))

# A model and dataset small enough that a whole training run takes about a second.
TINY = {
    "data": {"dataset": "synthetic", "val_count": 2, "crop_size": 32,
             "synthetic": {"num_train": 6, "num_test": 3, "size": 48, "seed": 7}},
    "model": {"base_width": 4, "depth": 2, "disc_width": 4, "disc_depth": 2},
    "loss": {"adversarial": "wgan-gp", "n_critic": 2},
    "train": {"epochs": 2, "batch_size": 2, "steps_per_epoch": 2, "preview_every": 1},
}


def pytest_configure(config):
    """Under `pytest -n`, each worker's torch (and the processes it starts) takes its share of the cores: with
    torch's default, every worker's intra-op pool takes them all, and pools spinning on the same cores slow
    each other far more than their count (a study beside a 2-thread training run on 2 cores took 146 s, beside
    a 1-thread one 117 s, alone 80 s). A study's trials take the threads of their `resources.cpu` from Ray."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)


# Under `pytest -n`, xdist's workers mark a test of an xdist_group by suffixing its id with "@group", and the
# tests of a group then share a worker. With pytest 9.2 the suffix no longer takes (pytest-xdist issue 1386) and
# groups are ignored without a word: two studies would run at once. Such a test fails instead, saying why.
_GROUP_LOST = pytest.StashKey[str]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    if not getattr(config.option, "loadgroup", False):  # set on xdist's workers under --dist loadgroup
        return
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        name = (mark.args[0] if mark.args else mark.kwargs.get("name", "default")) if mark else None
        if name is not None and not item.nodeid.endswith(f"@{name}"):
            item.stash[_GROUP_LOST] = name


def pytest_runtest_setup(item):
    if _GROUP_LOST in item.stash:
        pytest.fail(f"xdist_group {item.stash[_GROUP_LOST]!r} is ignored by this pytest and pytest-xdist (pytest 9.2 "
                    "drops the group from test ids, pytest-xdist issue 1386): install the test extra's pytest "
                    "(pip install -e '.[test]'), or run without -n", pytrace=False)


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: the tests need the shared datasets (set VGAN_SHARED_DATA)")
    return path


@pytest.fixture(scope="module")
def ray_tmpdir():
    """Where a module's studies start Ray (RAY_TMPDIR): short, as Ray's socket paths must be, and removed after
    the module with what Ray left there (a study that fails keeps its Ray session's logs, and names them)."""
    folder = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def drive_root() -> Path:
    return _need(SHARED_DATA / "DRIVE")


@pytest.fixture(scope="session")
def drive_few(drive_root, tmp_path_factory) -> Path:
    """DRIVE's test split of its first 4 photographs (`drive_links`): for tests that score a split by two routes and
    compare the scores, which hold on any images, where 20 at full size took minutes on 2 cores."""
    return drive_links(drive_root, tmp_path_factory.mktemp("drive4"), ("test",), {"01", "02", "03", "04"})


@pytest.fixture(scope="session")
def stare_root() -> Path:
    return _need(SHARED_DATA / "STARE")


@pytest.fixture(scope="session")
def reference_root() -> Path:
    return _need(SHARED_DATA / "reference" / "vgan")


@pytest.fixture
def tiny_values():
    import copy

    return copy.deepcopy(TINY)


@pytest.fixture
def tiny_config_file(tmp_path, tiny_values) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_values))
    return path


def write_yaml(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))  # order matters in search spaces
    return path


def folder_dataset(drive_root: Path, root: Path, counts: dict[str, int], masks: bool = True) -> Path:
    """DRIVE's first images as one's own dataset would hold them (the "folder" layout): photographs
    under names of their own (linked), labels as PNG, FOV masks named `<name>_mask.gif` (linked)."""
    from PIL import Image

    for pool, n in counts.items():
        for sub in ("images", "labels") + (("masks",) if masks else ()):
            (root / pool / sub).mkdir(parents=True)
        for image in sorted((drive_root / pool / "images").glob("*.tif"))[:n]:
            number, name = image.stem.split("_")[0], f"eye{image.stem}"
            (root / pool / "images" / f"{name}.tif").symlink_to(image)
            with Image.open(drive_root / pool / "1st_manual" / f"{number}_manual1.gif") as label:
                label.convert("L").save(root / pool / "labels" / f"{name}.png")
            if masks:
                (root / pool / "masks" / f"{name}_mask.gif").symlink_to(drive_root / pool / "mask" /
                                                                         f"{image.stem}_mask.gif")
    return root


def frame_white(drive_root: Path, photo: Path) -> Path:
    """A folder dataset's photograph (`folder_dataset`'s link to a DRIVE one) replaced by a PNG of it with the
    pixels outside DRIVE's FOV mask white, as an export or a scan frames a picture; returns the PNG's path."""
    import numpy as np
    from PIL import Image

    from vgan.images import read_binary

    pool, stem = photo.parents[1].name, photo.stem.removeprefix("eye")
    rgb = np.asarray(Image.open(photo)).copy()
    rgb[~read_binary(drive_root / pool / "mask" / f"{stem}_mask.gif")] = 255
    photo.unlink()
    Image.fromarray(rgb).save(photo.with_suffix(".png"))
    return photo.with_suffix(".png")


def two_camera_dataset(drive_root: Path, stare_root: Path, root: Path, counts: dict[str, tuple[int, int]]) -> Path:
    """A folder dataset of two cameras' photographs: DRIVE's first (584x565, as `folder_dataset`) and STARE's
    first (605x700, linked under STARE's names: `<id>.ah.ppm` labels, `<id>.mask.ppm` masks), per pool."""
    folder_dataset(drive_root, root, {pool: n for pool, (n, _) in counts.items()})
    ids = iter(sorted(p.stem for p in (stare_root / "images").glob("*.ppm")))
    for pool, (_, n) in counts.items():
        for i in (next(ids) for _ in range(n)):
            (root / pool / "images" / f"{i}.ppm").symlink_to(stare_root / "images" / f"{i}.ppm")
            (root / pool / "labels" / f"{i}.ah.ppm").symlink_to(stare_root / "labels-ah" / f"{i}.ah.ppm")
            (root / pool / "masks" / f"{i}.mask.ppm").symlink_to(stare_root / "mask" / f"{i}.mask.ppm")
    return root


@pytest.fixture
def clinic(drive_root, tmp_path) -> Path:
    """A screening service's export: a folder per patient (and visit), each eye's photograph named as the camera
    names it, so the same names recur (DRIVE's test photographs 01-04 standing in); beside them what such folders
    also hold: a macOS resource-fork copy, a hidden thumbnail folder, notes."""
    root = tmp_path / "clinic"
    for patient, eyes in (("p01", ("01", "02")), ("p02", ("03",)), ("p02/visit2", ("04",))):
        (root / patient).mkdir(parents=True)
        for side, i in zip(("OD", "OS")[:len(eyes)], eyes, strict=True):
            shutil.copy(drive_root / "test" / "images" / f"{i}_test.tif", root / patient / f"{side}.tif")
    (root / "p01" / "._OD.tif").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (root / "p01" / ".thumbs").mkdir()
    shutil.copy(drive_root / "test" / "images" / "05_test.tif", root / "p01" / ".thumbs" / "OD.tif")
    (root / "p01" / "notes.txt").write_text("left eye blurred")
    return root


@pytest.fixture
def drive_copy(tmp_path, drive_root) -> Path:
    """DRIVE's layout in tmp_path (`drive_links`), so a test can remove or replace one file without touching the
    real data."""
    return drive_links(drive_root, tmp_path / "DRIVE")


def drive_links(drive_root: Path, root: Path, pools: tuple[str, ...] = ("training", "test"),
                numbers: set[str] | None = None) -> Path:
    """DRIVE's layout under `root`, every file a symlink into the shared copy: of `pools`, and of the images
    numbered `numbers` only where given (DRIVE's names begin with the number: photograph, labels, mask)."""
    for pool in pools:
        for sub in ("images", "1st_manual", "mask"):
            dst = root / pool / sub
            dst.mkdir(parents=True)
            for f in (drive_root / pool / sub).iterdir():
                if numbers is None or f.name[:2] in numbers:
                    (dst / f.name).symlink_to(f)
    return root


def replace_file(link: Path, data: bytes) -> None:
    link.unlink()
    link.write_bytes(data)


def copy_real(link: Path) -> bytes:
    return Path(os.path.realpath(link)).read_bytes()

