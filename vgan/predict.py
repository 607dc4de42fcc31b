"""`python -m vgan.predict`: segment your own fundus photographs with a trained generator.

    python -m vgan.predict --checkpoint CKPT [CKPT ...] --input DIR_OR_FILES... [--recursive] --out DIR
                           [--continue] [--masks DIR] [--threshold T] [--scale auto|FACTOR] [--tta MODE]
                           [--device auto|cpu|cuda]

Every image (PNG, JPEG, TIFF, PPM/PGM, GIF, BMP, WebP, JPEG 2000, DICOM; any size; RGB, grey, palette or CMYK,
with or without alpha, 8 to 16 bits)
gets a 16-bit probability map `probabilities/<name>.png` and a binary map `binary/<name>.png`
of its own size, `overlay/<name>.jpg` (the map laid on the photograph), and a row in `report.csv` (its size,
FOV, scale, vessel fraction, what was converted, or why it failed); `index.html` shows the batch at a glance
(`vgan.report`). `--continue` keeps the maps an earlier run made that still stand (same file, same bytes, same
weights and settings), so a batch stopped half way goes on where it stopped. `--recursive` takes the images in
subfolders too (one folder per patient or visit): their maps go to the same subfolders
(`probabilities/<subfolder>/<name>.png`). Pixels outside the field of view are 0: the FOV mask comes from
`--masks DIR` (a file named after the image, in the image's subfolder: `<name>.png`, `<name>_mask.gif`,
`<name>.mask.ppm`, ...) or is estimated from the image (red-channel threshold and morphology) and written to `fov/`.
Each image is segmented at the scale the generator was trained at: resized so its FOV is as many
pixels across as its training photographs' (`--scale auto`, `vgan.scale`), or by a given factor.
`--tta flips` averages the maps of the image and its mirror images (`vgan.tta`: better maps, 4x the time).
Several checkpoints: each map is the mean of their maps (`vgan.ensemble`), each generator at its own scale.
A checkpoint may be an ONNX file `vgan.export` or `tuner.export` wrote: ONNX Runtime runs it on the CPU (whatever
`--device`), at the scale its metadata records.
An image that cannot be read is named at the end (exit status 2); the others are written.
`tuner.predict` does the same for a registered MLflow model (`segment_images` is shared).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from vgan.cli import check_threshold, exit_program, nonempty, run_cli, writable_folder
from vgan.config import DEVICES
from vgan.data import MASK_NAMES, find_named
from vgan.ensemble import Member, ensemble_map, member_factors
from vgan.errors import DataError
from vgan.images import (
    FRAME_NOTE,
    UPRIGHT_NOTE,
    Source,
    decode_image,
    estimate_fov,
    find_images,
    read_file,
    read_fov_mask,
    turned_hint,
    without_frames,
)
from vgan.inputs import EIGHT_BIT, LAYOUT_NOTES, InputError, as_batch
from vgan.report import (
    FAILED,
    INDEX,
    OUTPUTS,
    PICTURES,
    PROBABILITIES,
    REPORT,
    SEGMENTED,
    THUMBNAIL_PX,
    BatchReport,
    content_digest,
    earlier_rows,
    output_file,
    still_good,
    weights_digest,
)
from vgan.scale import AUTO, ScaleSpec, fov_diameter
from vgan.tta import DEFAULT as TTA_DEFAULT
from vgan.tta import TTA_MODES, VIEWS, with_tta


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments `vgan.predict` and `tuner.predict` share (each adds where its model comes from)."""
    p.add_argument("--input", type=nonempty, nargs="+", required=True, metavar="DIR_OR_FILE",
                   help="images, or folders of images")
    p.add_argument("--recursive", action="store_true",
                   help="take the images in the folders' subfolders too (at any depth), their maps under the same "
                        "subfolders of --out")
    p.add_argument("--out", type=nonempty, required=True,
                   help="output folder (probabilities/, binary/, fov/, overlay/, thumbnails/, report.csv, index.html)")
    p.add_argument("--continue", dest="continue_", action="store_true",
                   help="keep the maps an earlier run into --out made of the same files, the same bytes, with the same "
                        "model and settings (by its report.csv): a batch stopped half way goes on where it stopped")
    p.add_argument("--masks", type=nonempty,
                   help="folder of FOV masks named after the images (default: estimate each FOV)")
    p.add_argument("--threshold", type=float, default=0.5, help="binarisation threshold (default 0.5)")
    p.add_argument("--scale", default="auto", metavar="auto|FACTOR",
                   help="resize each image so its FOV matches the training photographs' (auto, the default), "
                        "or by FACTOR (1: as it is)")
    p.add_argument("--tta", choices=TTA_MODES, default=TTA_DEFAULT,
                   help="average the maps of mirrored views of each image: hflip (2 passes), flips (4), "
                        "dihedral (8); none, the default, takes each image once")
    p.add_argument("--device", choices=DEVICES, default="auto")


def images_of(args: argparse.Namespace) -> list[Source]:
    """The images `--input` names (`--recursive`: in subfolders too, leaving out maps written there)."""
    return find_images(args.input, args.recursive, skip=is_output)


def earlier_of(args: argparse.Namespace) -> dict[str, dict] | None:
    """With --continue, the rows of the report already in --out."""
    return earlier_rows(Path(args.out)) if args.continue_ else None


def read_mask(path: Path, shape: tuple[int, int], turned: bool = False) -> np.ndarray:
    """A FOV mask for an image of `shape` (`turned`: the image was turned upright by its orientation tag)."""
    mask = read_fov_mask(path)
    if mask.shape != shape:
        raise DataError(f"{path}: mask size {mask.shape[0]}x{mask.shape[1]} differs from its image "
                        f"({shape[0]}x{shape[1]}){turned_hint(turned, mask.shape, shape)}")
    return mask


@dataclass
class Summary:
    written: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "path (why)"
    conversions: dict[str, int] = field(default_factory=dict)  # what was converted, in how many images
    estimated_fov: int = 0
    factors: list[float] = field(default_factory=list)  # of the images resized to a model's scale (each member's)
    resized: int = 0  # images resized for a model
    kept: int = 0  # images whose earlier maps stand (--continue), not segmented again
    trained_fovs: list[float | None] = field(default_factory=list)  # each model's FOV diameter, where it records one
    scale: ScaleSpec = AUTO
    tta: str = TTA_DEFAULT
    vessel_fraction: list[float] = field(default_factory=list)  # inside the FOV, at the threshold
    seconds: float = 0.0

    def line(self, out: Path) -> str:
        n = len(self.written)
        text = f"{n} image(s) segmented in {self.seconds:.1f} s ({self.seconds / max(n, 1):.2f} s each) into {out}"
        if self.kept:
            text += f"; {self.kept} kept as an earlier run made them (--continue)"
        if n:
            text += (f"; FOV estimated for {self.estimated_fov}, "
                     f"mean vessel fraction {np.mean(self.vessel_fraction):.1%}")
        if self.conversions:
            text += "; converted: " + ", ".join(f"{k} ({v})" for k, v in self.conversions.items())
        known = sorted({round(f) for f in self.trained_fovs if f is not None})
        if self.factors:
            whose = "the model's FOV" if len(self.trained_fovs) == 1 else "the models' FOVs"
            to = f"to {whose} of {'/'.join(map(str, known))} px" if self.scale.factor is None else "by --scale"
            text += f"; resized {to}: {self.resized} (x{min(self.factors):.3g}-x{max(self.factors):.3g})"
        elif n and self.scale.factor is None and not known:
            text += "; used at their own size: the model records no training scale (--scale sets a factor)"
        if n and self.tta != TTA_DEFAULT:
            text += f"; each map the mean of {len(VIEWS[self.tta])} mirrored views (--tta {self.tta})"
        if n and len(self.trained_fovs) > 1:
            text += f"; each map the mean of {len(self.trained_fovs)} generators' maps"
        return text


def is_output(folder: Path) -> bool:
    """A folder of maps this command wrote (one of OUTPUTS beside probabilities/ and binary/): never read as
    input, when --out lies in the photographs' folder tree, this run's or an earlier one's."""
    return folder.name in OUTPUTS and all((folder.parent / sub).is_dir() for sub in OUTPUTS[:2])


def check_masks(masks: Path | None) -> None:
    if masks is not None and not masks.is_dir():
        raise DataError(f"{masks}: masks folder missing")


@torch.no_grad()
def segment_images(members: Sequence[Member], sources: Sequence[Source], out: Path, threshold: float = 0.5,
                   masks: Path | None = None, device: torch.device = torch.device("cpu"),
                   progress: bool = True, tta: str = TTA_DEFAULT, title: str = "Vessel maps",
                   earlier: dict[str, dict] | None = None) -> Summary:
    """Write every image's probability and binary maps, its overlay (and its estimated FOV) under `out` by its
    name (`Source`: subfolders are mirrored, and looked for under `masks`), a row per image in `out/report.csv`
    as each is done and, at the end, `out/index.html` titled `title` (`vgan.report`); unreadable images are
    collected in the summary, the rest written. Each map is the mean of the members' maps (one member: its
    own), each member at its scale (`vgan.ensemble`); `tta`: the views each averages (`vgan.tta`). `earlier`: an
    earlier run's rows (`vgan.report.earlier_rows`): an image whose row still stands (the same file, the same bytes,
    the same weights and settings, its maps there) keeps it and its maps, and is not segmented again."""
    from tqdm import tqdm

    check_masks(masks)
    for sub in OUTPUTS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    s = Summary(trained_fovs=[m.trained_fov for m in members], scale=members[0].scale, tta=tta)
    t0 = time.perf_counter()
    model = weights_digest([m.model for m in members])
    scale = members[0].scale
    # the maps' depth too: a batch continued keeps no 8-bit map an older version wrote beside new 16-bit ones
    runtimes = sorted({getattr(m.model, "runtime", "pytorch") for m in members})
    settings = (f"threshold {threshold:g}; scale {'auto' if scale.factor is None else f'{scale.factor:g}'}; "
                f"tta {tta}; masks {masks if masks is not None else 'estimated'}; maps 16-bit"
                # the same weights through another runtime give maps a few 1e-5 apart: a batch continued keeps
                # only maps of its own runtime (a PyTorch batch's settings read as before it was said)
                + ("" if runtimes == ["pytorch"] else f"; runtime {'+'.join(runtimes)}"))
    members = [replace(m, model=with_tta(m.model, tta)) for m in members]
    earlier = earlier or {}
    with BatchReport(out, title) as report, said_on_ctrl_c(report, len(sources)):
        for source in tqdm(sources, desc="segmenting", unit="image", disable=not progress or None, leave=False):
            row = {"name": source.name, "input": str(source.path), "model": model, "settings": settings}
            try:
                data = read_file(source.path)  # once: for its digest and, unless its maps stand, its pixels
                row["input_digest"] = content_digest(data)
                old = earlier.get(source.name)
                if still_good(old, out, source.path, row["input_digest"], model, settings):
                    report.add(old)
                    s.kept += 1
                    s.vessel_fraction.append(float(old["vessel_fraction"]))
                    continue
                _segment_one(members, source, data, out, threshold, masks, device, s, row)
                row["status"] = SEGMENTED
            except (DataError, InputError) as e:
                s.failed.append(str(e))
                row.update(status=FAILED, error=str(e))
            report.add(row)
        s.seconds = time.perf_counter() - t0
    return s


@contextmanager
def said_on_ctrl_c(report: BatchReport, total: int) -> Iterator[None]:
    """Ctrl-C during a batch: what it keeps and how to go on."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"\ninterrupted after {len(report.rows)} of {total} image(s): their maps and report.csv rows are kept; "
              "the same command with --continue does the rest", file=sys.stderr, flush=True)
        raise


def _segment_one(members: Sequence[Member], source: Source, data: bytes, out: Path, threshold: float,
                 masks: Path | None, device: torch.device, s: Summary, row: dict) -> None:
    from PIL import Image

    from vgan.visualize import save_map, save_mask, vessel_overlay

    path, name = source.path, source.name
    notes: list[str] = []
    batch, converted = as_batch(decode_image(data, str(path), notes), str(path))
    notes += converted
    row.update(height=batch.shape[2], width=batch.shape[3])
    rgb = batch[0].permute(1, 2, 0).numpy()  # the photograph as it is, for the overlay
    batch, framed = without_frames(batch)  # the generator and the FOV estimate meet a frame black, as a surround
    if framed:
        notes.append(FRAME_NOTE)
    if masks is not None:
        mask_path = find_named(masks / Path(name).parent, path, MASK_NAMES, "FOV mask")
        fov = read_mask(mask_path, rgb.shape[:2], UPRIGHT_NOTE in notes)
        row["fov"] = str(mask_path)
    else:
        fov = estimate_fov(batch[0].permute(1, 2, 0).numpy())
        row["fov"] = "estimated"
    row["fov_diameter_px"] = round(fov_diameter(fov), 1)
    outputs = {sub: out / output_file(sub, name) for sub in OUTPUTS}
    if masks is None:  # written before the FOV is judged: a FOV refused below is there to be seen
        s.estimated_fov += 1
        outputs["fov"].parent.mkdir(parents=True, exist_ok=True)
        save_mask(outputs["fov"], fov)
    factors = member_factors(members, fov, str(path))
    row["factors"] = " ".join(f"{f:.4g}" for f in factors)
    prob = ensemble_map(members, batch.to(device), factors).cpu().numpy()[0, 0] * fov
    s.factors.extend(f for f in factors if f != 1)
    s.resized += any(f != 1 for f in factors)
    for sub in (PROBABILITIES, "binary", *PICTURES):
        outputs[sub].parent.mkdir(parents=True, exist_ok=True)
    save_map(outputs[PROBABILITIES], prob)
    save_mask(outputs["binary"], prob >= threshold)
    overlay = Image.fromarray(vessel_overlay(rgb, prob, fov))
    overlay.save(outputs["overlay"], quality=90)
    overlay.thumbnail((2 * THUMBNAIL_PX, 2 * THUMBNAIL_PX * overlay.height // overlay.width + 1), Image.LANCZOS)
    overlay.save(outputs["thumbnails"], quality=85)
    s.written.append(name)
    fraction = float((prob[fov] >= threshold).mean()) if fov.any() else 0.0
    s.vessel_fraction.append(fraction)
    row["vessel_fraction"] = round(fraction, 4)
    kept = [note for note in notes if note not in LAYOUT_NOTES]  # every image file is one (H, W, C) picture
    row["converted"] = "; ".join(note for note in kept if note != EIGHT_BIT)
    for note in kept:
        s.conversions[note] = s.conversions.get(note, 0) + 1


def finish(summary: Summary, out: Path, prog: str) -> None:
    """The summary line; images that could not be read make the exit status 2 (the others stay)."""
    print(f"{prog}: {summary.line(out)}; the batch at a glance in {out / INDEX}, a row per image in {REPORT}")
    if summary.failed:
        raise DataError(f"{len(summary.failed)} of {len(summary.failed) + len(summary.written)} image(s) not "
                        f"segmented (the others are in {out}): " + "; ".join(summary.failed))


def _main(argv: Sequence[str] | None) -> None:
    from vgan.export import OnnxSegmenter, is_onnx, require_onnx
    from vgan.models import VesselSegmenter
    from vgan.trainer import generator_from_checkpoint, load_checkpoint, resolve_device

    p = argparse.ArgumentParser(prog="python -m vgan.predict", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--checkpoint", type=nonempty, required=True, nargs="+", metavar="CKPT",
                   help="checkpoint written by vgan.train (best.pt, last.pt), or an ONNX file vgan.export or "
                        "tuner.export wrote (run by ONNX Runtime on the CPU); several: each map the mean of "
                        "theirs (an ensemble)")
    add_arguments(p)
    args = p.parse_args(argv)
    check_threshold(args.threshold)
    scale = ScaleSpec.parse(args.scale)
    sources = images_of(args)
    writable_folder(Path(args.out), "--out")
    device = resolve_device(args.device, "--device")
    members = []
    for path in args.checkpoint:
        if is_onnx(path):
            require_onnx()
            exported = OnnxSegmenter(Path(path))
            members.append(Member(exported, exported.trained_fov, scale))
            continue
        generator, _ = generator_from_checkpoint(load_checkpoint(path), path, device)
        members.append(Member(VesselSegmenter(generator).eval(), generator.trained_fov, scale))
    summary = segment_images(members, sources, Path(args.out), args.threshold,
                             Path(args.masks) if args.masks else None, device, sys.stderr.isatty(), args.tta,
                             f"Vessel maps by {', '.join(args.checkpoint)}", earlier_of(args))
    finish(summary, Path(args.out), "vgan.predict")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, "vgan.predict")


if __name__ == "__main__":
    exit_program(main())
