"""`python -m vgan.predict`: a folder of real fundus photographs in the forms users have them."""

import shutil

import numpy as np
import pytest
import torch
from dicoms import write_dicom
from models import tiny_checkpoint
from pages import read_page
from PIL import Image

from vgan.images import estimate_fov, read_binary, read_image
from vgan.inputs import as_batch
from vgan.models import VesselSegmenter
from vgan.predict import main
from vgan.scale import fov_diameter, predict_at_scale
from vgan.trainer import generator_from_checkpoint, load_checkpoint
from vgan.tta import with_tta
from vgan.visualize import to_uint16, vessel_overlay


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture
def photos(tmp_path, drive_root, stare_root):
    """DRIVE and STARE photographs as a user's folder holds them: TIFF, RGBA PNG, grey JPEG, 16-bit RGB
    TIFF, PPM (copied to tmp_path: the shared data stays untouched)."""
    import tifffile

    folder = tmp_path / "photos"
    folder.mkdir()
    rgb = [np.asarray(Image.open(drive_root / "test" / "images" / f"0{i}_test.tif")) for i in (1, 2, 3, 4)]
    (folder / "01_test.tif").write_bytes((drive_root / "test" / "images" / "01_test.tif").read_bytes())
    Image.fromarray(np.dstack([rgb[1], np.full(rgb[1].shape[:2], 255, np.uint8)])).save(folder / "02_rgba.png")
    Image.fromarray(rgb[2]).convert("L").save(folder / "03_grey.jpg")
    tifffile.imwrite(folder / "04_16bit.tif", rgb[3].astype(np.uint16) * 257)
    (folder / "im0162.ppm").write_bytes((stare_root / "images" / "im0162.ppm").read_bytes())
    return folder


def test_every_image_gets_maps_of_its_size_zero_outside_the_fov(photos, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), "--input", str(photos), "--out", str(out), "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    assert "5 image(s) segmented" in said and "FOV estimated for 5" in said
    for note in ("alpha channel dropped (1)", "grey repeated to 3 channels (1)", "16-bit values divided by 65535 (1)",
                 "8-bit values divided by 255 (4)"):
        assert note in said, said
    for src in photos.iterdir():
        size = Image.open(src).size
        prob = np.asarray(Image.open(out / "probabilities" / f"{src.stem}.png"))
        binary = np.asarray(Image.open(out / "binary" / f"{src.stem}.png"))
        fov = np.asarray(Image.open(out / "fov" / f"{src.stem}.png")) > 127
        assert prob.shape[::-1] == binary.shape[::-1] == size and prob.dtype == np.uint16
        assert set(np.unique(binary)) <= {0, 255} and prob[~fov].max() == 0 and prob[fov].max() > 0
        assert ((prob >= 32768) == (binary == 255)).all()  # binary = probability >= 0.5


def test_masks_are_read_from_a_folder_by_image_name(photos, checkpoint, tmp_path, drive_root):
    images = tmp_path / "drive"
    images.mkdir()
    (images / "01_test.tif").write_bytes((photos / "01_test.tif").read_bytes())
    out = tmp_path / "out"
    code = main(["--checkpoint", str(checkpoint), "--input", str(images / "01_test.tif"), "--out", str(out),
                 "--masks", str(drive_root / "test" / "mask"), "--threshold", "0.3"])
    assert code == 0 and not (out / "fov" / "01_test.png").exists()
    prob = np.asarray(Image.open(out / "probabilities" / "01_test.png"))
    fov = read_binary(drive_root / "test" / "mask" / "01_test_mask.gif")  # 01_test.tif -> 01_test_mask.gif
    assert prob[~fov].max() == 0
    binary = np.asarray(Image.open(out / "binary" / "01_test.png"))
    assert ((prob >= round(0.3 * 65535)) == (binary == 255)).all()


def test_an_unreadable_image_is_named_and_the_others_are_written(photos, checkpoint, tmp_path, capsys):
    broken = photos / "05_cut.png"
    broken.write_bytes((photos / "02_rgba.png").read_bytes()[:3000])
    (photos / "06_empty.png").write_bytes(b"")
    (photos / "07_notes.jpg").write_text("not a photograph")
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), "--input", str(photos), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 of 8 image(s) not segmented" in err and "05_cut.png: unreadable" in err
    # said in words, not as PIL's "cannot identify image file <_io.BytesIO object at 0x7f...>"
    assert "06_empty.png: an empty file;" in err and "BytesIO" not in err
    assert "07_notes.jpg: unreadable or truncated image, or in none of the formats read (PNG, JPEG, TIFF" in err
    assert len(list((out / "probabilities").iterdir())) == 5


def test_a_sideways_phone_photograph_gets_the_map_of_the_photograph_as_shown(photos, checkpoint, tmp_path, drive_root,
                                                                           capsys):
    """Stored turned with an EXIF orientation tag, it is segmented as viewers show it: the map is the upright
    photograph's, to the bit; a FOV mask the size of the stored pixels is refused with the reason."""
    shown = np.asarray(Image.open(photos / "01_test.tif"))
    phone = tmp_path / "phone"
    phone.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 8  # stored turned a quarter clockwise, shown turned back
    Image.fromarray(np.ascontiguousarray(np.rot90(shown, -1))).save(phone / "01_test.png", exif=exif)
    Image.fromarray(shown).save(phone / "01_upright.png")
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), "--input", str(phone), "--out", str(out)]) == 0
    assert "turned upright as its orientation tag says (1)" in capsys.readouterr().out
    maps = [np.asarray(Image.open(out / "probabilities" / f"01_{n}.png")) for n in ("test", "upright")]
    assert maps[0].shape == shown.shape[:2] and np.array_equal(*maps)
    (phone / "01_upright.png").unlink()
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.rot90(read_binary(drive_root / "test" / "mask" / "01_test_mask.gif"), -1)).save(
        masks / "01_test_mask.png")
    assert main(["--checkpoint", str(checkpoint), "--input", str(phone), "--out", str(out), "--masks", str(masks)]) == 2
    assert "mask size 565x584 differs from its image (584x565); the image is stored 565x584 with an orientation tag" \
        in capsys.readouterr().err


@pytest.mark.parametrize("argv, fragment", [
    (["--input", "/nowhere/photos"], "/nowhere/photos: no such file or folder"),
    (["--threshold", "1.5"], "--threshold 1.5: must lie strictly between 0 and 1"),
    (["--masks", "/nowhere/masks"], "/nowhere/masks: masks folder missing"),
    (["--out", "{photos}/01_test.tif/maps"], "--out {photos}/01_test.tif/maps: cannot write there (Not a directory)"),
    (["--device", "cuda"], "--device: 'cuda' asked for, but torch sees no CUDA GPU"),  # it named train.device
])
def test_bad_input_exits_2_with_one_message(photos, checkpoint, tmp_path, capsys, argv, fragment):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    base = {"--checkpoint": str(checkpoint), "--input": str(photos), "--out": str(tmp_path / "out")}
    for i in range(0, len(argv), 2):
        base[argv[i]] = argv[i + 1].format(photos=photos)
    assert main([x for kv in base.items() for x in kv]) == 2
    err = capsys.readouterr().err
    assert fragment.format(photos=photos) in err and err.count("\n") == 1, err


def test_a_missing_checkpoint_exits_2(photos, tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "no.pt"), "--input", str(photos), "--out", str(tmp_path)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_the_estimated_fov_matches_the_datasets_masks(drive_root, stare_root):
    """The red-channel estimate against the FOV masks shipped with DRIVE (all 20 test images) and STARE."""
    pairs = [(p, drive_root / "test" / "mask" / f"{p.stem.split('_')[0]}_test_mask.gif")
             for p in sorted((drive_root / "test" / "images").glob("*.tif"))]
    stare = sorted((stare_root / "images").glob("*.ppm"))[:6]
    pairs += [(p, stare_root / "mask" / f"{p.stem}.mask.ppm") for p in stare]
    for image, mask in pairs:
        rgb = as_batch(read_image(image))[0][0].permute(1, 2, 0).numpy()
        est, truth = estimate_fov(rgb), read_binary(mask)
        assert (est & truth).sum() / (est | truth).sum() > 0.98, image


def test_the_fov_is_estimated_inside_a_white_or_grey_frame(drive_root, stare_root):
    """A photograph whose surround an export or a scan made white or grey (or whose camera picture was padded on
    a white page) has its FOV estimated as on black: before, the red channel's threshold took the whole picture
    (IoU 0.68 with DRIVE's mask for 01_test), and `--scale auto` measured the picture's width as the FOV's. A
    picture with no surround, in colour or grey (a red-free one's smooth rim passes for a frame's one colour), is
    all FOV."""
    for image in sorted((drive_root / "test" / "images").glob("*.tif"))[:4]:
        rgb = as_batch(read_image(image))[0][0].permute(1, 2, 0).numpy()
        truth = read_binary(drive_root / "test" / "mask" / f"{image.stem.split('_')[0]}_test_mask.gif")
        on_black = estimate_fov(rgb)
        page = np.ones((rgb.shape[0] + 80, rgb.shape[1] + 120, 3), np.float32)
        page[40:-40, 60:-60] = rgb
        framed = {"white": (rgb, 1.0), "grey": (rgb, 0.5), "off-white": (rgb, (0.96, 0.95, 0.92)), "page": (page, None)}
        for how, (picture, colour) in framed.items():
            picture, want = picture.copy(), np.pad(truth, ((40, 40), (60, 60))) if colour is None else truth
            if colour is not None:
                picture[~truth] = colour
            est = estimate_fov(picture)
            assert (est & want).sum() / (est | want).sum() > 0.98, (image.name, how)
            assert abs(fov_diameter(est) / fov_diameter(on_black) - 1) < 0.01, (image.name, how)
    rgb = read_image(stare_root / "images" / "im0001.ppm").astype(np.float32) / 255
    middle = rgb[rgb.shape[0] // 2 - 150:rgb.shape[0] // 2 + 150, rgb.shape[1] // 2 - 150:rgb.shape[1] // 2 + 150]
    for picture in (middle, np.repeat(np.clip(middle[..., 1:2] * 1.8, 0, 1), 3, axis=2)):
        assert estimate_fov(picture)[1:-1, 1:-1].all()  # the rim's one pixel eroded, as every estimate's


def test_a_white_frame_is_segmented_as_a_black_surround_and_said(checkpoint, drive_root, tmp_path, capsys):
    """A photograph framed white by an export: its FOV and map are the ones of the same photograph with the frame
    black (before, the FOV was the whole picture and the generator saw the frame's bright rim), the summary and its
    report row say the frame was made black, and its overlay shows the photograph as it is, frame and all."""
    rgb = np.asarray(Image.open(drive_root / "test" / "images" / "01_test.tif")).copy()
    rgb[~read_binary(drive_root / "test" / "mask" / "01_test_mask.gif")] = 255
    black = rgb.copy()
    black[~estimate_fov(rgb / 255.0) & (rgb == 255).all(axis=-1)] = 0
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(rgb).save(photos / "framed.png")
    Image.fromarray(black).save(photos / "black.png")
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), "--input", str(photos), "--out", str(out), "--device", "cpu"]) == 0
    assert "white or grey frame made black (1)" in capsys.readouterr().out
    report = _report(out)
    assert report["framed"]["converted"] == "white or grey frame made black" and report["black"]["converted"] == ""
    assert report["framed"]["fov_diameter_px"] == report["black"]["fov_diameter_px"]
    for sub in ("probabilities", "binary", "fov"):
        framed, plain = (np.asarray(Image.open(out / sub / f"{name}.png")) for name in ("framed", "black"))
        assert np.array_equal(framed, plain), sub
    overlay = np.asarray(Image.open(out / "overlay" / "framed.jpg"))
    assert overlay[:5, :5].min() > 230  # the frame as it is


def test_photographs_are_segmented_at_the_scale_the_generator_was_trained_at(checkpoint, drive_root, tmp_path, capsys):
    """The tiny generator learnt 44-pixel synthetic FOVs: a 535-pixel DRIVE photograph is shrunk to that
    and its map enlarged back (auto, the default); --scale 1 feeds it as it is."""
    g, _ = generator_from_checkpoint(load_checkpoint(checkpoint), "best.pt", torch.device("cpu"))
    model = VesselSegmenter(g).eval()
    image = drive_root / "test" / "images" / "01_test.tif"
    fov = read_binary(drive_root / "test" / "mask" / "01_test_mask.gif")
    x = as_batch(read_image(image))[0]
    maps = {}
    for scale in ("auto", "1"):
        out = tmp_path / scale
        argv = ["--checkpoint", str(checkpoint), "--input", str(image), "--out", str(out),
                "--masks", str(drive_root / "test" / "mask"), "--scale", scale]
        assert main(argv) == 0
        said = capsys.readouterr().out
        factor = g.trained_fov / fov_diameter(fov) if scale == "auto" else 1.0
        assert (f"resized to the model's FOV of {g.trained_fov:.0f} px: 1 (x{factor:.3g}" in said) == (scale == "auto")
        with torch.no_grad():
            want = predict_at_scale(model, x, factor)[0, 0].numpy() * fov
        maps[scale] = np.asarray(Image.open(out / "probabilities" / "01_test.png"))
        np.testing.assert_array_equal(maps[scale], to_uint16(want))
    assert maps["auto"].shape == maps["1"].shape == fov.shape and (maps["auto"] != maps["1"])[fov].mean() > 0.1


def test_a_fov_no_camera_gives_is_named_and_the_others_are_written(checkpoint, photos, tmp_path, capsys):
    """A DRIVE photograph in the middle of a 2400-pixel black frame: its FOV spans 22 % of the image, which
    says the picture (or a mask) is wrong, not the camera; it is named and the others are segmented, a 3x
    enlargement among them (shrunk x0.03 to the tiny generator's 44-pixel FOV: far, but a camera's). A 10-pixel
    thumbnail of a photograph, which auto would enlarge more than x4 (as training refuses to), is named too."""
    photo = np.asarray(Image.open(photos / "01_test.tif"))
    framed = np.zeros((2400, 2400, 3), np.uint8)
    framed[908 : 908 + photo.shape[0], 917 : 917 + photo.shape[1]] = photo
    Image.fromarray(framed).save(photos / "06_framed.png")
    Image.fromarray(photo).resize((3 * photo.shape[1], 3 * photo.shape[0]), Image.BICUBIC).save(photos / "07_big.png")
    Image.fromarray(photo).resize((10, 10), Image.LANCZOS).save(photos / "08_thumb.png")
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), "--input", str(photos), "--out", str(out)]) == 2
    said = capsys.readouterr()
    assert "2 of 8 image(s) not segmented" in said.err and "--masks" in said.err
    assert "08_thumb.png: its field of view is 6 pixels across; brought to 44 it would be enlarged x7.3, more than " \
           "x4 (a thumbnail, a crop, a FOV gone wrong, or a camera of far lower resolution than the model's?): " \
           "give its mask (--masks) or a factor (--scale)" in said.err
    assert "06_framed.png: its field of view is 5" in said.err and "pixels across in a 2400-pixel image" in said.err
    assert "6 image(s) segmented" in said.out and (out / "probabilities" / "07_big.png").is_file()
    assert Image.open(out / "probabilities" / "07_big.png").size == (3 * photo.shape[1], 3 * photo.shape[0])
    assert main(["--checkpoint", str(checkpoint), "--input", str(photos / "07_big.png"), "--out", str(out),
                 "--scale", "5"]) == 2  # a given factor beyond 4 is refused before anything starts
    assert "--scale 5: a factor must be above 0 and at most 4" in capsys.readouterr().err


def test_a_strip_one_pixel_high_is_segmented_as_any_image(checkpoint, photos, tmp_path, capsys):
    """A checkpoint's generator takes any size: a strip of a photograph one pixel high gets its map, as asked
    (--scale 1), where its FOV's diameter was a ValueError that stopped the whole batch."""
    photo = np.asarray(Image.open(photos / "01_test.tif"))
    Image.fromarray(photo[300:301]).save(photos / "strip.png")
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), "--input", str(photos / "strip.png"), str(photos / "01_test.tif"),
                 "--out", str(out), "--scale", "1"]) == 0
    assert "2 image(s) segmented" in capsys.readouterr().out
    assert Image.open(out / "probabilities" / "strip.png").size == (photo.shape[1], 1)


def test_a_checkpoint_from_before_the_scale_was_recorded_segments_images_as_they_are(checkpoint, drive_root, tmp_path,
                                                                                      capsys):
    state = load_checkpoint(checkpoint)
    del state["generator"]["fov_diameter"]
    old = tmp_path / "old.pt"
    torch.save(state, old)
    image = drive_root / "test" / "images" / "01_test.tif"
    assert main(["--checkpoint", str(old), "--input", str(image), "--out", str(tmp_path / "old")]) == 0
    assert "used at their own size: the model records no training scale" in capsys.readouterr().out
    assert main(["--checkpoint", str(checkpoint), "--input", str(image), "--out", str(tmp_path / "new"),
                 "--scale", "1"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "old" / "probabilities" / "01_test.png")),
                                  np.asarray(Image.open(tmp_path / "new" / "probabilities" / "01_test.png")))


def test_tta_averages_mirrored_views_at_the_models_scale(checkpoint, drive_root, tmp_path, capsys):
    """--tta flips: the four mirrored views are taken at the scale the model sees (after the resize), and
    their mean map is resized back; the summary says so."""
    g, _ = generator_from_checkpoint(load_checkpoint(checkpoint), "best.pt", torch.device("cpu"))
    model = VesselSegmenter(g).eval()
    image = drive_root / "test" / "images" / "01_test.tif"
    fov = read_binary(drive_root / "test" / "mask" / "01_test_mask.gif")
    out = tmp_path / "tta"
    assert main(["--checkpoint", str(checkpoint), "--input", str(image), "--out", str(out),
                 "--masks", str(drive_root / "test" / "mask"), "--tta", "flips"]) == 0
    assert "each map the mean of 4 mirrored views (--tta flips)" in capsys.readouterr().out
    with torch.no_grad():
        factor = g.trained_fov / fov_diameter(fov)
        want = predict_at_scale(with_tta(model, "flips"), as_batch(read_image(image))[0], factor)[0, 0].numpy() * fov
        once = predict_at_scale(model, as_batch(read_image(image))[0], factor)[0, 0].numpy() * fov
    got = np.asarray(Image.open(out / "probabilities" / "01_test.png"))
    np.testing.assert_array_equal(got, to_uint16(want))
    assert (got != to_uint16(once))[fov].mean() > 0.1
    with pytest.raises(SystemExit, match="2"):
        main(["--checkpoint", str(checkpoint), "--input", str(image), "--out", str(out), "--tta", "flip"])
    assert "argument --tta: invalid choice: 'flip'" in capsys.readouterr().err


def _report(out):
    import csv

    with open(out / "report.csv", newline="") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def _index_images(out):
    """The thumbnails of out/index.html, in its order, each a file there."""
    srcs = read_page(out / "index.html").images()
    assert all((out / src).is_file() for src in srcs)
    return srcs

def test_a_folder_per_patient_gets_its_maps_in_the_same_folders(clinic, checkpoint, tmp_path, capsys):
    """A screening export (a folder per patient, the camera's names recurring) with the maps written inside it:
    each map lands in its photograph's subfolder, equal to the map of the photograph given alone, and later
    runs take the same four photographs, not the maps of earlier ones (into the same folder or another)."""
    argv = ["--checkpoint", str(checkpoint), "--input", str(clinic)]
    assert main(argv + ["--out", str(clinic / "maps")]) == 2
    assert "its subfolders hold images (p01/OD first): --recursive takes them" in capsys.readouterr().err
    for out in (clinic / "maps", clinic / "maps", clinic / "p02" / "maps2"):
        assert main(argv + ["--recursive", "--out", str(out)]) == 0
        assert "4 image(s) segmented" in capsys.readouterr().out
    names = ["p01/OD", "p01/OS", "p02/OD", "p02/visit2/OD"]
    assert sorted(p.relative_to(out / "probabilities").with_suffix("").as_posix()
                  for p in (out / "probabilities").rglob("*.png")) == names
    report = _report(out)
    assert list(report) == names
    for name in names:
        prob = np.asarray(Image.open(out / "probabilities" / f"{name}.png"))
        binary = np.asarray(Image.open(out / "binary" / f"{name}.png")) == 255
        fov = np.asarray(Image.open(out / "fov" / f"{name}.png")) > 127
        row = report[name]
        assert row["input"] == str(clinic / f"{name}.tif") and row["status"] == "segmented" and not row["error"]
        assert (int(row["height"]), int(row["width"])) == prob.shape == (584, 565)
        assert row["fov"] == "estimated" and float(row["fov_diameter_px"]) == pytest.approx(fov_diameter(fov), abs=0.05)
        assert float(row["vessel_fraction"]) == pytest.approx(binary[fov].mean(), abs=5e-5)
        assert float(row["factors"]) < 1 and row["converted"] == ""  # 8-bit RGB: the common case, nothing to say
        # the overlay: this map on this photograph (JPEG's loss aside)
        photo = np.asarray(Image.open(clinic / f"{name}.tif"), np.float32) / 255
        over = np.asarray(Image.open(out / "overlay" / f"{name}.jpg"), np.float32)
        assert np.abs(over - vessel_overlay(photo, prob / 65535, fov)).mean() < 2
        thumbnail = Image.open(out / "thumbnails" / f"{name}.jpg")  # the page's: the overlay, 480 px wide
        assert thumbnail.width == 480 and abs(thumbnail.height - 480 * 584 / 565) <= 1
    srcs = _index_images(out)
    assert srcs == [f"thumbnails/{n}.jpg" for n in sorted(names, key=lambda n: float(report[n]["vessel_fraction"]))]
    alone = tmp_path / "alone"
    assert main(["--checkpoint", str(checkpoint), "--input", str(clinic / "p02" / "visit2" / "OD.tif"),
                 "--out", str(alone)]) == 0
    assert np.array_equal(np.asarray(Image.open(alone / "probabilities" / "OD.png")),
                          np.asarray(Image.open(out / "probabilities" / "p02" / "visit2" / "OD.png")))


def test_masks_follow_the_tree_and_the_report_says_why_an_image_failed(clinic, checkpoint, drive_root, tmp_path,
                                                                       capsys):
    masks = tmp_path / "masks"
    for name, i in (("p01/OD", "01"), ("p01/OS", "02"), ("p02/OD", "03")):  # none for p02/visit2/OD
        (masks / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(drive_root / "test" / "mask" / f"{i}_test_mask.gif", masks / f"{name}_mask.gif")
    (clinic / "p02" / "OS.png").write_bytes((clinic / "p02" / "OD.tif").read_bytes()[:3000])  # cut short
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), "--input", str(clinic), "--recursive", "--out", str(out),
                 "--masks", str(masks)]) == 2
    err = capsys.readouterr().err
    assert "2 of 5 image(s) not segmented" in err and f"{masks / 'p02' / 'visit2'}: no FOV mask for OD.tif" in err
    report = _report(out)
    assert [r["status"] for r in report.values()] == ["segmented", "segmented", "segmented", "failed", "failed"]
    assert report["p02/OS"]["error"].startswith(f"{clinic / 'p02' / 'OS.png'}: unreadable")
    assert "no FOV mask for OD.tif" in report["p02/visit2/OD"]["error"] and not report["p02/visit2/OD"]["fov"]
    assert report["p01/OS"]["fov"] == str(masks / "p01" / "OS_mask.gif") and not (out / "fov" / "p01").exists()
    page = (out / "index.html").read_text()
    assert page.index("p02/OS") < page.index("p02/visit2/OD") < page.index("p01/OD")  # failures first, as met
    assert "3 photograph(s) segmented, 2 failed" in page and len(_index_images(out)) == 3
    prob = np.asarray(Image.open(out / "probabilities" / "p01" / "OS.png"))
    assert prob[~read_binary(masks / "p01" / "OS_mask.gif")].max() == 0 and prob.max() > 0


def test_a_cameras_dicom_archive_gets_the_maps_of_the_photographs_it_holds(photos, checkpoint, tmp_path, capsys):
    """Exported from a hospital archive: DICOM files without a suffix, one JPEG 2000, one uncompressed; each
    map is the map of the photograph it holds, bit for bit."""
    archive = tmp_path / "archive" / "p01"
    archive.mkdir(parents=True)
    photo = np.asarray(Image.open(photos / "01_test.tif"))
    write_dicom(archive / "IM0001", photo, "j2k")
    write_dicom(archive / "IM0002", photo)
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), "--input", str(tmp_path / "archive"), "--recursive",
                 "--out", str(out)]) == 0
    assert main(["--checkpoint", str(checkpoint), "--input", str(photos / "01_test.tif"), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "2 image(s) segmented" in said and "read from DICOM (2)" in said
    want = np.asarray(Image.open(out / "probabilities" / "01_test.png"))
    for name in ("IM0001", "IM0002"):
        assert np.array_equal(np.asarray(Image.open(out / "probabilities" / "p01" / f"{name}.png")), want)


def test_ctrl_c_keeps_the_images_done_and_says_how_to_go_on(clinic, checkpoint, tmp_path, capsys, monkeypatch):
    import vgan.predict

    segment_one = vgan.predict._segment_one

    def ctrl_c_at_the_third(members, source, *args):
        if source.name == "p02/OD":
            raise KeyboardInterrupt
        return segment_one(members, source, *args)

    out = tmp_path / "out"
    argv = ["--checkpoint", str(checkpoint), "--input", str(clinic), "--recursive", "--out", str(out)]
    monkeypatch.setattr(vgan.predict, "_segment_one", ctrl_c_at_the_third)
    assert main(argv) == 130
    assert capsys.readouterr().err.splitlines()[-2:] == [
        "interrupted after 2 of 4 image(s): their maps and report.csv rows are kept; the same command with --continue "
        "does the rest", "vgan.predict: interrupted"]
    assert list(_report(out)) == ["p01/OD", "p01/OS"] and not (out / "index.html").exists()
    monkeypatch.setattr(vgan.predict, "_segment_one", segment_one)
    assert main(argv + ["--continue"]) == 0
    said = capsys.readouterr().out
    assert "2 image(s) segmented" in said and "2 kept as an earlier run made them (--continue)" in said
    assert len(_index_images(out)) == 4


def test_a_batch_continued_keeps_only_the_maps_that_still_stand(clinic, checkpoint, tmp_path, capsys):
    """--continue after a run: maps of the same file, the same bytes, by the same weights and settings are kept
    (their files untouched), whatever the file's time stamp; a photograph replaced by another (its old time stamp
    kept, as copies and archives keep it), a lost map, a stopped batch's missing rows are done again; other
    settings or other weights redo everything."""
    import os

    out = tmp_path / "out"
    argv = ["--checkpoint", str(checkpoint), "--input", str(clinic), "--recursive", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    first = _report(out)
    model = first["p01/OD"]["model"]
    assert model.startswith("sha256:") and all(r["model"] == model for r in first.values())
    assert first["p01/OD"]["settings"] == "threshold 0.5; scale auto; tta none; masks estimated; maps 16-bit"
    stamp = {n: (out / "probabilities" / f"{n}.png").stat().st_mtime_ns for n in first}
    # a stopped batch: its report holds the rows done so far
    lines = (out / "report.csv").read_text().splitlines(keepends=True)
    (out / "report.csv").write_text("".join(lines[:3]))  # the header, p01/OD, p01/OS
    (out / "overlay" / "p01" / "OS.jpg").unlink()  # a map lost
    assert main(argv + ["--continue"]) == 0
    assert "3 image(s) segmented" in capsys.readouterr().out  # p01/OS, and p02/OD and p02/visit2/OD: not in
    (out / "report.csv").write_text("".join(lines))  # (the whole report again, to see each rule alone)
    replaced, touched = clinic / "p02" / "OD.tif", clinic / "p01" / "OD.tif"
    was = os.stat(replaced)
    replaced.write_bytes((clinic / "p01" / "OS.tif").read_bytes())  # another eye's photograph...
    os.utime(replaced, ns=(was.st_atime_ns, was.st_mtime_ns))  # ...with the old one's time stamp, as `cp -p` gives
    later = os.stat(touched).st_mtime + 10
    os.utime(touched, (later, later))  # opened and saved unchanged: the same bytes, a newer time stamp
    assert main(argv + ["--continue"]) == 0
    said = capsys.readouterr().out
    assert "1 image(s) segmented" in said and "3 kept as an earlier run made them (--continue)" in said
    assert _report(out)["p02/OD"]["input_digest"] == _report(out)["p01/OS"]["input_digest"] != \
        first["p02/OD"]["input_digest"]
    assert (out / "probabilities" / "p01" / "OD.png").stat().st_mtime_ns == stamp["p01/OD"]
    assert (out / "probabilities" / "p02" / "OD.png").stat().st_mtime_ns != stamp["p02/OD"]
    again = _report(out)
    assert list(again) == list(first)
    assert {n: r["vessel_fraction"] for n, r in again.items() if n != "p02/OD"} == \
        {n: r["vessel_fraction"] for n, r in first.items() if n != "p02/OD"}
    assert again["p02/OD"]["vessel_fraction"] == first["p01/OS"]["vessel_fraction"]
    assert len(_index_images(out)) == 4
    assert main(argv + ["--continue", "--threshold", "0.4"]) == 0  # other settings
    assert "4 image(s) segmented" in capsys.readouterr().out
    other = tiny_checkpoint(tmp_path / "other", **{"train.seed": 1})
    argv[1] = str(other)
    assert main(argv + ["--continue", "--threshold", "0.4"]) == 0  # other weights
    assert "4 image(s) segmented" in capsys.readouterr().out
    assert all(r["model"] != model for r in _report(out).values())
