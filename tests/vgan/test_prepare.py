"""vgan.prepare on datasets laid out as CHASE_DB1 and HRF publish theirs (built from STARE's and DRIVE's files):
the split, the files placed, what training then reads, and the bad input refused with nothing written."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from vgan.config import DataConfig
from vgan.data import read_pool
from vgan.errors import DataError
from vgan.prepare import main


@pytest.fixture
def chase(stare_root, tmp_path):
    """STARE's 20 photographs as CHASE_DB1 publishes its own: one folder, `Image_NNL.jpg` / `Image_NNR.jpg` (two
    eyes a child), the first observer's `Image_NNL_1stHO.png`, the second's `_2ndHO.png` (here the same label
    thinned by one pixel, to tell them apart), no masks; halved, for speed."""
    folder = tmp_path / "CHASEDB1"
    folder.mkdir()
    ids = sorted(p.name.split(".")[0] for p in (stare_root / "images").glob("*.ppm"))
    for k, stare_id in enumerate(ids):
        name = f"Image_{k // 2 + 1:02d}{'LR'[k % 2]}"
        with Image.open(stare_root / "images" / f"{stare_id}.ppm") as im:
            im.convert("RGB").resize((350, 302)).save(folder / f"{name}.jpg", quality=92)
        with Image.open(stare_root / "labels-ah" / f"{stare_id}.ah.ppm") as lab:
            label = lab.convert("L").resize((350, 302), Image.NEAREST)
        label.save(folder / f"{name}_1stHO.png")
        second = np.asarray(label) > 127
        second[:, 1:] &= second[:, :-1]
        Image.fromarray((second * 255).astype(np.uint8)).save(folder / f"{name}_2ndHO.png")
    return folder


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_flat_folder_as_chase_db1_publishes_it_is_split_by_name_and_read_as_published(chase, tmp_path, capsys):
    out = tmp_path / "chase"
    assert main(["--images", str(chase), "--out", str(out), "--test", "8"]) == 0
    ids = [f"Image_{n:02d}{eye}" for n in range(1, 11) for eye in "LR"]
    assert names(out) == ["prepared.json", "test", "training"]
    assert names(out / "test" / "images") == [f"{i}.jpg" for i in ids[-8:]]
    assert names(out / "training" / "labels") == [f"{i}_1stHO.png" for i in ids[:12]]  # no second observer
    assert not (out / "training" / "masks").exists() and not (out / "test" / "masks").exists()
    # linked, not copied: the dataset takes no space twice
    assert os.path.samefile(out / "test" / "labels" / "Image_10R_1stHO.png", chase / "Image_10R_1stHO.png")
    record = json.loads((out / "prepared.json").read_text())
    assert record["training"] == ids[:12] and record["test"] == ids[-8:]
    assert record["source"] == {"images": str(chase), "labels": str(chase), "masks": None}
    assert record["person"] == "eyes"
    said = capsys.readouterr().out
    assert "12 training photographs, 8 test (Image_07L, Image_07R, Image_08L, ..., Image_10R)" in said
    assert "no FOV masks" in said and "40 files hard-linked" in said
    assert f"python -m vgan.train --config configs/folder.yaml --data {out}" in said
    assert "converted" not in said  # 8-bit RGB JPEGs: nothing to convert

    test = read_pool(DataConfig(dataset="folder", root=str(out)), "test")
    assert test.ids == ids[-8:] and test.images.shape == (8, 3, 302, 350)
    first = np.asarray(Image.open(chase / "Image_07L_1stHO.png")) > 127
    assert np.array_equal(test.labels[0, 0].numpy(), first), "the first observer's label, not the second's"


def test_folders_of_their_own_as_hrf_publishes_them_keep_their_masks(drive_root, tmp_path, capsys):
    """HRF's layout: images/, manual1/ (labels named as the photographs), mask/ (`<name>_mask`). Copied where the
    disk will not link (the shared data is another's: files not ours to link, or another disk). A photograph
    reading converts (here one saved with an alpha channel) is named, as training will convert it."""
    src = tmp_path / "HRF"
    for sub in ("images", "manual1", "mask"):
        (src / sub).mkdir(parents=True)
    drive = sorted((drive_root / "test" / "images").glob("*.tif"))[:4]
    for image in drive:
        number = image.stem.split("_")[0]
        (src / "images" / f"{number}_dr.tif").symlink_to(image)
        with Image.open(drive_root / "test" / "1st_manual" / f"{number}_manual1.gif") as label:
            label.convert("L").save(src / "manual1" / f"{number}_dr.tif")
        (src / "mask" / f"{number}_dr_mask.gif").symlink_to(drive_root / "test" / "mask" / f"{image.stem}_mask.gif")
    Image.open(drive[1]).convert("RGBA").save(src / "images" / "02_dr.png")
    (src / "images" / "02_dr.tif").unlink()
    out = tmp_path / "hrf"
    assert main(["--images", str(src / "images"), "--labels", str(src / "manual1"), "--masks", str(src / "mask"),
                 "--out", str(out), "--test-ids", " 01_dr, 03_dr"]) == 0
    assert names(out / "test" / "masks") == ["01_dr_mask.gif", "03_dr_mask.gif"]
    assert names(out / "training" / "labels") == ["02_dr.tif", "04_dr.tif"]
    said = capsys.readouterr().out
    assert "FOV masks from" in said
    assert ("\nnote: photographs converted as read, as vgan.predict converts them: alpha channel dropped (1 of 4: "
            "02_dr)\ntrain: ") in said
    training = read_pool(DataConfig(dataset="folder", root=str(out)), "training")
    truth = read_pool(DataConfig(dataset="drive", root=str(drive_root)), "test")
    assert training.ids == ["02_dr", "04_dr"]
    assert np.array_equal(training.masks.numpy(), truth.masks[[1, 3]].numpy()), "the dataset's masks, not estimates"
    assert np.array_equal(training.labels.numpy(), truth.labels[[1, 3]].numpy())


def test_masks_sharing_the_photographs_folder_are_taken_for_all_or_refused(chase, tmp_path, capsys):
    for photo in sorted(chase.glob("*.jpg")):
        with Image.open(photo) as im:
            mask = np.asarray(im.convert("L")) > 20
        Image.fromarray((mask * 255).astype(np.uint8)).save(chase / f"{photo.stem}_mask.png")
    out = tmp_path / "with-masks"
    assert main(["--images", str(chase), "--out", str(out), "--test", "2"]) == 0
    assert names(out / "test" / "masks") == ["Image_10L_mask.png", "Image_10R_mask.png"]
    (chase / "Image_03L_mask.png").unlink()
    assert main(["--images", str(chase), "--out", str(tmp_path / "partial"), "--test", "2"]) == 2
    assert (f"{chase}: 19 photographs have an FOV mask (Image_01L_mask.png first), Image_03L.jpg has none"
            in capsys.readouterr().err)
    assert not (tmp_path / "partial").exists()


@pytest.mark.parametrize("args, change, said", [
    (["--test", "20"], None, "--test 20: give 1 to 19 (20 photographs, at least one left to train on)"),
    (["--test", "0"], None, "--test 0: give 1 to 19"),
    (["--test-ids", "Image_01L,Image_99L"], None, "--test-ids: no photograph Image_99L (ids are file names without "
                                                  "their suffix: Image_01L, Image_01R, Image_02L, ...)"),
    (["--test", "8"], "no label", "CHASEDB1: no vessel label for Image_05R.jpg"),
    (["--test", "8"], "unreadable", "Image_05R_1stHO.png"),
    (["--test", "8"], "prepared", "holds training already (a dataset prepared before?)"),
    # a child's two eyes on both sides: the test scores would be of a child trained on
    (["--test", "7"], None, "--test 7 puts one person's images on both sides (by the eye in their names: Image_07L "
                            "(training) and Image_07R (test)): the test scores would be of people trained on; give "
                            "--test 6 or 8 (or --person none, to split image by image)"),
    (["--test-ids", "Image_01L,Image_02L,Image_02R"], None, "--test-ids puts one person's images on both sides (by "
     "the eye in their names: Image_01L (test) and Image_01R (training)): the test scores would be of people "
     "trained on; name each person's images all or none in --test-ids"),
    (["--test", "3", "--person", "^(Image_[0-9]+)"], None, "--test 3 puts one person's images on both sides (by "
     "--person '^(Image_[0-9]+)': Image_09L (training) and Image_09R (test))"),
    (["--test", "8", "--person", "Image"], None, "--person 'Image': give eyes, none or a regular expression whose "
     "first group is the person"),
])
def test_bad_input_is_named_and_nothing_is_written(chase, tmp_path, capsys, args, change, said):
    out = tmp_path / "out"
    if change == "no label":
        (chase / "Image_05R_1stHO.png").unlink()
    elif change == "unreadable":
        (chase / "Image_05R_1stHO.png").write_bytes(b"")
    elif change == "prepared":
        (out / "training").mkdir(parents=True)
    assert main(["--images", str(chase), "--out", str(out), *args]) == 2
    assert said in capsys.readouterr().err
    assert names(out) == ["training"] if change == "prepared" else not out.exists()
    assert len(names(chase)) == 60 - (change == "no label"), "the source as it was"


def test_a_dataset_root_not_split_says_how_to_split_it(chase, tmp_path):
    for root in (chase, tmp_path / "HRF"):
        if root != chase:
            (root / "images").mkdir(parents=True)
            shutil.copy(chase / "Image_01L.jpg", root / "images")
        with pytest.raises(DataError) as e:
            read_pool(DataConfig(dataset="folder", root=str(root)), "training")
        photos = chase if root == chase else root / "images"
        assert str(e.value).startswith(f"{root}/training/images: folder missing")
        assert (f"{photos} holds photographs, not split into training/ and test/: python -m vgan.prepare --images "
                f"{photos} --out NEW_ROOT --test N") in str(e.value)


def test_one_childs_two_eyes_stay_in_one_split(chase, tmp_path, capsys):
    """CHASE_DB1 holds two eyes a child: a validation split that held one eye of a child whose other eye trains
    would score the model on a child it trained on, and pick checkpoints and trials by it. Each child's eyes
    (named alike but for L and R) are one person's: validation holds whole children, as does each fold; with
    data.person: none it splits image by image, as before; a study says it before it begins, and names a child
    whose eyes a split made by hand (--person none) put on both sides of training and test."""
    from tuner.run import data_notes
    from vgan.data import load_train_val

    out = tmp_path / "chase"
    assert main(["--images", str(chase), "--out", str(out), "--test", "8"]) == 0
    child = {f"Image_{n:02d}{eye}": n for n in range(1, 7) for eye in "LR"}
    for seed in range(10):
        data = DataConfig(dataset="folder", root=str(out), val_count=3, split_seed=seed, crop_size=48)
        train, val = load_train_val(data)
        assert len(val) == 4 and len(train) == 8  # two whole children: 3 images asked, the third's pair with it
        assert not {child[i] for i in train.ids} & {child[i] for i in val.ids}
    folds = [load_train_val(DataConfig(dataset="folder", root=str(out), folds=3, fold=f, crop_size=48))[1].ids
             for f in range(3)]
    assert sorted(i for f in folds for i in f) == sorted(child) and all(len(f) == 4 for f in folds)
    assert all(len({child[i] for i in f}) == 2 for f in folds)
    alone = DataConfig(dataset="folder", root=str(out), val_count=3, person="none", crop_size=48)
    assert len(load_train_val(alone)[1]) == 3

    train, val = load_train_val(data)
    (note,) = [n for n in data_notes(data, train, val, ([f"Image_{n:02d}{e}" for n in range(7, 11) for e in "LR"], {}))
               if "people" in n]
    assert note.startswith("6 people with several images in the training pool (by the eye in their names: "
                           "Image_01L and Image_01R; Image_02L and Image_02R; ...) each kept in one split: the "
                           "validation split holds 4 images of 2 people (data.person: none splits image by image)")
    by_hand = tmp_path / "by-hand"
    assert main(["--images", str(chase), "--out", str(by_hand), "--test", "7", "--person", "none"]) == 0
    data = DataConfig(dataset="folder", root=str(by_hand), val_count=3, crop_size=48)
    train, val = load_train_val(data)
    test = ["Image_07R"] + [f"Image_{n:02d}{e}" for n in range(8, 11) for e in "LR"]
    notes = data_notes(data, train, val, (test, {}))
    assert ("1 of the test split's people has images in the training pool too (by the eye in their names: "
            "Image_07L and Image_07R): its scores are of people the models trained on, not of new ones; put each "
            "person's images on one side") in notes


def test_a_test_split_holding_a_trained_childs_other_eye_is_named_when_scored(chase, tmp_path, tiny_values, capsys):
    """A folder split by hand image by image (--person none) with child 7's left eye training and its right eye
    in test: vgan.train keeps the pool's children whole in its own split and says so, and vgan.evaluate of the
    test split says (and records) that one test child was trained on."""
    from conftest import write_yaml

    from vgan.evaluate import main as evaluate_main
    from vgan.train import main as train_main

    out = tmp_path / "by-hand"
    assert main(["--images", str(chase), "--out", str(out), "--test", "7", "--person", "none"]) == 0
    tiny_values["data"] = {"dataset": "folder", "val_count": 2, "crop_size": 32}
    run = tmp_path / "run"
    assert train_main(["--config", str(write_yaml(tmp_path / "own.yaml", tiny_values)), "--data", str(out),
                       "--out", str(run), "--quiet"]) == 0
    assert evaluate_main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--split", "test",
                          "--out", str(tmp_path / "eval"), "--previews", "0"]) == 0
    said = capsys.readouterr().out
    assert ("note: 6 people with several images in the training pool (by the eye in their names: Image_01L and "
            "Image_01R; Image_02L and Image_02R; ...) each kept in one split: the validation split holds 2 images of "
            "1 person") in said
    shared = ("1 of the test split's people has images in the training pool too (by the eye in their names: "
              "Image_07L and Image_07R): its scores are of people the models trained on")
    assert f"note: {shared}" in said
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["people_trained_on"].startswith(shared)


def test_a_second_observer_is_scored_from_the_folder_as_published(chase, tmp_path, capsys):
    """CHASE_DB1's folder holds each photograph, its first observer's label and its second's: `--observer` on it
    takes the second's (`_2ndHO`), not the photograph named by the id, for the prepared test split; here the
    second observer is the first's label thinned by a pixel, so F1 is high, not 1, and sensitivity below 1."""
    from vgan.evaluate import main as evaluate_main

    out = tmp_path / "chase"
    assert main(["--images", str(chase), "--out", str(out), "--test", "8"]) == 0
    assert evaluate_main(["--observer", str(chase), "--data", str(out), "--out", str(tmp_path / "human"),
                          "--previews", "0"]) == 0
    m = json.loads((tmp_path / "human" / "metrics.json").read_text())
    assert m["observer"] is True and m["n_images"] == 8
    assert 0.8 < m["f1"] < 1 and m["sensitivity"] < m["specificity"] == 1.0
    for folder, what in ((out / "test" / "images", "photograph"), (out / "test" / "labels", "label, the ground truth")):
        assert evaluate_main(["--observer", str(folder), "--data", str(out), "--out", str(tmp_path / "o")]) == 2
        found = next(folder.glob("Image_07L*"))
        assert capsys.readouterr().err == (f"vgan.evaluate: error: {found}: image Image_07L's own {what}, not another "
                                           "observer's label: give the folder of the other observer's labels\n")
    assert evaluate_main(["--observer", str(tmp_path), "--data", str(out), "--out", str(tmp_path / "o")]) == 2
    assert f"{tmp_path}: no label of another observer for image Image_07L (expected e.g. " in capsys.readouterr().err


def test_the_same_photograph_under_two_names_is_refused_across_the_split_and_said_within_it(chase, tmp_path, capsys):
    """A copy of a photograph under another name (with its label): one test, one training is refused (the test
    scores would be of a photograph trained on), nothing written; both in training is said (validation may hold a
    copy of a training photograph), and the dataset prepared."""
    for copied in ("Image_10R", "Image_01L"):
        shutil.copy(chase / f"{copied}.jpg", chase / "Image_00A.jpg")
        shutil.copy(chase / f"{copied}_1stHO.png", chase / "Image_00A_1stHO.png")
        out = tmp_path / copied
        code = main(["--images", str(chase), "--out", str(out), "--test", "8"])
        said = capsys.readouterr()
        if copied == "Image_10R":
            assert code == 2 and not out.exists()
            assert said.err == ("vgan.prepare: error: --test 8 puts the same photograph on both sides: Image_00A "
                                "(training) and Image_10R (test) hold the same pixels: the test scores would be of a "
                                "photograph trained on; leave one copy out of the folder\n")
        else:
            assert code == 0 and "13 training photographs, 8 test" in said.out
            assert ("note: the same photograph under two names or more (1): Image_00A (training) and Image_01L "
                    "(training): a validation split may hold a copy of a training photograph") in said.out
