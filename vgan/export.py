"""`python -m vgan.export`: a trained generator as one ONNX file, for runtimes outside Python and PyTorch.

    python -m vgan.export --checkpoint CKPT [CKPT ...] --out generator.onnx [--opset N]
                          [--quantize int8 --calibration PHOTOS ...]

The file holds what the MLflow model's program holds (`vgan.models.VesselSegmenter`): input `image`, float32
(N, 3, H, W), RGB in [0, 1], any batch, height and width; output `probability`, float32 (N, 1, H, W), each
pixel's vessel probability. The padding to the U-Net's multiple of 2**depth is in the graph. Left to the caller,
as `mlflow.pytorch.load_model`'s program leaves them: dividing 8-bit values by 255 (ONNX has no assertion, so
0..255 values are not refused: they give a map of nonsense), resizing a photograph from another camera so its
FOV is as wide as the training photographs' (the file's metadata `trained_fov_diameter_px`), the FOV mask and
mirrored views (`vgan.predict` and `tuner.predict` do those; `vgan.predict --checkpoint FILE.onnx` runs the file
itself, `OnnxSegmenter`). Several checkpoints: one graph of the mean of their maps.

`--quantize int8 --calibration PHOTOS...`: the convolutions' weights and inputs in 8 bits (ONNX Runtime's static
quantization, QDQ, per channel), their ranges taken from the calibration photographs as vgan.predict would give them
to it (FOV brought to the training one): faster on CPUs, not quite the same map. The float graph is checked first;
the quantized one's maps of those photographs are set beside PyTorch's, and the file says how far apart
(`int8_drift`); the CPU recipe's generators lost 0.0003-0.0012 of AUC-ROC on DRIVE and STARE (docs/predict.md).
Give photographs of the camera it will see, not the test split's.

Each file is checked before it is put in place: ONNX Runtime runs it on images of sizes no export traced, and
its maps must be PyTorch's to `TOLERANCE`; the file is written whole or not at all (an earlier one at --out
stays until then). Needs the `onnx` extra: pip install "vgan-tune[onnx]" (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from vgan import __version__
from vgan.cli import exit_program, nonempty, run_cli, writable_file
from vgan.errors import BadInputError, VganError

if TYPE_CHECKING:  # torch is imported where an export needs it: --help and bad options answer at once
    import torch

INPUT, OUTPUT = "image", "probability"
# the largest difference from PyTorch's probabilities a file may show: measured 6e-8 to 2e-6 on the check's images,
# up to 3e-5 on DRIVE's and STARE's photographs (the CPU recipe's generators, benchmarks.onnx_runtime)
TOLERANCE = 1e-4
PACKAGES = ("onnx", "onnxscript", "onnxruntime")
# torch.onnx writes its graphs at 18 or later: asked for an earlier opset it converts them, and where an op has no
# adapter (Pad, to 17) it logs a traceback and keeps 18
OPSET_MIN = 18
FOV_KEY = "trained_fov_diameter_px"  # as the MLflow model's metadata names it
INPUT_TEXT = "float32 (N, 3, H, W), RGB in [0, 1] (8-bit values divided by 255), any N, H and W"
OUTPUT_TEXT = "float32 (N, 1, H, W), each pixel's vessel probability"


class ExportError(VganError):
    """A graph ONNX Runtime runs otherwise than PyTorch, or one the exporter cannot write (exit 1)."""


@dataclass
class Exported:
    path: Path
    bytes: int
    opset: int
    difference: float  # the largest |ONNX Runtime - PyTorch| of the `check_images`' probabilities (the float file)
    checked: list[tuple[int, int, int]]  # (N, H, W) of the images it was checked on
    drift: Drift | None = None  # with --quantize int8: its maps' on the calibration photographs


def require_onnx() -> None:
    """Bad input, naming the install, where a package the export needs is missing."""
    import importlib.util

    missing = [name for name in PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise BadInputError(f"ONNX export needs {', '.join(missing)}, not installed here: "
                            'pip install "vgan-tune[onnx]" (or pip install -e ".[onnx]" in a checkout)')
    import torch

    # what the export calls, which older exporters lack (the project asks torch>=2.3 for training)
    if not (hasattr(torch.export, "Dim") and hasattr(torch.export.Dim, "DYNAMIC")
            and hasattr(getattr(torch.onnx, "ONNXProgram", None), "rename_axes")):
        raise BadInputError(f"ONNX export needs a newer torch than {torch.__version__}, whose exporter takes dynamic "
                            "sizes (torch.export.Dim.DYNAMIC) and names them (ONNXProgram.rename_axes); it was "
                            "tested with torch 2.13")


def check_opset(opset: int | None) -> None:
    """Bad input where `--opset` is one the exporter cannot write (`OPSET_MIN` up to what onnx knows)."""
    import onnx.defs

    newest = onnx.defs.onnx_opset_version()
    if opset is not None and not OPSET_MIN <= opset <= newest:
        raise BadInputError(f"--opset {opset}: torch.onnx writes opsets {OPSET_MIN} to {newest} here (onnx "
                            f"{onnx.__version__}); a runtime that takes no opset {OPSET_MIN} is older than ONNX "
                            "Runtime 1.14")


def check_sizes(min_side: int) -> list[tuple[int, int, int]]:
    """(N, H, W) of the images a file is checked on: a batch of 2 and one of 1, neither side a multiple of the
    U-Net's 2**depth (`min_side`) nor the traced example's (so a size baked into the graph shows)."""
    m = max(min_side, 1)
    return [(2, 3 * m + 5, 2 * m + 3), (1, 5 * m + 1, 7 * m + 6)]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress lines and its notes on packages it would translate for (torchvision) are for
    torch developers; an export that fails still raises."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
                yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def onnx_program(module: torch.nn.Module, min_side: int, opset: int | None = None):
    """The `torch.onnx` program of `module` (images (N, 3, H, W) -> maps (N, 1, H, W)), N, H and W dynamic."""
    import torch
    from torch.export import Dim

    m = max(min_side, 1)
    example = torch.rand(2, 3, 2 * m + 3, 3 * m + 1, generator=torch.Generator().manual_seed(0))
    dynamic = ({0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC},)
    with _quiet():
        try:
            program = torch.onnx.export(module, (example,), dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
                                        dynamic_shapes=dynamic, opset_version=opset, verbose=False)
        except Exception as e:  # the exporter's own errors are many and of no common class
            raise ExportError(f"torch.onnx could not export the generator ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from e
    value = {INPUT: program.model.graph.inputs[0], OUTPUT: program.model.graph.outputs[0]}
    # the exporter names the sizes after its symbols (s0, s53, ...): a runtime's user reads these names
    program.rename_axes({value[INPUT].shape[0]: "batch", value[INPUT].shape[2]: "height",
                         value[INPUT].shape[3]: "width"})
    return program


def session_of(path: Path, threads: int | None = None):
    """An ONNX Runtime CPU session of the file at `path` on `threads` (default: torch's count, so that it and
    PyTorch compare on one footing); the runtime's own error where it cannot load it."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_images(sizes: Sequence[tuple[int, int, int]]) -> list:
    """Random images in [0, 1] of `sizes` (N, H, W), (N, 3, H, W) float32 arrays, the same every time."""
    import torch

    rng = torch.Generator().manual_seed(1)
    return [torch.rand(n, 3, h, w, generator=rng).numpy() for n, h, w in sizes]


def write_onnx(module: torch.nn.Module, path: Path, metadata: dict[str, str], min_side: int = 1,
               opset: int | None = None, calibration: list | None = None) -> Exported:
    """`module` (on the CPU, in eval mode) exported to `path` with `metadata` (the file's metadata_props), checked
    against itself by ONNX Runtime (`drift` on `check_images`, up to `TOLERANCE`), then moved into place: a failure
    leaves no file, and an earlier file at `path` as it was. `calibration`: the photographs (`calibration_batches`) its
    convolutions are quantized to 8 bits on, after that check (`quantize_int8`)."""
    from vgan.scale import recorded_fovs

    program = onnx_program(module, min_side, opset)
    program.model.metadata_props.update({"vgan_tune_version": __version__, INPUT: INPUT_TEXT, OUTPUT: OUTPUT_TEXT,
                                         "generators": str(len(recorded_fovs(module))), **metadata})
    program.model.doc_string = "Retinal-vessel probability map of a colour fundus photograph (vgan-tune)"
    sizes = check_sizes(min_side)
    # beside it, so the move is one rename; made by the writer, so it takes the umask's permissions (mkstemp's 0600
    # would leave a shared model folder's file unreadable to the others)
    tmp = path.parent / f".{path.name}.{os.getpid()}.part"
    try:
        with _quiet():
            program.save(tmp, external_data=False)  # one file: the generators are megabytes, far under 2 GB
        worst = drift(tmp, module, check_images(sizes)).largest
        if not worst <= TOLERANCE:
            raise ExportError(f"ONNX Runtime's maps differ from PyTorch's by up to {worst:.2g} (more than "
                              f"{TOLERANCE:g}) on images of {sizes} (N, H, W): {path} not written")
        written = int(program.model.opset_imports[""])
        if opset is not None and written != opset:
            raise ExportError(f"torch.onnx wrote opset {written} where {opset} was asked: {path} not written")
        quantized = None if calibration is None else int8(tmp, module, calibration, metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return Exported(path, path.stat().st_size, written, worst, sizes, quantized)


def int8(tmp: Path, module: torch.nn.Module, calibration: list, metadata: dict[str, str]) -> Drift:
    """The checked float file at `tmp` replaced by its 8-bit quantization, its metadata saying so (and its weights
    digest made its own: its maps are not the float weights'); its `Drift` from PyTorch's maps on the calibration
    photographs."""
    import hashlib

    import onnx

    quantized = tmp.with_name(tmp.name + ".int8")
    try:
        quantize_int8(tmp, quantized, calibration)
        moved = drift(quantized, module, calibration)
        model = onnx.load(str(quantized))
        seen = hashlib.sha256(b"".join(x.tobytes() for x in calibration)).hexdigest()[:16]
        extra = {"quantized": f"int8: convolutions, static QDQ per channel, percentile calibration on "
                              f"{len(calibration)} photograph(s) (sha256:{seen})",
                 "int8_drift": f"on the calibration photographs: {moved.text()}"}
        if metadata.get("weights_digest"):
            extra["weights_digest"] = "sha256:" + hashlib.sha256(
                f"{metadata['weights_digest']} int8 {seen}".encode()).hexdigest()[:16]
        props = {p.key: p.value for p in model.metadata_props} | extra
        del model.metadata_props[:]
        for key, value in props.items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(tmp))
    finally:
        quantized.unlink(missing_ok=True)
    return moved


def calibration_batches(sources: Sequence, trained_fov: float | None) -> list:
    """Each calibration photograph as vgan.predict gives it to the generator at --scale auto: decoded (8-bit
    divided by 255, grey repeated, ...), a frame made black, resized so its estimated FOV is `trained_fov` wide;
    (1, 3, h, w) float32 arrays. An image that cannot be read is bad input naming it."""
    from vgan.errors import DataError
    from vgan.images import decode_image, estimate_fov, read_file, without_frames
    from vgan.inputs import InputError, as_batch
    from vgan.scale import AUTO, resize, scaled_size

    batches = []
    for source in sources:
        try:
            batch, _ = as_batch(decode_image(read_file(source.path), str(source.path), []), str(source.path))
            batch, _ = without_frames(batch)
            fov = estimate_fov(batch[0].permute(1, 2, 0).numpy())
            factor = AUTO.factor_of(fov, trained_fov, f"--calibration {source.path}")
        except (DataError, InputError) as e:  # each names the file
            raise BadInputError(f"--calibration: {e}") from None
        batches.append(resize(batch, scaled_size(tuple(batch.shape[-2:]), factor)).float().contiguous().numpy())
    return batches


def quantize_int8(source: Path, target: Path, batches: list) -> None:
    """`source`'s convolutions quantized to 8 bits into `target` (ONNX Runtime's static QDQ quantization: unsigned
    activations, signed weights per output channel), the activation ranges those `batches` give (percentiles).
    The head's sigmoid and all else stay float: an 8-bit probability tied most of a GAN's map with the background
    (AUC-ROC 0.9704 to 0.9602 quantizing every op, against 0.9699 the convolutions alone; DRIVE, the CPU recipe's
    seed 0, min-max calibration)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Photographs(CalibrationDataReader):
        def __init__(self):
            self.left = iter(batches)

        def get_next(self):
            x = next(self.left, None)
            return None if x is None else {INPUT: x}

    prepared = target.with_name(target.name + ".pre")
    try:
        with _quiet():
            # its symbolic shape inference cannot follow the padding's sizes ("Incomplete symbolic shape
            # inference"): onnx's shape inference and the graph optimisations only
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(target), Photographs(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            op_types_to_quantize=["Conv", "ConvTranspose"],
                            # the ranges of the activations' middle 99.999 %, not their extremes (min-max, the
                            # default): the CPU recipe's DRIVE AUC-ROC lost 0.0003-0.0005 where it lost 0.0008
                            calibrate_method=CalibrationMethod.Percentile)
    except Exception as e:  # the quantizer's errors are of many classes
        raise ExportError(f"ONNX Runtime could not quantize the graph ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''})") from e
    finally:
        prepared.unlink(missing_ok=True)


@dataclass
class Drift:
    """How far a quantized file's maps are from PyTorch's on the calibration photographs: a few pixels move far
    (the largest difference is near 1), so the mean and the share of pixels that change side of 0.5 say more."""

    mean: float  # |ONNX Runtime - PyTorch| over every pixel
    flipped: float  # the share of pixels on the other side of 0.5
    largest: float

    def text(self) -> str:
        return (f"mean |difference| {self.mean:.2g}, {100 * self.flipped:.3g} % of the pixels on the other side of "
                f"0.5, at most {self.largest:.2g}")


def drift(path: Path, module: torch.nn.Module, batches: list) -> Drift:
    """How far the maps ONNX Runtime makes of `batches` ((N, 3, H, W) float32 arrays in [0, 1]) with the file at
    `path` are from `module`'s: the check of every export (`largest`) and of a quantized one."""
    import numpy as np
    import onnxruntime as ort
    import torch

    try:
        session = session_of(path)
    except Exception as e:  # onnxruntime's errors share no class but its own
        raise ExportError(f"ONNX Runtime {ort.__version__} cannot load the graph ({str(e).splitlines()[0]})") from e
    total = flipped = pixels = largest = 0.0
    for x in batches:
        with torch.inference_mode():
            want = module(torch.from_numpy(x)).numpy()
        got = session.run([OUTPUT], {INPUT: x})[0]
        if got.shape != want.shape:
            raise ExportError(f"ONNX Runtime gave maps of {got.shape} for images of {x.shape}, PyTorch {want.shape}")
        gap = np.abs(got - want)
        total, pixels = total + float(gap.sum()), pixels + gap.size
        flipped += float(((got >= 0.5) != (want >= 0.5)).sum())
        largest = max(largest, float(gap.max()))
    return Drift(total / pixels, flipped / pixels, largest)


class OnnxSegmenter:
    """A file `write_onnx` wrote, run by ONNX Runtime on the CPU as vgan.predict runs a generator: images (N, 3, H,
    W) in [0, 1] (torch, on any device) -> probabilities (N, 1, H, W) on the images' device. Its training FOV and
    weights digest are the file's metadata, so a batch's report.csv tells it as it tells the checkpoint it came
    from (`runtime` tells them apart)."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        if not path.is_file():
            raise BadInputError(f"{path}: ONNX file not found")
        try:
            self.session = session_of(path, threads)
        except Exception as e:  # onnxruntime's errors share no class but its own
            raise BadInputError(f"{path}: not an ONNX file ONNX Runtime {ort.__version__} loads "
                                f"({str(e).splitlines()[0]})") from None
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT] or outputs != [OUTPUT]:
            raise BadInputError(f"{path}: an ONNX file of another model (inputs {inputs}, outputs {outputs}; "
                                f"vgan.export and tuner.export write {INPUT} -> {OUTPUT})")
        meta = self.session.get_modelmeta().custom_metadata_map
        self.path = path
        self.trained_fov = float(meta[FOV_KEY]) if meta.get(FOV_KEY) else None
        self.weights_digest = meta.get("weights_digest") or None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        import torch

        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: x})[0]).to(images.device)


def is_onnx(path: str) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def read_metadata(path: Path) -> dict[str, str]:
    """An ONNX file's metadata_props."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=nonempty, required=True, metavar="FILE",
                   help="the ONNX file to write (replaced if it exists, once the new one is checked)")
    p.add_argument("--opset", type=int, metavar="N",
                   help="ONNX opset version (default: the exporter's); older runtimes may need an older one")
    p.add_argument("--quantize", choices=("none", "int8"), default="none",
                   help="int8: the convolutions in 8 bits (static, calibrated on --calibration): faster on CPUs, "
                        "a map a little apart from PyTorch's")
    p.add_argument("--calibration", type=nonempty, nargs="+", metavar="PHOTOS",
                   help="with --quantize int8: photographs (files or folders) of the camera the file will see, "
                        "whose activations set the 8-bit ranges (not the test split's)")


def check_quantize(args: argparse.Namespace) -> list | None:
    """The calibration photographs (`vgan.images.Source`s) where --quantize int8 is asked; bad input where they
    are missing, or given without it."""
    from vgan.images import find_images

    if args.quantize == "none":
        if args.calibration:
            raise BadInputError("--calibration: only with --quantize int8")
        return None
    if not args.calibration:
        raise BadInputError("--quantize int8 needs --calibration PHOTOS: photographs of the camera the file will "
                            "see, whose activations set the 8-bit ranges")
    return find_images(args.calibration)


def prepared(args: argparse.Namespace) -> tuple[Path, list | None]:
    """What both export commands check before they load a model: the packages and torch, `--opset`, `--quantize`'s
    calibration photographs (returned), and that `--out` (returned) can be written."""
    require_onnx()
    check_opset(args.opset)
    calibration = check_quantize(args)
    return writable_file(Path(args.out), "--out"), calibration


def export_file(module: torch.nn.Module, args: argparse.Namespace, out: Path, calibration: list | None, source: str,
                digest: str | None, prog: str, what: str) -> None:
    """`module` (what ships: a VesselSegmenter, an EnsembleSegmenter, a logged model's program or the mean of
    several) written to `out` as both export commands write it (`write_onnx`), its training FOV and smallest side
    read from it; models trained at different FOV scales are bad input naming `what`. `source` and `digest` go to
    the file's metadata; the line `said` is printed."""
    from vgan.scale import recorded_fov, smallest_side

    try:
        fov = recorded_fov(module)
    except ValueError as e:  # generators trained at different scales
        raise BadInputError(f"{what}: {e}") from None
    metadata = {"source": source, "weights_digest": digest or ""}
    if fov:
        metadata[FOV_KEY] = f"{fov:g}"
    batches = None if calibration is None else calibration_batches(calibration, fov)
    print(said(write_onnx(module, out, metadata, smallest_side(module), args.opset, batches), fov, prog))


def said(exported: Exported, fov: float | None, prog: str) -> str:
    sizes = ", ".join(f"{n} x {h} x {w}" for n, h, w in exported.checked)
    size = f"{exported.bytes / 1e6:.1f} MB" if exported.bytes >= 1e6 else f"{exported.bytes / 1e3:.0f} kB"
    return (f"{prog}: wrote {exported.path} ({size}, opset {exported.opset}): {INPUT} "
            f"(N, 3, H, W) RGB in [0, 1] -> {OUTPUT} (N, 1, H, W); ONNX Runtime gives PyTorch's probabilities to "
            f"{exported.difference:.1g} on images of {sizes} (N x H x W); "
            + (f"its convolutions then quantized to 8 bits: on the calibration photographs {exported.drift.text()}; "
               if exported.drift else "")
            + (f"its training photographs' FOV was {fov:g} px across ({FOV_KEY}): resize another camera's to that"
               if fov else "its training photographs' FOV was not recorded"))


def _main(argv: Sequence[str] | None) -> None:
    p = argparse.ArgumentParser(prog="python -m vgan.export", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--checkpoint", type=nonempty, required=True, nargs="+", metavar="CKPT",
                   help="checkpoint written by vgan.train (best.pt, last.pt); several: one graph of the mean of "
                        "their maps (an ensemble)")
    add_arguments(p)
    args = p.parse_args(argv)
    out, calibration = prepared(args)
    import torch

    from vgan.ensemble import segmenter_of
    from vgan.models import VesselSegmenter
    from vgan.report import weights_digest
    from vgan.trainer import generator_from_checkpoint, load_checkpoint

    cpu = torch.device("cpu")
    generators = [generator_from_checkpoint(load_checkpoint(path), path, cpu)[0] for path in args.checkpoint]
    try:
        module = segmenter_of(generators)
    except ValueError as e:  # generators trained at different scales
        raise BadInputError(f"--checkpoint: {e}") from None
    # the digest of the modules vgan.predict runs, so a batch's report.csv (its `model` column) tells this file's
    digest = weights_digest([VesselSegmenter(g) for g in generators])
    export_file(module, args, out, calibration, " ".join(args.checkpoint), digest, "vgan.export", "--checkpoint")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, "vgan.export")


if __name__ == "__main__":
    exit_program(main())
