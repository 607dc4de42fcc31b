"""An annotated dataset as it is published, put into the folder layout training reads (`vgan.data`, dataset
`folder`): `OUT/training/{images,labels,masks}` and the same under `OUT/test/`, the test photographs put aside.

    python -m vgan.prepare --images CHASEDB1 --out data/chase --test 8
    python -m vgan.prepare --images HRF/images --labels HRF/manual1 --masks HRF/mask --out data/hrf --test 15

Photographs, labels and masks may share one folder (CHASE_DB1: `Image_01L.jpg`, `Image_01L_1stHO.png`,
`Image_01L_2ndHO.png`): there a file named after another as an annotation is named (`_1stHO`, `_mask`, a second
observer's `_2ndHO`) is that photograph's, not a photograph. Or each kind has its folder (HRF: `images/`,
`manual1/`, `mask/`). A label or mask is found by the names `vgan.data` matches; a second observer's is left out
(the literature scores the first). Without `--masks`, masks sharing the photographs' folder are taken if every
photograph has one; with none, the FOV is estimated from each photograph when it is read.

`--test N` puts aside the last N photographs by name (CHASE_DB1's split in the literature: the last 8, children 11
to 14), `--test-ids` the ones named; one person's photographs are kept on one side (`--person`, as training's
`data.person`: by default the eye marker in a name, Image_01L and Image_01R), a split that would part them refused,
as is one that puts the same photograph (the same pixels under two names) on both sides.
Every photograph, label and mask is read and checked as training reads it before anything is written; files are
hard-linked where the disk allows (no space taken, nothing to go stale; a label edited in place is edited in both),
else copied; `OUT/prepared.json` records the source and the split. An `--out` that holds `training/` or `test/`
already is refused: a split is made once, not mixed with another.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from vgan.cli import exit_program, nonempty, run_cli, writable_folder
from vgan.config import PERSON_EYES, PERSON_NONE, person_pattern
from vgan.data import (
    LABEL_NAMES,
    MASK_NAMES,
    OTHER_OBSERVERS,
    Item,
    converted_text,
    find_named,
    people,
    read_item,
    shown_copies,
    told_apart,
)
from vgan.errors import ConfigError, DataError
from vgan.images import Source, find_images

POOLS = ("training", "test")
RECORD = "prepared.json"


@dataclass(frozen=True)
class Sources:
    """Where the photographs and their annotations are (`labels`, `masks`: the photographs' folder where shared;
    `masks` None: none given)."""

    images: Path
    labels: Path
    masks: Path | None

    def shares(self, folder: Path | None) -> bool:
        return folder is not None and folder.resolve() == self.images.resolve()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vgan.prepare", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--images", type=nonempty, required=True, metavar="DIR",
                   help="the photographs' folder (with their labels and masks, where they share it)")
    p.add_argument("--labels", type=nonempty, metavar="DIR", help="the vessel labels' folder (default: --images)")
    p.add_argument("--masks", type=nonempty, metavar="DIR",
                   help="the FOV masks' folder (default: those in --images, if every photograph has one)")
    p.add_argument("--out", type=nonempty, required=True, metavar="DIR", help="the dataset root to write")
    split = p.add_mutually_exclusive_group(required=True)
    split.add_argument("--test", type=int, metavar="N", help="put aside the last N photographs by name")
    split.add_argument("--test-ids", metavar="ID,ID,...", help="put aside the photographs named (ids: file names "
                       "without their suffix)")
    p.add_argument("--person", default=PERSON_EYES, metavar="eyes|none|REGEX",
                   help="whose each photograph is, so no person is on both sides: eyes (the default: names alike "
                        "but for a last eye marker, Image_01L and Image_01R, are one person's), none, or a regular "
                        "expression whose first group is the person in a name; training's data.person, likewise")
    return p


def annotations(names: set[str]) -> set[str]:
    """The names (stems) the labels, masks and second observers' labels of photographs so named would have."""
    patterns = [n for n in (*LABEL_NAMES, *MASK_NAMES, *OTHER_OBSERVERS) if n != "{}"]
    return {pattern.format(name) for name in names for pattern in patterns}


def photographs(src: Sources) -> list[Source]:
    """The images of the photographs' folder, less those named as another's annotation (a label, mask or second
    observer's label sharing the folder)."""
    found = find_images([str(src.images)], nested="a dataset's photographs are read from the folder itself: give "
                        "the folder that holds them as --images")
    others = annotations({s.name for s in found})
    found = [s for s in found if s.name not in others]
    if not found:
        raise DataError(f"{src.images}: only annotations (labels, masks), no photograph")
    return found


def items(src: Sources, photos: list[Source]) -> list[Item]:
    """Each photograph with its label and mask; masks for all or none (a folder dataset has a masks/ or not)."""
    def named(folder: Path, names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(n for n in names if n != "{}") if src.shares(folder) else names

    labels = [find_named(src.labels, s.path, named(src.labels, LABEL_NAMES), "vessel label") for s in photos]
    if src.masks is not None:
        masks = [find_named(src.masks, s.path, named(src.masks, MASK_NAMES), "FOV mask") for s in photos]
    else:  # masks in the photographs' folder, if it holds any
        masks = []
        for s in photos:
            try:
                masks.append(find_named(src.images, s.path, named(src.images, MASK_NAMES), "FOV mask"))
            except DataError:
                masks.append(None)
        held = [m for m in masks if m is not None]
        if held and len(held) < len(masks):
            first = photos[masks.index(None)]
            raise DataError(f"{src.images}: {len(held)} photographs have an FOV mask ({held[0].name} first), "
                            f"{first.path.name} has none: give every one its mask, or remove them (then the FOV "
                            f"is estimated from each photograph)")
    return [Item(s.name, s.path, label, mask) for s, label, mask in zip(photos, labels, masks, strict=True)]


def test_ids(args: argparse.Namespace, ids: list[str]) -> list[str]:
    """The ids put aside for the test split, in the photographs' order."""
    if args.test is not None:
        if not 1 <= args.test < len(ids):
            raise ConfigError(f"--test {args.test}: give 1 to {len(ids) - 1} ({len(ids)} photographs, at least one "
                              f"left to train on)")
        return ids[-args.test:]
    asked = [t.strip() for t in args.test_ids.split(",") if t.strip()]
    unknown = [t for t in asked if t not in ids]
    if unknown:
        raise ConfigError(f"--test-ids: no photograph {', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''} "
                          f"(ids are file names without their suffix: {', '.join(ids[:3])}, ...)")
    if not asked or len(set(asked)) == len(ids):
        raise ConfigError(f"--test-ids: {len(set(asked))} of {len(ids)} photographs: leave at least one to train on "
                          "and put aside at least one")
    return [i for i in ids if i in set(asked)]


def check_people(args: argparse.Namespace, ids: list[str], aside: set[str]) -> None:
    """No person (`vgan.data.people`, by --person) on both sides of the split: the test scores would be of people
    trained on. Refused naming a person's images on each side, and what would keep them together."""
    groups = people(ids, args.person)
    split = [g for g in groups if len({ids[i] in aside for i in g}) > 1]
    if not split:
        return
    side = {True: "test", False: "training"}
    shown = " and ".join(f"{ids[i]} ({side[ids[i] in aside]})" for i in split[0])
    if args.test is not None:  # the counts of last photographs that keep every person whole
        whole = [n for n in range(1, len(ids)) if not any(min(g) < len(ids) - n <= max(g) for g in groups)]
        near = sorted(whole, key=lambda n: (abs(n - args.test), n))[:2]
        fix = f"give --test {' or '.join(str(n) for n in sorted(near))}" if near else "give --test-ids"
        option = f"--test {args.test}"
    else:
        fix, option = "name each person's images all or none in --test-ids", "--test-ids"
    raise ConfigError(f"{option} puts one person's images on both sides ({told_apart(args.person, '--person')}: {shown}"
                      f"{f'; and {len(split) - 1} more' if len(split) > 1 else ''}): the test scores would be of "
                      f"people trained on; {fix} (or --person none, to split image by image)")


def check_copies(args: argparse.Namespace, copies: list[list[str]], aside: set[str]) -> None:
    """The same photograph (the same pixels) under two names: on both sides of the split it is refused, as the
    test scores would be of a photograph trained on; on one side it is said, as a validation split may then hold
    a copy of a training photograph."""
    sided = [[(i, "test" if i in aside else "training") for i in ids] for ids in copies]
    for names in sided:
        if len({side for _, side in names}) > 1:
            option = f"--test {args.test}" if args.test is not None else "--test-ids"
            raise ConfigError(f"{option} puts the same photograph on both sides: {shown_copies([names])} hold the "
                              "same pixels: the test scores would be of a photograph trained on; leave one copy out "
                              "of the folder")
    if copies:
        print(f"note: the same photograph under two names or more ({len(copies)}): {shown_copies(sided)}: a "
              "validation split may hold a copy of a training photograph; leave one copy out of the folder")


def place(source: Path, dest: Path) -> bool:
    """`source` at `dest`: hard-linked, else (another disk, a filesystem without links) copied; True if linked."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
        return True
    except OSError:
        shutil.copy2(source, dest)
        return False


def write(out: Path, pools: dict[str, list[Item]], record: dict) -> int:
    """The pools under `out`, made in a scratch folder there and moved in whole: an error or a full disk leaves no
    half-written dataset. Returns how many files were hard-linked."""
    linked = 0
    with tempfile.TemporaryDirectory(dir=out, prefix=".vgan-prepare-") as scratch:
        for pool, its in pools.items():
            for it in its:
                for kind, path in (("images", it.image), ("labels", it.label), ("masks", it.mask)):
                    if path is not None:
                        linked += place(path, Path(scratch, pool, kind, path.name))
        Path(scratch, RECORD).write_text(json.dumps(record, indent=2) + "\n")
        for name in (*POOLS, RECORD):
            os.replace(Path(scratch, name), out / name)
    return linked


def _main(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    if args.person not in (PERSON_EYES, PERSON_NONE) and person_pattern(args.person) is None:
        raise ConfigError(f"--person {args.person!r}: give eyes, none or a regular expression whose first group is "
                          "the person in a photograph's name")
    images = Path(args.images).expanduser()
    src = Sources(images, Path(args.labels).expanduser() if args.labels else images,
                  Path(args.masks).expanduser() if args.masks else None)
    for option, folder in (("--images", src.images), ("--labels", src.labels), ("--masks", src.masks)):
        if folder is not None and not folder.is_dir():
            raise DataError(f"{option} {folder}: no such folder")
    out = Path(args.out).expanduser()
    held = [p for p in (*POOLS, RECORD) if (out / p).exists()]
    if held:
        raise ConfigError(f"--out {out}: holds {held[0]} already (a dataset prepared before?): give a new or empty "
                          "folder, a split is made once")
    photos = photographs(src)
    its = items(src, photos)
    aside = set(test_ids(args, [s.name for s in photos]))
    check_people(args, [s.name for s in photos], aside)
    converted: dict[str, list[str]] = {}
    same: dict[str, list[str]] = {}  # the photographs' pixels (their digest) -> the ids holding them
    for it in its:  # read and checked as training reads them, before anything is written (no FOV estimated)
        img = read_item(it, converted)[0]
        digest = hashlib.sha256(f"{tuple(img.shape)} {img.dtype}".encode() + img.numpy().tobytes()).hexdigest()
        same.setdefault(digest, []).append(it.id)
    copies = [ids for ids in same.values() if len(ids) > 1]
    check_copies(args, copies, aside)
    writable_folder(out, "--out")
    pools = {"training": [it for it in its if it.id not in aside], "test": [it for it in its if it.id in aside]}
    masks = its[0].mask is not None
    record = {"source": {"images": str(src.images.resolve()), "labels": str(src.labels.resolve()),
                         "masks": str(its[0].mask.parent.resolve()) if masks else None},
              "command": " ".join(["python -m vgan.prepare", *(argv if argv is not None else sys.argv[1:])]),
              "person": args.person,  # how people were told apart, so none is on both sides
              **{pool: [it.id for it in pools[pool]] for pool in POOLS}}
    files = len(its) * (2 + masks)
    linked = write(out, pools, record)
    test = pools["test"]
    shown = ", ".join(it.id for it in test[:3]) + (f", ..., {test[-1].id}" if len(test) > 3 else "")
    how = "hard-linked" if linked == files else "copied" if not linked else f"{linked} hard-linked, the rest copied"
    print(f"prepared {out}: {len(pools['training'])} training photographs, {len(test)} test ({shown}); "
          f"labels as {its[0].label.name}; "
          + ("FOV masks from " + str(its[0].mask.parent) if masks else "no FOV masks: the FOV is estimated from each "
             "photograph when it is read") + f"; {files} files {how}")
    said = converted_text(converted, len(its))
    if said:  # the files are linked as they are: what reading will convert, training and scoring will say again
        print(f"note: {said}")
    print(f"train: python -m vgan.train --config configs/folder.yaml --data {out} --out runs/{out.name}\n"
          f"search: copy a space of search_spaces/, set data.dataset: folder, then python -m tuner.run --space "
          f"SPACE --data {out}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, "vgan.prepare")


if __name__ == "__main__":
    exit_program(main())
