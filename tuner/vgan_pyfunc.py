"""The python_function flavor of a vgan MLflow model: copied into every logged model as its
loader module (`code/vgan_pyfunc.py`, next to the `vgan` package it uses), so the model serves
and predicts without this repository installed.

`mlflow.pyfunc.load_model(uri).predict(array)` takes images as users have them (numpy or
torch; (H, W, C) or (N, C, H, W); 8-bit, 16-bit or float in [0, 1]; grey, RGB or RGBA: see
`vgan.inputs.as_batch`) and returns float32 probabilities (N, 1, H, W) of the images' own size.
Each image is segmented at the scale the generator was trained at, as `tuner.predict` does: its
field of view is estimated, the image resized so the FOV is as wide as the training photographs'
and the map resized back (`params={"scale": "auto"}`, the default; `"1"` takes the image as it is,
`"0.5"` any factor in (0, 4]). `params={"tta": "flips"}` averages the maps of each image's mirrored
views (`vgan.tta`: hflip, flips, dihedral; "none", the default, takes it once).
Images may also come as their files: base64 strings (a served request's `{"inputs": ["<base64>", ...]}`,
a data URL's too) or bytes of PNG, JPEG, TIFF, DICOM, ... as `vgan.predict` reads them (an EXIF orientation
applied), each at its own size. `params={"output": "png"}` returns each map as the base64 of the 16-bit PNG
`vgan.predict` writes (a list of strings) instead of the float array: for a DRIVE photograph, a served
answer of 0.4 MB instead of 7.5.
What it refuses (an image it cannot take, a FOV no camera gives, a bad param) it raises as `BadRequest`, an
`MlflowException` a server answers with HTTP 400 and the reason.
`get_raw_model()` is a torch `nn.Module` that does the same in `forward(x, scale="auto", tta="none")`
and, unlike the exported program that `mlflow.pytorch.load_model` returns (the bare graph: images at
the size given), takes `.eval()` and `.to(device)`.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from torch import nn

from vgan.errors import BadInputError, ConfigError
from vgan.inputs import InputError, as_batch
from vgan.scale import ScaleSpec, check_side, predict_at_factors, recorded_fov, smallest_side
from vgan.tta import DEFAULT as TTA_DEFAULT
from vgan.tta import check_tta, with_tta

SCALE_PARAM, SCALE_DEFAULT = "scale", "auto"  # the predict / served request's param, and its schema's default
TTA_PARAM = "tta"
OUTPUT_PARAM, OUTPUTS = "output", ("array", "png")  # the maps as one float array, or each as its PNG's base64
SCALE_REMEDY = 'send it at the scale the model was trained at, or a factor (params {"scale": "0.5"})'


class Segmenter(nn.Module):
    """The exported inference graph behind a module users can treat as one.

    `torch.export`'s programs refuse `.train()` and `.eval()` (their batch norm and padding are
    fixed at export, in inference mode); here `.eval()` is accepted and `.train()` refused
    with the reason. `.to(device)` moves the weights as for any module."""

    def __init__(self, program: nn.Module):
        super().__init__()
        self.program = program
        self.trained_fov = recorded_fov(program)  # None for a model saved before the scale was recorded
        self.min_side = smallest_side(program)

    def train(self, mode: bool = True) -> Segmenter:
        if mode:
            raise RuntimeError("this is an exported inference graph: it cannot train. Fine-tune from the "
                               "trial's vgan checkpoint instead (python -m vgan.train --resume)")
        self.training = False  # the program's own modes are fixed; do not recurse into it
        return self

    def forward(self, x: Any, scale: str | float = SCALE_DEFAULT, tta: str = TTA_DEFAULT) -> torch.Tensor:
        model = with_tta(self.program, check_tta(str(tta), f"params {TTA_PARAM}"))
        batch, _ = as_batch(x)
        from vgan.images import without_frames

        batch, _ = without_frames(batch)  # a white or grey frame made black, as the generator learnt a surround
        factors = self.factors(batch, ScaleSpec.parse(str(scale), f"params {SCALE_PARAM}"))
        device = next(self.program.parameters()).device
        with torch.no_grad():
            return predict_at_factors(model, batch.to(device), factors)

    def factors(self, batch: torch.Tensor, scale: ScaleSpec) -> list[float]:
        """Each image's resize factor: its FOV, estimated, brought to the training FOV under auto."""
        fixed = scale.fixed_factor(self.trained_fov)
        if fixed is not None:  # no FOV to estimate
            n = len(batch)
            check_side(tuple(batch.shape[-2:]), fixed, self.min_side, f"images 0-{n - 1} of {n}" if n > 1 else
                       "image 0 of 1")
            return [fixed] * len(batch)
        from vgan.images import estimate_fov

        # .cpu(): a raw-model user may pass CUDA tensors
        return [scale.factor_of(estimate_fov(image.permute(1, 2, 0).cpu().numpy()), self.trained_fov,
                                f"image {i} of {len(batch)}", SCALE_REMEDY, self.min_side)
                for i, image in enumerate(batch)]


class BadRequest(MlflowException):
    """A request the model refuses, as MLflow's scoring server answers one: HTTP 400, the reason as the message.
    To any other exception the server answers "Encountered an unexpected error while evaluating the model. Verify
    that the serialized input Dataframe is compatible with the model", the reason only at the end of a traceback."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason, INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, text: str) -> None:
        # The server writes the request before the reason ("Failed to predict data '<data>'. Error: <reason>"):
        # a photograph sent as a file, megabytes of base64, came back whole. The reason alone is the answer.
        self._message = self.reason if text.endswith(self.reason) else text


class VesselPyfunc:
    """What `mlflow.pyfunc.load_model` returns the predictions of."""

    def __init__(self, module: Segmenter):
        self.module = module

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> np.ndarray | list[str]:
        try:
            return self._predict(data, params)
        except BadInputError as e:
            raise BadRequest(str(e)) from e

    def _predict(self, data: Any, params: dict[str, Any] | None = None) -> np.ndarray | list[str]:
        if hasattr(data, "to_numpy") and not isinstance(data, np.ndarray):  # a DataFrame from a CSV request
            raise InputError("vgan models take image arrays ((H, W, C) or (N, C, H, W)) or image files (base64), "
                            'not tables: send {"inputs": <nested list or array, or a list of base64 strings>} '
                            "when serving")
        params = params or {}
        output = str(params.get(OUTPUT_PARAM, OUTPUTS[0]))
        if output not in OUTPUTS:
            raise ConfigError(f"params {OUTPUT_PARAM} {output!r}: give one of {', '.join(OUTPUTS)}")
        scale, tta = params.get(SCALE_PARAM, SCALE_DEFAULT), params.get(TTA_PARAM, TTA_DEFAULT)
        files = image_files(data)
        if files is None:  # pixels: one batch, one array
            maps = self.module(np.asarray(data) if isinstance(data, list) else data, scale, tta).cpu().numpy()
        else:  # files: each at its own size
            from vgan.images import decode_image

            maps = [self.module(decode_image(f, f"image {i} of {len(files)}"), scale, tta).cpu().numpy()[0]
                    for i, f in enumerate(files)]
        if output == "png":
            from vgan.visualize import map_png

            return [base64.b64encode(map_png(m[0])).decode("ascii") for m in maps]
        if isinstance(maps, list):
            sizes = {m.shape for m in maps}
            if len(sizes) > 1:
                raise InputError(f"images of {len(sizes)} sizes make no one array: send them one a request, or ask "
                                 f'for params {{"{OUTPUT_PARAM}": "png"}} (a PNG each)')
            maps = np.stack(maps)
        return maps

    def get_raw_model(self) -> Segmenter:
        return self.module


def image_files(data: Any) -> list[bytes] | None:
    """The image files in `data`: base64 strings (or data URLs) or bytes, one or a list or array of them;
    None where `data` holds pixels."""
    items = data.tolist() if isinstance(data, np.ndarray) and data.dtype.kind in "OSU" else data
    items = [items] if isinstance(items, (str, bytes)) else items
    if not isinstance(items, list) or not items or not all(isinstance(x, (str, bytes)) for x in items):
        return None
    files = []
    for i, x in enumerate(items):
        if isinstance(x, str):
            text = x.split(",", 1)[1] if x.startswith("data:") else x  # data:image/png;base64,...
            try:
                x = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise InputError(f"image {i} of {len(items)}: a string that is not base64 (send an image file's "
                                 "bytes in base64, or pixels as a nested list)") from None
        files.append(x)
    return files


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> VesselPyfunc:
    """MLflow's loader protocol: `path` is the model's `data` folder (holding `model.pt2`)."""
    import mlflow.pytorch

    device = (model_config or {}).get("device") or os.environ.get("MLFLOW_DEFAULT_PREDICTION_DEVICE") or \
        ("cuda" if torch.cuda.is_available() else "cpu")
    # mlflow.pytorch checks the archive is free of pickle payloads when pickle loading is disallowed
    program = mlflow.pytorch.load_model(os.path.dirname(os.path.abspath(path)))
    return VesselPyfunc(Segmenter(program).to(device))
