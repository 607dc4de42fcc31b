"""DICOM photographs (Ophthalmic Photography) read as the photograph they hold, in the forms cameras export."""

import io

import numpy as np
import pytest
from dicoms import write_dicom
from PIL import Image

from vgan.errors import DataError
from vgan.images import find_images, read_image


@pytest.fixture(scope="module")
def photo(drive_root):
    return np.asarray(Image.open(drive_root / "test" / "images" / "01_test.tif").convert("RGB"))


@pytest.mark.parametrize("form", ["rgb", "j2k", "jpeg"])
def test_a_colour_dicom_reads_as_its_photograph(photo, tmp_path, form):
    notes = []
    got = read_image(write_dicom(tmp_path / "IM0001", photo, form), notes)
    if form == "jpeg":  # lossy: the pixels Pillow decodes from the same JPEG stream (YCbCr 4:2:2 made RGB)
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, format="JPEG", quality=95)
        want = np.asarray(Image.open(buffer))
        assert np.abs(want.astype(int) - photo).mean() < 3  # the JPEG is the photograph
    else:
        want = photo
    assert got.dtype == np.uint8 and np.array_equal(got, want) and notes == ["read from DICOM"]


def test_red_free_and_deep_grey_dicoms_read_as_shown(photo, tmp_path):
    green = np.ascontiguousarray(photo[..., 1])  # a red-free photograph is the green channel's light
    assert np.array_equal(read_image(write_dicom(tmp_path / "a.dcm", green, "mono2")), green)
    stored = (4095 - green.astype(np.uint16) * 16).astype(np.uint16)  # 12 bits in 16, 0 white (MONOCHROME1)
    notes = []
    got = read_image(write_dicom(tmp_path / "b.dcm", stored, "mono1", bits=12), notes)
    assert got.dtype == np.float32 and np.allclose(got, green.astype(np.float32) * 16 / 4095, atol=1e-6)
    assert notes == ["read from DICOM", "MONOCHROME1 inverted", "12-bit values divided by 4095"]


@pytest.mark.parametrize("form, frames, fragment", [
    ("rgb", 2, "a DICOM of 2 frames (a stereo pair or a series): save one photograph per file"),
    ("no-pixels", 1, "a DICOM with no image in it (Ophthalmic Photography 8 Bit Image Storage)"),
    ("jpeg-ls", 1, "its DICOM pixel data (JPEG-LS Lossless Image Compression) cannot be decoded here: "
                   "Unable to decompress .* missing dependencies: gdcm .*; pyjpegls - requires numpy and pyjpegls"),
])
def test_a_dicom_that_holds_no_one_photograph_is_refused_by_name(photo, tmp_path, form, frames, fragment):
    path = write_dicom(tmp_path / "IM0002", photo, form, frames)
    with pytest.raises(DataError, match=f"{path}: {fragment}".replace("(", r"\(").replace(")", r"\)")) as e:
        read_image(path)
    assert "\n" not in str(e.value)


def test_a_truncated_dicom_is_named(photo, tmp_path):
    path = write_dicom(tmp_path / "IM0003", photo)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=f"{path}: "):
        read_image(path)


def test_archive_files_without_a_suffix_are_found_by_their_first_bytes(photo, tmp_path):
    (tmp_path / "p01").mkdir()
    write_dicom(tmp_path / "p01" / "IM0001", photo)
    (tmp_path / "p01" / "DICOMDIR.txt").write_text("not an image")
    (tmp_path / "p01" / "README").write_text("no suffix, no DICOM")
    write_dicom(tmp_path / "p01" / "IM0002.dcm", photo)
    (tmp_path / "p02").mkdir()
    for uid in ("1.2.826.0.1.3680043.8.498.10", "1.2.826.0.1.3680043.8.498.11"):  # named by their instance UIDs
        write_dicom(tmp_path / "p02" / uid, photo)
    (tmp_path / "p02" / "notes.v2").write_text("a suffix of no image, no DICOM")
    assert [s.name for s in find_images([str(tmp_path)], recursive=True)] == [
        "p01/IM0001", "p01/IM0002", "p02/1.2.826.0.1.3680043.8.498.10", "p02/1.2.826.0.1.3680043.8.498.11"]
    uid = tmp_path / "p02" / "1.2.826.0.1.3680043.8.498.11"
    assert [s.name for s in find_images([str(uid)])] == [uid.name]  # a file given: its whole name


def test_a_folder_dataset_of_dicom_photographs_trains_on_the_photographs_they_hold(drive_root, tmp_path):
    """One's own dataset with the photographs as the archive gave them (DICOM, .dcm or no suffix) and labels
    drawn as PNG: the pool holds the same pixels as DRIVE's."""
    import torch
    from conftest import folder_dataset

    from vgan.config import DataConfig
    from vgan.data import read_pool

    root = folder_dataset(drive_root, tmp_path / "own", {"training": 3})
    for i, link in enumerate(sorted((root / "training" / "images").iterdir())):
        rgb = np.asarray(Image.open(link).convert("RGB"))
        link.unlink()
        write_dicom(link.with_suffix(".dcm" if i else ""), rgb, "j2k")  # the first as archives name them
    own = read_pool(DataConfig(dataset="folder", root=str(root)), "training")
    drive = read_pool(DataConfig(dataset="drive", root=str(drive_root)), "training")
    assert own.ids == [f"eye{i}" for i in drive.ids[:3]]
    assert torch.equal(own.images, drive.images[:3]) and torch.equal(own.labels, drive.labels[:3])
