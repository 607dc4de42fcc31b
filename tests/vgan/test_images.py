"""vgan.images: image files read as the tools take them (formats, modes, orientation tags, several pictures
in one file), probability maps, and the image files found in the folders given."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from vgan.errors import DataError
from vgan.images import find_images, read_photograph
from vgan.inputs import unit_float


def test_photographs_are_read_in_the_forms_users_have_them(drive_root, tmp_path):
    """Grey, 16-bit, RGBA and palette photographs train as vgan.predict later takes them."""
    import tifffile

    rgb = np.asarray(Image.open(drive_root / "test" / "images" / "01_test.tif").convert("RGB"))
    Image.fromarray(rgb[..., 1]).save(tmp_path / "grey.png")
    tifffile.imwrite(tmp_path / "deep.tif", rgb.astype(np.uint16) * 257)
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])).save(tmp_path / "alpha.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.gif")
    unit = rgb.astype(np.float32) / 255
    read = {name: read_photograph(tmp_path / name) for name in ("grey.png", "deep.tif", "alpha.png", "palette.gif")}
    # 8-bit files are held as uint8, 16-bit ones as floats; as floats, all are what vgan.predict gives the model
    assert {n: t.dtype for n, t in read.items()} == {"grey.png": torch.uint8, "deep.tif": torch.float32,
                                                      "alpha.png": torch.uint8, "palette.gif": torch.uint8}
    rgb_of = {n: unit_float(t).permute(1, 2, 0).numpy() for n, t in read.items()}
    assert np.array_equal(rgb_of["grey.png"], np.repeat(unit[..., 1:2], 3, axis=2))
    assert np.allclose(rgb_of["deep.tif"], unit, atol=1e-6)
    assert np.array_equal(rgb_of["alpha.png"], unit)
    palette = rgb_of["palette.gif"]
    assert palette.shape == rgb.shape and np.abs(palette - unit).mean() < 0.05  # 256 colours of the photograph


def test_a_tiff_is_read_as_viewers_show_it(drive_root, tmp_path):
    """Palette, CMYK and white-is-zero TIFFs: tifffile gives their samples as stored (a palette's indices read as
    grey, inks read as RGB and alpha, grey inverted), which would be segmented as nonsense; they are read as
    viewers show them, as PIL converts them. A thumbnail page is left out; two pictures of one size are refused
    (the first was taken without a word)."""
    import tifffile

    rgb = np.asarray(Image.open(drive_root / "test" / "images" / "01_test.tif").convert("RGB"))
    indexed = Image.fromarray(rgb).quantize(64)
    indexed.save(tmp_path / "palette.tif")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tif")
    tifffile.imwrite(tmp_path / "miniswhite.tif", 255 - rgb[..., 1], photometric="miniswhite")
    with tifffile.TiffFile(tmp_path / "cmyk.tif") as tif:
        assert tif.asarray().shape == (*rgb.shape[:2], 4)  # what was read before: inks as RGB and alpha
    shown = {"palette.tif": np.asarray(indexed.convert("RGB")), "cmyk.tif": rgb,
             "miniswhite.tif": np.repeat(rgb[..., 1:2], 3, axis=2)}
    # a camera's export with a thumbnail after the photograph: the photograph
    tifffile.imwrite(tmp_path / "thumbnail.tif", rgb)
    tifffile.imwrite(tmp_path / "thumbnail.tif", rgb[::8, ::8], append=True)
    shown["thumbnail.tif"] = rgb
    for name, want in shown.items():
        got = read_photograph(tmp_path / name)
        assert got.dtype == torch.uint8 and np.array_equal(got.permute(1, 2, 0).numpy(), want), name
    # two pictures of one size (a stereo pair): which is the photograph is no guess to make, as for a DICOM's frames
    tifffile.imwrite(tmp_path / "pair.tif", np.stack([rgb, rgb[:, ::-1]]))
    with pytest.raises(DataError, match=r"pair\.tif: a TIFF of 2 pictures \(a stereo pair or a series\): save one "):
        read_photograph(tmp_path / "pair.tif")


def test_an_animated_picture_is_refused_and_a_camera_jpeg_with_its_preview_is_read(drive_root, tmp_path):
    """An animated GIF, PNG (APNG) or WebP holds several pictures (a stereo pair, an angiogram's series): each is
    refused by name as a TIFF of several pages is (its first frame was segmented without a word). A camera's
    JPEG with a preview after it (MPO, which PIL also counts as frames) is its photograph."""
    rgb = np.asarray(Image.open(drive_root / "test" / "images" / "01_test.tif").convert("RGB"))
    frames = [Image.fromarray(rgb), Image.fromarray(np.ascontiguousarray(rgb[:, ::-1]))]
    for suffix, form in (("gif", "GIF"), ("png", "PNG"), ("webp", "WEBP")):
        frames[0].save(tmp_path / f"pair.{suffix}", save_all=True, append_images=frames[1:], duration=500)
        with pytest.raises(DataError, match=rf"pair\.{suffix}: an animated {form} of 2 frames \(a stereo pair or a "
                                            r"series\): save one photograph per file"):
            read_photograph(tmp_path / f"pair.{suffix}")
        frames[0].save(tmp_path / f"one.{suffix}", save_all=True, lossless=True)  # one frame saved as animations are
        assert read_photograph(tmp_path / f"one.{suffix}").shape == (3, *rgb.shape[:2])
    frames[0].save(tmp_path / "camera.jpg", format="MPO", save_all=True, append_images=[frames[0].resize((160, 120))],
                   quality=95)
    with Image.open(tmp_path / "camera.jpg") as im:
        assert im.format == "MPO" and im.n_frames == 2
    got = read_photograph(tmp_path / "camera.jpg").permute(1, 2, 0).numpy().astype(float)
    assert got.shape == rgb.shape and np.abs(got - rgb).mean() < 3  # the photograph, JPEG's loss aside


def test_grey_with_alpha_a_palette_with_alpha_and_a_16_bit_pgm_are_read_as_shown(drive_root, tmp_path):
    """PNG's grey and alpha (LA), a TIFF's palette with alpha (PA) and a 16-bit PGM, each refused before: two
    channels, two channels (a palette's indices and alpha), 32-bit integers (as PIL holds such a PGM)."""
    rgb = np.asarray(Image.open(drive_root / "test" / "images" / "01_test.tif").convert("RGB"))
    grey = rgb[..., 1]
    Image.fromarray(np.dstack([grey, np.full_like(grey, 200)]), "LA").save(tmp_path / "la.png")
    indexed = Image.fromarray(rgb).quantize(64)
    indexed.convert("PA").save(tmp_path / "pa.tif")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "deep.pgm")
    notes: list[str] = []
    la = read_photograph(tmp_path / "la.png", notes)
    assert notes == ["alpha channel dropped", "grey repeated to 3 channels"]  # as vgan.predict says them
    assert np.array_equal(la.numpy(), np.stack([grey] * 3))
    pa = read_photograph(tmp_path / "pa.tif")
    assert np.array_equal(pa.permute(1, 2, 0).numpy(), np.asarray(indexed.convert("RGB")))
    deep = read_photograph(tmp_path / "deep.pgm")
    assert deep.dtype == torch.float32 and torch.allclose(deep, torch.from_numpy(np.stack([grey] * 3) / 255).float())


PIL_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "F")


PIL_FORMATS = {"PNG": "png", "JPEG": "jpg", "TIFF": "tif", "GIF": "gif", "BMP": "bmp", "WEBP": "webp", "PPM": "ppm",
               "JPEG2000": "jp2"}


def test_a_photograph_in_any_mode_pil_writes_is_read_or_refused_by_name(drive_root, tmp_path):
    """Every mode PIL can write in every format read here, from a photograph: read as (3, H, W), or refused with a
    DataError naming the file; never another exception (which ends a batch). Before, it refused grey with alpha
    (PNG, TIFF, JPEG 2000), a palette with alpha and a 16-bit PGM. (What the pixels read are: the tests above.)"""
    photo = Image.open(drive_root / "test" / "images" / "01_test.tif").convert("RGB").resize((70, 68))
    read, refused = [], []
    for mode, (fmt, ext) in ((m, f) for m in PIL_MODES for f in PIL_FORMATS.items()):
        path = tmp_path / f"{mode.replace(';', '_')}-{fmt}.{ext}"
        try:
            (photo.convert("I").point(lambda v: v * 257).convert(mode) if mode.startswith("I") else
             photo.convert(mode)).save(path, fmt)
        except (OSError, KeyError, ValueError):  # a mode the format cannot hold
            continue
        try:
            image = read_photograph(path)
        except DataError as e:
            assert str(e).startswith(str(path)), e
            refused.append(path.name)
            continue
        assert image.shape == (3, 68, 70) and image.dtype in (torch.uint8, torch.float32), path.name
        read.append(path.name)
    # floats 0..255 and 32-bit integers 0..65535 (a TIFF's) are refused: no guess at their range; all else is read
    assert sorted(refused) == ["F-PPM.ppm", "F-TIFF.tif", "I-TIFF.tif"] and len(read) == 65, (len(read), refused)


def test_a_damaged_probability_map_is_named(tmp_path):
    from vgan.images import read_probability

    np.save(tmp_path / "01.npy", np.full((4, 5), 0.25, np.float32))
    assert read_probability(tmp_path / "01.npy").tolist() == [[0.25] * 5] * 4
    data = (tmp_path / "01.npy").read_bytes()
    (tmp_path / "01.npy").write_bytes(data[: len(data) - 30])
    with pytest.raises(DataError, match=r"01\.npy: unreadable or truncated array \(ValueError"):
        read_probability(tmp_path / "01.npy")
    with pytest.raises(DataError, match=r"02\.png: file missing"):
        read_probability(tmp_path / "02.png")
    # a map saved as a picture of itself (a colormap) holds no probabilities; grey saved as RGB does
    import matplotlib

    values = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    Image.fromarray((matplotlib.colormaps["jet"](values)[..., :3] * 255).astype(np.uint8)).save(tmp_path / "03.png")
    with pytest.raises(DataError, match=r"03\.png: a probability map in colour \(a colour map of it\?\): save the "):
        read_probability(tmp_path / "03.png")
    Image.fromarray(np.repeat((values * 255).astype(np.uint8)[..., None], 3, axis=2)).save(tmp_path / "04.png")
    assert np.array_equal(read_probability(tmp_path / "04.png"), (values * 255).astype(np.uint8) / np.float32(255))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_photograph_is_read_as_viewers_show_it(drive_root, tmp_path, orientation):
    """An EXIF or TIFF orientation tag (phone cameras) is applied, as PIL's exif_transpose applies it."""
    import tifffile
    from PIL import ImageOps

    from vgan.images import UPRIGHT_NOTE, read_image

    shown = np.asarray(Image.open(drive_root / "test" / "images" / "01_test.tif").convert("RGB"))
    stored = {2: shown[:, ::-1], 3: shown[::-1, ::-1], 4: shown[::-1], 5: shown.swapaxes(0, 1),
              6: np.rot90(shown), 7: shown[::-1, ::-1].swapaxes(0, 1), 8: np.rot90(shown, -1)}.get(orientation, shown)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    tifffile.imwrite(tmp_path / "phone.tif", np.ascontiguousarray(stored), extratags=[(274, "H", 1, orientation, True)])
    notes = []
    jpeg = read_image(tmp_path / "phone.jpg", notes)
    with Image.open(tmp_path / "phone.jpg") as im:
        assert np.array_equal(jpeg, np.asarray(ImageOps.exif_transpose(im)))
    assert np.array_equal(read_image(tmp_path / "phone.tif", notes), shown)  # lossless: exactly the photograph
    assert notes == ([UPRIGHT_NOTE] * 2 if orientation > 1 else [])


def test_a_folder_tree_is_taken_with_each_image_named_by_its_path_under_the_folder(clinic):
    with pytest.raises(DataError, match=r"clinic: no images in this folder .*its subfolders hold images \(p01/OD "
                                        r"first\): --recursive takes them"):
        find_images([str(clinic)])
    for i in range(1200):  # more folders than a hint looks into, all empty, walked before the patients' ones
        (clinic / "a" / f"{i:04d}").mkdir(parents=True)
    with pytest.raises(DataError, match=r"clinic: no images in this folder \(looked for [^)]*\)$"):
        find_images([str(clinic)])
    found = find_images([str(clinic)], recursive=True)
    assert [s.name for s in found] == ["p01/OD", "p01/OS", "p02/OD", "p02/visit2/OD"]  # hidden files and folders out
    assert [s.path for s in found] == [clinic / f"{n}.tif" for n in ("p01/OD", "p01/OS", "p02/OD", "p02/visit2/OD")]
    assert [s.name for s in find_images([str(clinic / "p02")])] == ["OD"]  # a folder's own images: their stems
    assert [s.name for s in find_images([str(clinic / "p01")])] == ["OD", "OS"]  # not ._OD.tif
    assert [s.name for s in find_images([str(clinic / "p01" / "OS.tif")], recursive=True)] == ["OS"]
    no_p02 = find_images([str(clinic)], recursive=True, skip=lambda d: d.name == "p02")
    assert [s.name for s in no_p02] == ["p01/OD", "p01/OS"]


def test_a_linked_folder_is_followed_and_a_link_loop_ends(clinic):
    (clinic / "p01" / "all").symlink_to(clinic)  # a loop: the tree again, inside itself
    (clinic.parent / "p03").mkdir()
    shutil.copy(clinic / "p01" / "OD.tif", clinic.parent / "p03" / "OD.tif")
    (clinic / "p03").symlink_to(clinic.parent / "p03")  # an export linked in
    assert [s.name for s in find_images([str(clinic)], recursive=True)] == \
        ["p01/OD", "p01/OS", "p02/OD", "p02/visit2/OD", "p03/OD"]


@pytest.mark.parametrize("names, fragment", [
    (["x/a/OD.tif", "x/a/OD.png"], "two images named 'a/OD'"),
    (["x/a/OD.tif", "x/a/od.tif"], "two images named 'a/od'"),  # one file where disks are blind to case
    (["x/a/OD.tif", "y/a/OD.tif"], "two images named 'a/OD'"),  # two trees given, one name in each
])
def test_two_images_of_one_output_name_are_refused(drive_root, tmp_path, names, fragment):
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(drive_root / "test" / "images" / "01_test.tif", tmp_path / name)
    with pytest.raises(DataError, match=fragment):
        find_images([str(tmp_path / d) for d in ("x", "y") if (tmp_path / d).exists()], recursive=True)
