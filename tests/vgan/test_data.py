import shutil

import numpy as np
import pytest
import torch
from conftest import copy_real, folder_dataset, frame_white, replace_file, two_camera_dataset
from PIL import Image

from vgan.config import DataConfig, SyntheticConfig
from vgan.data import (
    Split,
    detect_dataset,
    load_split,
    load_train_val,
    normalization_stats,
    people,
    read_pool,
    split_indices,
    synthetic_pool,
)
from vgan.errors import ConfigError, DataError
from vgan.images import find_images, read_photograph, without_frames
from vgan.inputs import unit_float


def test_drive_official_layout(drive_root):
    train = read_pool(DataConfig(dataset="drive", root=str(drive_root)), "training")
    assert len(train) == 20 and train.ids[0] == "21_training"
    # 8-bit TIFFs held as read (a quarter of float32's bytes), labels and masks as bool
    assert train.images.shape == (20, 3, 584, 565) and train.images.dtype == torch.uint8
    assert train.labels.dtype == train.masks.dtype == torch.bool
    with Image.open(drive_root / "training" / "images" / "21_training.tif") as im:
        pixels = np.asarray(im.convert("RGB"))
    assert np.array_equal(unit_float(train.images[0]).permute(1, 2, 0).numpy(), pixels.astype(np.float32) / 255)
    assert set(torch.unique(train.labels).tolist()) == {False, True}
    frac = (train.labels & train.masks).sum() / train.masks.sum()
    assert 0.12 < frac < 0.13  # DRIVE README: 12.5 % of FOV pixels are vessel


def test_stare_uses_vgan_split(stare_root):
    cfg = DataConfig(dataset="stare", root=str(stare_root))
    train, test = read_pool(cfg, "training"), read_pool(cfg, "test")
    assert train.ids[0] == "im0001" and train.ids[-1] == "im0139" and test.ids[0] == "im0162"
    assert len(train) == len(test) == 10
    assert test.images.shape[-2:] == (605, 700)


def test_a_folder_dataset_reads_as_the_dataset_it_holds(drive_root, tmp_path):
    """One's own images, labels and masks matched by name: DRIVE laid out so reads exactly as DRIVE."""
    root = folder_dataset(drive_root, tmp_path / "own", {"training": 20, "test": 3})
    own = read_pool(DataConfig(dataset="folder", root=str(root)), "training")
    drive = read_pool(DataConfig(dataset="drive", root=str(drive_root)), "training")
    assert own.ids == [f"eye{i}" for i in drive.ids]
    for field in ("images", "labels", "masks"):
        assert torch.equal(getattr(own, field), getattr(drive, field)), field
    assert load_split(DataConfig(dataset="folder", root=str(root)), "test").ids == ["eye01_test", "eye02_test",
                                                                                   "eye03_test"]


def test_a_folder_dataset_takes_labels_named_as_public_datasets_name_theirs(drive_root, tmp_path):
    """CHASE_DB1's first observer (`_1stHO`, its second's `_2ndHO` beside it) and STARE's `.ah`."""
    root = folder_dataset(drive_root, tmp_path / "own", {"training": 2})
    first, second = sorted((root / "training" / "labels").iterdir())
    first.rename(first.with_name(f"{first.stem}_1stHO.png"))
    (first.with_name(f"{first.stem}_2ndHO.png")).write_bytes(b"not read")
    second.rename(second.with_name(f"{second.stem}.ah.png"))
    own = read_pool(DataConfig(dataset="folder", root=str(root)), "training")
    drive = read_pool(DataConfig(dataset="drive", root=str(drive_root)), "training")
    assert torch.equal(own.labels, drive.labels[:2])


def test_a_folder_dataset_without_masks_has_its_fov_estimated(drive_root, tmp_path):
    root = folder_dataset(drive_root, tmp_path / "own", {"training": 4}, masks=False)
    own = read_pool(DataConfig(dataset="folder", root=str(root)), "training")
    truth = read_pool(DataConfig(dataset="drive", root=str(drive_root)), "training").masks[:4].bool()
    estimated = own.masks.bool()
    iou = (estimated & truth).sum((1, 2, 3)) / (estimated | truth).sum((1, 2, 3))
    assert iou.min() > 0.98, iou


def test_a_dataset_photograph_framed_white_is_read_with_the_frame_black(drive_root, tmp_path):
    """A folder dataset whose photographs an export framed white, without masks: each is read with its frame black
    (training, scoring and the registry see the camera's surround the generators learn), its FOV estimated as on
    DRIVE's own photograph; the note says so and is not taken for the orientation tag's (a label of the transposed
    size is refused without the hint about orientation tags)."""
    from vgan.images import FRAME_NOTE, read_binary

    root = folder_dataset(drive_root, tmp_path / "framed", {"training": 2, "test": 1}, masks=False)
    for link in sorted(root.glob("*/images/*.tif")):
        frame_white(drive_root, link)
    notes: list[str] = []
    photo = read_photograph(root / "test" / "images" / "eye01_test.png", notes)
    original = read_photograph(drive_root / "test" / "images" / "01_test.tif")
    inside = read_binary(drive_root / "test" / "mask" / "01_test_mask.gif")
    assert notes == [FRAME_NOTE] and photo.dtype == torch.uint8
    assert (photo[:, ~inside] <= 8).float().mean() > 0.99  # black, but for the rim's blend of frame and retina
    assert torch.equal(photo[:, torch.from_numpy(inside)], original[:, torch.from_numpy(inside)])
    split = load_split(DataConfig(dataset="folder", root=str(root), crop_size=None), "test")
    drive = load_split(DataConfig(dataset="drive", root=str(drive_root), crop_size=None), "test")
    est, truth = split.masks[0, 0], drive.masks[0, 0] & torch.from_numpy(inside)
    assert (est & truth).sum() / (est | truth).sum() > 0.98
    label = np.asarray(Image.open(root / "test" / "labels" / "eye01_test.png"))
    Image.fromarray(np.ascontiguousarray(label.T)).save(root / "test" / "labels" / "eye01_test.png")
    with pytest.raises(DataError, match="does not match its image") as refused:
        load_split(DataConfig(dataset="folder", root=str(root), crop_size=None), "test")
    assert "orientation tag" not in str(refused.value)
    unframed = torch.zeros(2, 3, 8, 8)
    batch, framed = without_frames(unframed)
    assert batch is unframed and framed == 0  # nothing copied where nothing is painted


def test_what_reading_converts_is_kept_with_the_images_it_was_done_to(drive_root, tmp_path):
    """A pool's conversions (a frame made black, an alpha channel dropped, 16-bit values scaled) are kept with the
    ids of their photographs through the split into train and val and a resize to one FOV, and said once, as
    vgan.train and tuner.run say them; 8-bit photographs as DRIVE publishes them are no conversion."""
    import tifffile

    from vgan.data import converted_note, converted_text
    from vgan.images import FRAME_NOTE
    from vgan.inputs import ALPHA_DROPPED

    root = folder_dataset(drive_root, tmp_path / "own", {"training": 5})
    images = root / "training" / "images"
    frame_white(drive_root, images / "eye21_training.tif")
    frame_white(drive_root, images / "eye22_training.tif")
    rgb = np.asarray(Image.open(images / "eye23_training.tif"))
    (images / "eye23_training.tif").unlink()
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(images / "eye23_training.png")
    (images / "eye24_training.tif").unlink()
    tifffile.imwrite(images / "eye24_training.tif", rgb.astype(np.uint16) * 257, photometric="rgb")
    sixteen = "16-bit values divided by 65535"

    for fov in (None, 540):  # resized to one FOV, they keep what was done to them
        train, val = load_train_val(DataConfig(dataset="folder", root=str(root), val_count=2, crop_size=None,
                                               fov_diameter=fov))
        assert val.ids == ["eye23_training", "eye25_training"]  # the split's seed puts these two in val
        assert train.converted == {FRAME_NOTE: ["eye21_training", "eye22_training"], sixteen: ["eye24_training"]}
        assert val.converted == {ALPHA_DROPPED: ["eye23_training"]}
    assert converted_note(train, val) == (
        f"photographs converted as read, as vgan.predict converts them: {FRAME_NOTE} (2 of 5: eye21_training, "
        f"eye22_training); {sixteen} (1 of 5: eye24_training); {ALPHA_DROPPED} (1 of 5: eye23_training)")
    assert converted_text({FRAME_NOTE: ["a", "b", "c", "d"]}, 9).endswith(f"{FRAME_NOTE} (4 of 9: a, b, c, ...)")
    drive_train, drive_val = load_train_val(DataConfig(dataset="drive", root=str(drive_root), crop_size=None))
    assert drive_train.converted == drive_val.converted == {} and converted_note(drive_train, drive_val) is None


def test_webp_and_jpeg_2000_photographs_in_a_folder_are_found_and_read(drive_root, tmp_path):
    """A folder of WebP (web exports) and JPEG 2000 files held "no images" before: their suffixes were not looked
    for."""
    rgb = np.asarray(Image.open(drive_root / "test" / "images" / "01_test.tif").convert("RGB"))
    Image.fromarray(rgb).save(tmp_path / "a.webp", lossless=True)
    Image.fromarray(rgb).save(tmp_path / "b.jp2", irreversible=False)  # lossless
    found = find_images([str(tmp_path)])
    assert [s.name for s in found] == ["a", "b"]
    for source in found:
        assert np.array_equal(read_photograph(source.path).permute(1, 2, 0).numpy(), rgb), source.path


@pytest.mark.parametrize("change, fragment", [
    (lambda r: (r / "training" / "labels" / "eye22_training.png").unlink(),
     r"labels: no vessel label for eye22_training\.tif \(expected e\.g\. eye22_training\.png or "
     r"eye22_training_label\.png\)"),
    (lambda r: (r / "training" / "labels" / "eye21_training.gif").write_bytes(b""),
     r"eye21_training\.gif and .*eye21_training\.png: two files named 'eye21_training'"),
    (lambda r: (r / "training" / "masks" / "eye23_training_mask.gif").unlink(),
     r"masks: no FOV mask for eye23_training\.tif"),
    (lambda r: shutil.rmtree(r / "training" / "labels"),
     r"training/labels: folder missing \(a folder dataset expects training/images, training/labels"),
    (lambda r: [p.unlink() for p in (r / "training" / "images").iterdir()], r"training/images: no images"),
    # photographs filed by patient: not the --recursive that vgan.predict takes, which vgan.train has not
    (lambda r: [(r / "training" / "images" / "p01").mkdir()] + [p.rename(r / "training" / "images" / "p01" / p.name)
                                                                 for p in (r / "training" / "images").glob("*.tif")],
     r"training/images: no images in this folder .*; its subfolders hold images \(p01/eye21_training first\): a "
     r"dataset's photographs are read from training/images itself, each with its label in training/labels: move "
     r"them up, out of the subfolders$"),
])
def test_a_folder_dataset_names_what_is_missing(drive_root, tmp_path, change, fragment):
    root = folder_dataset(drive_root, tmp_path / "own", {"training": 3})
    change(root)
    with pytest.raises(DataError, match=fragment):
        read_pool(DataConfig(dataset="folder", root=str(root)), "training")


def _redraw(path, how):
    """Rewrite a label PNG with `how` of its 0/255 pixels."""
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("L"))
    Image.fromarray(how(pixels)).save(path)


def test_a_label_drawn_in_colour_on_black_is_read_as_drawn(drive_root, tmp_path):
    """Annotation tools draw vessels in green or red on black: the label is its non-black pixels (it was its red
    channel: a green label read as no vessel at all, and the pool trained on without a word)."""
    root = folder_dataset(drive_root, tmp_path / "own", {"training": 2})
    want = read_pool(DataConfig(dataset="folder", root=str(root)), "training").labels
    green = lambda p: np.dstack([np.zeros_like(p), p, np.zeros_like(p)])  # noqa: E731
    _redraw(root / "training" / "labels" / "eye21_training.png", green)
    _redraw(root / "training" / "labels" / "eye22_training.png", lambda p: np.dstack([p, p // 2, p // 4, 255 + 0 * p]))
    assert torch.equal(read_pool(DataConfig(dataset="folder", root=str(root)), "training").labels, want)


@pytest.mark.parametrize("file, source, how, fragment", [
    ("labels/eye22_training.png", "1st_manual/22_manual1.gif", np.zeros_like,
     r"eye22_training\.png: a vessel label with no vessel drawn in it"),
    ("labels/eye22_training.png", "1st_manual/22_manual1.gif", lambda p: 255 - p,
     r"eye22_training\.png: a vessel label that is 91% vessel: drawn black on white\? Vessels are white"),
    ("masks/eye23_training_mask.gif", "mask/23_training_mask.gif", np.zeros_like,
     r"eye23_training_mask\.png: a FOV mask with no field of view in it"),
])
def test_a_label_or_mask_that_cannot_be_right_is_named(drive_root, tmp_path, file, source, how, fragment):
    root = folder_dataset(drive_root, tmp_path / "own", {"training": 3})
    (root / "training" / file).unlink()  # a PNG, or a link to the shared data: replaced, never written through
    with Image.open(drive_root / "training" / source) as im:
        Image.fromarray(how(np.asarray(im.convert("L")))).save((root / "training" / file).with_suffix(".png"))
    with pytest.raises(DataError, match=fragment):
        read_pool(DataConfig(dataset="folder", root=str(root)), "training")


def test_validation_is_carved_from_training_seeded(drive_root):
    cfg = DataConfig(dataset="drive", root=str(drive_root), val_count=4, split_seed=3)
    train, val = load_train_val(cfg)
    assert len(train) == 16 and len(val) == 4
    assert not set(train.ids) & set(val.ids)
    assert all(i.endswith("_training") for i in train.ids + val.ids)  # never a test image
    assert load_train_val(cfg)[1].ids == val.ids
    other = load_train_val(DataConfig(dataset="drive", root=str(drive_root), split_seed=4))[1]
    assert other.ids != val.ids


def test_kfold_covers_every_image_once():
    vals = []
    for fold in range(5):
        train, val = split_indices([str(i) for i in range(20)], DataConfig(folds=5, fold=fold))
        assert not set(train) & set(val) and len(train) + len(val) == 20
        vals.extend(val.tolist())
    assert sorted(vals) == list(range(20))


def test_normalisation_uses_training_fov_only(drive_root):
    train, val = load_train_val(DataConfig(dataset="drive", root=str(drive_root)))
    mean, std = normalization_stats(train)
    inside = train.masks[:, 0]
    for c in range(3):  # summed per image in float64: the split's FOV pixels taken at once agree
        pixels = unit_float(train.images[:, c])[inside]
        assert torch.allclose(mean[c], pixels.mean(), atol=1e-6) and torch.allclose(std[c], pixels.std(), atol=1e-6)
    assert not torch.allclose(mean, normalization_stats(val)[0], atol=1e-4)


def test_synthetic_is_deterministic_with_exact_labels():
    cfg = DataConfig(synthetic=SyntheticConfig(num_train=4, num_test=2, size=96, seed=5))
    a, b = synthetic_pool(cfg, "training"), synthetic_pool(cfg, "training")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert set(torch.unique(a.labels).tolist()) == {0.0, 1.0}
    assert (a.labels <= a.masks).all()  # vessels only inside the FOV
    frac = a.labels.sum() / a.masks.sum()
    assert 0.03 < frac < 0.3
    # vessels are darker than background in the green channel, like a fundus photograph
    g, lab, m = a.images[:, 1], a.labels[:, 0].bool(), a.masks[:, 0].bool()
    assert g[lab].mean() < g[m & ~lab].mean() - 0.05
    test = synthetic_pool(cfg, "test")
    assert len(test) == 2 and not torch.equal(test.images[0], a.images[0])


# ------------------------------------------------------------------ bad data: one clear message


def test_root_missing(tmp_path):
    with pytest.raises(DataError, match="nowhere: dataset root missing"):
        read_pool(DataConfig(dataset="drive", root=str(tmp_path / "nowhere")), "training")


def test_root_required_for_real_datasets():
    with pytest.raises(ConfigError, match="data.root is required"):
        read_pool(DataConfig(dataset="stare"), "training")


def test_layout_folder_missing(tmp_path):
    with pytest.raises(DataError, match="training/images: folder missing"):
        read_pool(DataConfig(dataset="drive", root=str(tmp_path)), "training")


def test_a_root_in_another_datasets_layout_is_named(drive_root, stare_root, tmp_path):
    """A config's dataset read from a root in another layout: the error says which layout the root is in and the
    data.dataset that reads it (before, only "folder missing", or a label DRIVE's reader looked for beside a folder
    dataset's `<name>_training.tif` "missing")."""
    own = folder_dataset(drive_root, tmp_path / "own", {"training": 2, "test": 1})
    cases = [("drive", own, r"own/training/1st_manual/eye21_manual1\.gif: file missing; .*own is in the folder "
                            r"layout of one's own dataset, which data\.dataset: folder reads \(here: drive\)$"),
             ("folder", drive_root, r"training/labels: folder missing \(.*\); .* is in DRIVE's layout, which "
                                    r"data\.dataset: drive reads \(here: folder\)$"),
             ("stare", drive_root, r"is in DRIVE's layout, which data\.dataset: drive reads \(here: stare\)$"),
             ("drive", stare_root, r"is in STARE's layout, which data\.dataset: stare reads \(here: drive\)$")]
    for dataset, root, message in cases:
        with pytest.raises(DataError, match=message):
            read_pool(DataConfig(dataset=dataset, root=str(root)), "training")
    assert [detect_dataset(r) for r in (own, drive_root, stare_root, tmp_path)] == ["folder", "drive", "stare", None]
    with pytest.raises(DataError, match=r"training/images: folder missing \([^)]*\)$"):  # no layout: nothing to add
        read_pool(DataConfig(dataset="drive", root=str(tmp_path)), "training")
    for pool in ("training", "test"):  # one's own photographs (images/, masks/) without labels yet: not DRIVE's
        shutil.rmtree(own / pool / "labels")
    with pytest.raises(DataError, match=r"training/labels: folder missing \(a folder dataset expects [^;]*$"):
        read_pool(DataConfig(dataset="folder", root=str(own)), "training")


def test_file_missing_is_named(drive_copy):
    (drive_copy / "training" / "1st_manual" / "33_manual1.gif").unlink()
    with pytest.raises(DataError, match=r"33_manual1\.gif: file missing"):
        load_train_val(DataConfig(dataset="drive", root=str(drive_copy)))


def test_truncated_image_is_named(drive_copy):
    link = drive_copy / "training" / "images" / "25_training.tif"
    data = copy_real(link)
    replace_file(link, data[: len(data) // 3])
    with pytest.raises(DataError, match=r"25_training\.tif: unreadable or truncated"):
        read_pool(DataConfig(dataset="drive", root=str(drive_copy)), "training")


def test_garbage_mask_is_named(drive_copy):
    replace_file(drive_copy / "test" / "mask" / "04_test_mask.gif", b"GIF89a not really")
    with pytest.raises(DataError, match=r"04_test_mask\.gif: unreadable or truncated"):
        load_split(DataConfig(dataset="drive", root=str(drive_copy)), "test")


def test_shape_mismatch_is_named(drive_copy, tmp_path):
    small = tmp_path / "small.gif"
    Image.fromarray(np.full((100, 80), 255, dtype=np.uint8)).save(small)  # a FOV, of another image's size
    replace_file(drive_copy / "training" / "mask" / "22_training_mask.gif", small.read_bytes())
    with pytest.raises(DataError, match=r"22_training_mask\.gif: size 100x80 does not match its image"):
        read_pool(DataConfig(dataset="drive", root=str(drive_copy)), "training")


def test_empty_split():
    with pytest.raises(DataError, match="leaves the training split empty"):
        split_indices([str(i) for i in range(20)], DataConfig(val_count=20))
    with pytest.raises(DataError, match="a fold would be empty"):
        split_indices(["a", "b", "c"], DataConfig(folds=4))


def test_crop_larger_than_images(drive_root):
    with pytest.raises(DataError, match="crop_size = 1024 is larger than the training images"):
        load_train_val(DataConfig(dataset="drive", root=str(drive_root), crop_size=1024))


def test_a_split_holds_images_as_uint8_or_float32_and_labels_as_bool():
    pixels = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    soft = torch.tensor([0.2, 0.5, 0.7, 1.0]).expand(1, 1, 4, 4)
    split = Split("s", ["a"], pixels, soft, torch.ones(1, 1, 4, 4))
    assert split.labels.dtype == split.masks.dtype == torch.bool  # floats are read as pixels above one half
    assert split.labels[0, 0, 0].tolist() == [False, False, True, True] and bool(split.masks.all())
    with pytest.raises(TypeError, match="split 's': images must be uint8 or float32, got torch.float64"):
        Split("s", ["a"], pixels.double(), soft, soft)


def test_a_pool_of_8_and_16_bit_photographs_is_held_as_floats(drive_root, tmp_path):
    import tifffile

    root = folder_dataset(drive_root, tmp_path / "own", {"training": 2})
    first = sorted((root / "training" / "images").iterdir())[0]
    rgb = np.asarray(Image.open(first).convert("RGB"))
    first.unlink()
    tifffile.imwrite(first.with_suffix(".tiff"), rgb.astype(np.uint16) * 257)
    pool = read_pool(DataConfig(dataset="folder", root=str(root)), "training")
    drive = read_pool(DataConfig(dataset="drive", root=str(drive_root)), "training").subset([0, 1], "training")
    assert pool.images.dtype == torch.float32 and drive.images.dtype == torch.uint8
    assert torch.allclose(pool.images, unit_float(drive.images), atol=1e-6)


def test_photographs_of_two_cameras_are_held_padded_each_at_its_own_size(drive_root, stare_root, tmp_path):
    from vgan.images import read_binary

    root = two_camera_dataset(drive_root, stare_root, tmp_path / "own", {"training": (3, 2)})
    cfg = DataConfig(dataset="folder", root=str(root), crop_size=None)
    pool = read_pool(cfg, "training")
    assert pool.ids == ["eye21_training", "eye22_training", "eye23_training", "im0001", "im0002"]
    assert pool.size == (605, 700) and pool.sizes == [(584, 565)] * 3 + [(605, 700)] * 2
    assert pool.size_groups() == [((584, 565), [0, 1, 2]), ((605, 700), [3, 4])]
    first = root / "training" / "images" / "eye21_training.tif"
    assert torch.equal(pool.own(0, pool.images[0]), read_photograph(first))
    assert torch.equal(pool.own(3, pool.masks[3, 0]), torch.from_numpy(read_binary(stare_root / "mask" /
                                                                                    "im0001.mask.ppm")))
    padding = torch.ones(605, 700, dtype=torch.bool)
    padding[:584, :565] = False
    assert not pool.images[0][:, padding].any() and not (pool.labels[0, 0] | pool.masks[0, 0])[padding].any()
    train, val = load_train_val(DataConfig(dataset="folder", root=str(root), val_count=2, split_seed=1))
    assert [len(s) for s in (train, val)] == [3, 2] and train.sizes and all(
        s.image_size(i) == pool.image_size(pool.ids.index(name)) for s in (train, val) for i, name in enumerate(s.ids))
    with pytest.raises(DataError, match=r"crop_size = 580 is larger than the smallest of the training images "
                                        r"\(584x565\)"):
        load_train_val(DataConfig(dataset="folder", root=str(root), crop_size=580))


def test_a_split_checks_its_sizes():
    pixels = torch.zeros(2, 3, 8, 10, dtype=torch.uint8)
    flags = torch.zeros(2, 1, 8, 10, dtype=torch.bool)
    assert Split("s", ["a", "b"], pixels, flags, flags, [(8, 10), (8, 10)]).sizes is None  # both fill it
    with pytest.raises(ValueError, match=r"split 's': sizes must give each of its 2 images an \(h, w\) within "
                                         r"the held 8x10"):
        Split("s", ["a", "b"], pixels, flags, flags, [(8, 10), (9, 4)])


def test_split_fingerprint_does_not_depend_on_how_images_are_held(drive_root):
    from vgan.data import split_fingerprint

    test = load_split(DataConfig(dataset="drive", root=str(drive_root)), "test")
    as_floats = Split(test.name, test.ids, unit_float(test.images), test.labels.float(), test.masks.float())
    assert test.images.dtype == torch.uint8 and split_fingerprint(test) == split_fingerprint(as_floats)


def test_split_fingerprint_tells_splits_apart():
    from vgan.data import split_fingerprint

    train, val = load_train_val(DataConfig())
    assert split_fingerprint(train, val) == split_fingerprint(*load_train_val(DataConfig()))
    assert split_fingerprint(train, val) != split_fingerprint(*load_train_val(DataConfig(split_seed=1)))


def test_a_two_camera_pool_is_brought_to_one_fov_diameter(drive_root, stare_root, tmp_path):
    from vgan.data import at_fov
    from vgan.scale import TOLERANCE, fov_diameter, mixed_scale_note

    root = two_camera_dataset(drive_root, stare_root, tmp_path / "own", {"training": (3, 2)})
    pool = read_pool(DataConfig(dataset="folder", root=str(root), crop_size=None), "training")
    before = [fov_diameter(pool.own(i, m)) for i, m in enumerate(pool.masks)]
    assert before[:3] == [536, 540, 541] and all(b > 541 * TOLERANCE for b in before[3:])  # STARE's camera: wider
    note = mixed_scale_note(pool.masks)
    assert note.startswith(f"the training photographs' FOVs are 536-{max(before):.0f} pixels across")
    assert note.endswith(f"data.fov_diameter: median (here {np.median(before):.0f}) trains them all at that one")

    at, factors = at_fov(pool, 540.0)
    assert at.ids == pool.ids and at.images.dtype == torch.uint8
    assert factors[:3] == [1.0] * 3 and factors[3:] == pytest.approx([540 / b for b in before[3:]])
    for i in range(3):  # DRIVE's, within the tolerance: untouched
        assert torch.equal(at.own(i, at.images[i]), pool.own(i, pool.images[i]))
        assert torch.equal(at.own(i, at.labels[i]), pool.own(i, pool.labels[i]))
    for i in (3, 4):
        h, w = pool.image_size(i)
        assert at.image_size(i) == (round(h * factors[i]), round(w * factors[i]))
        assert abs(fov_diameter(at.own(i, at.masks[i])) - 540) <= 2
        # the vessels are the same share of the FOV at the new scale (bar the thinnest, a pixel wide)
        share = [float(s.own(i, s.labels[i]).sum() / s.own(i, s.masks[i]).sum()) for s in (pool, at)]
        assert share[1] == pytest.approx(share[0], rel=0.15)
    assert mixed_scale_note(at.masks) is None

    train, val = load_train_val(DataConfig(dataset="folder", root=str(root), val_count=2, fov_diameter=540))
    assert sorted(train.ids + val.ids) == pool.ids
    assert all(abs(fov_diameter(s.own(i, m)) - 540) <= 5 for s in (train, val) for i, m in enumerate(s.masks))
    # median: the training split's (the validation photographs' are not looked at), every photograph brought to it
    cfg = DataConfig(dataset="folder", root=str(root), val_count=2, split_seed=7, fov_diameter="median")
    train_idx, _ = split_indices(pool.ids, cfg)
    median = np.median([before[i] for i in train_idx])
    assert median > 600 > np.median(before)  # the split holds two STARE photographs: not the pool's median (DRIVE's)
    train, val = load_train_val(cfg)
    assert all(abs(fov_diameter(s.own(i, m)) - median) <= 5 for s in (train, val) for i, m in enumerate(s.masks))


def test_a_fov_no_camera_gives_is_named_when_the_pool_is_brought_to_one_scale(drive_root, tmp_path):
    from vgan.data import at_fov
    from vgan.scale import ScaleError

    pool = read_pool(DataConfig(dataset="drive", root=str(drive_root)), "training").subset([0, 1], "training")
    with pytest.raises(DataError, match=r"training image 21_training: its field of view is 536 pixels across; "
                                         r"brought to 2500 it would be enlarged x4.7, more than x4 \(.*\): give it "
                                         r"a FOV mask or leave data.fov_diameter unset"):
        at_fov(pool, 2500.0)
    pool.masks[1, 0] = False  # a mask gone wrong: 100 pixels across in a 584 x 565 photograph
    pool.masks[1, 0, 200:300, 200:300] = True
    with pytest.raises(ScaleError, match=r"training image 22_training: its field of view is 100 pixels across in a "
                                         r"584-pixel image, too narrow for a fundus camera's: give it a FOV mask "
                                         r"or leave data.fov_diameter unset"):
        at_fov(pool, 540.0)


def test_a_sideways_phone_photograph_trains_against_the_label_drawn_on_it(drive_root, tmp_path):
    """A folder dataset's photograph stored sideways with an orientation tag lines up with its label (drawn on the
    photograph as shown); a label drawn on the stored pixels is refused with the reason."""
    root = folder_dataset(drive_root, tmp_path / "own", {"training": 2})
    photo = root / "training" / "images" / "eye21_training.tif"
    shown = np.asarray(Image.open(photo).convert("RGB"))
    photo.unlink()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter anticlockwise, shown turned back
    Image.fromarray(np.ascontiguousarray(np.rot90(shown))).save(photo.with_suffix(".png"), exif=exif)
    pool = read_pool(DataConfig(dataset="folder", root=str(root)), "training")
    i = pool.ids.index("eye21_training")
    assert np.array_equal(pool.images[i].permute(1, 2, 0).numpy(), shown)
    label = root / "training" / "labels" / "eye21_training.png"
    Image.fromarray(np.rot90(np.asarray(Image.open(label)))).save(label)
    with pytest.raises(DataError, match=r"eye21_training\.png: size 565x584 does not match its image .*\(584x565\); "
                                        r"the image is stored 565x584 with an orientation tag"):
        read_pool(DataConfig(dataset="folder", root=str(root)), "training")




def test_people_are_told_apart_by_the_eye_in_their_names_or_a_pattern(drive_root):
    """data.person: ids alike but for a last eye marker (L/R, OD/OS, left/right) are one person's where both are
    there; none, each image its own; a regular expression's first group, refused where it names no one. DRIVE's
    ids are each their own person, and its validation split is the one drawn before people were told apart."""
    ids = ["Image_01L", "Image_01R", "Image_02L", "P3_OD", "P3_OS", "scan-left", "scan-right", "21_training"]
    assert people(ids, "eyes") == [[0, 1], [2], [3, 4], [5, 6], [7]]
    assert people(ids, "none") == [[k] for k in range(8)]
    assert people(["P1_a", "P2_a", "P1_b"], "^(P[0-9]+)_") == [[0, 2], [1]]
    with pytest.raises(DataError, match=r"data.person '\^\(P\[0-9\]\+\)_' names no person in image 'x'"):
        people(["P1_a", "x"], "^(P[0-9]+)_")
    assert people(["P1_a", "x", "P1_b", "y"], "^(P[0-9]+)_", strict=False) == [[0, 2], [1], [3]]
    with pytest.raises(DataError, match=r"data.folds = 3 is more than the 4 training images of 2 people"):
        split_indices(["aL", "aR", "bL", "bR"], DataConfig(folds=3))
    train, val = load_train_val(DataConfig(dataset="drive", root=str(drive_root)))
    pool = sorted(train.ids + val.ids)
    assert val.ids == [pool[i] for i in sorted(np.random.default_rng(0).permutation(20)[:4])]


def test_the_same_photograph_file_under_two_names_is_said(drive_root, tmp_path):
    """A folder dataset made by hand with a training photograph copied into test under another name (its label
    too): the copy is named in both pools; one copied within the training pool, likewise; DRIVE has none."""
    from vgan.data import copies_note

    root = folder_dataset(drive_root, tmp_path / "own", {"training": 3, "test": 1}, masks=False)
    cfg = DataConfig(dataset="folder", root=str(root))
    assert copies_note(cfg) is None and copies_note(DataConfig(dataset="drive", root=str(drive_root))) is None
    for pool, name in (("test", "eye99_test"), ("training", "eye98_training")):
        shutil.copy(root / "training" / "images" / "eye21_training.tif", root / pool / "images" / f"{name}.tif")
        shutil.copy(root / "training" / "labels" / "eye21_training.png", root / pool / "labels" / f"{name}.png")
    assert copies_note(cfg) == (
        "the same photograph file under two names or more (1): eye21_training (training) and eye98_training "
        "(training) and eye99_test (test): a copy in training and test makes test scores of a photograph trained "
        "on, one twice in training may put a copy of a training photograph in validation; leave one copy out")
    assert copies_note(cfg, ("training",)).startswith("the same photograph file under two names or more (1): "
                                                      "eye21_training (training) and eye98_training (training): ")
