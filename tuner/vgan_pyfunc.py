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
`get_raw_model()` is a torch `nn.Module` that does the same in `forward(x, scale="auto", tta="none")`
and, unlike the exported program that `mlflow.pytorch.load_model` returns (the bare graph: images at
the size given), takes `.eval()` and `.to(device)`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from vgan.inputs import as_batch
from vgan.scale import ScaleSpec, predict_at_factors, recorded_fov
from vgan.tta import DEFAULT as TTA_DEFAULT
from vgan.tta import check_tta, with_tta

SCALE_PARAM, SCALE_DEFAULT = "scale", "auto"  # the predict / served request's param, and its schema's default
TTA_PARAM = "tta"
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

    def train(self, mode: bool = True) -> Segmenter:
        if mode:
            raise RuntimeError("this is an exported inference graph: it cannot train. Fine-tune from the "
                               "trial's vgan checkpoint instead (python -m vgan.train --resume)")
        self.training = False  # the program's own modes are fixed; do not recurse into it
        return self

    def forward(self, x: Any, scale: str | float = SCALE_DEFAULT, tta: str = TTA_DEFAULT) -> torch.Tensor:
        model = with_tta(self.program, check_tta(str(tta), f"params {TTA_PARAM}"))
        batch, _ = as_batch(x)
        factors = self.factors(batch, ScaleSpec.parse(str(scale), f"params {SCALE_PARAM}"))
        device = next(self.program.parameters()).device
        with torch.no_grad():
            return predict_at_factors(model, batch.to(device), factors)

    def factors(self, batch: torch.Tensor, scale: ScaleSpec) -> list[float]:
        """Each image's resize factor: its FOV, estimated, brought to the training FOV under auto."""
        fixed = scale.fixed_factor(self.trained_fov)
        if fixed is not None:  # no FOV to estimate
            return [fixed] * len(batch)
        from vgan.data import estimate_fov

        # .cpu(): a raw-model user may pass CUDA tensors
        return [scale.factor_of(estimate_fov(image.permute(1, 2, 0).cpu().numpy()), self.trained_fov,
                                f"image {i} of {len(batch)}", SCALE_REMEDY) for i, image in enumerate(batch)]


class VesselPyfunc:
    """What `mlflow.pyfunc.load_model` returns the predictions of."""

    def __init__(self, module: Segmenter):
        self.module = module

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        if hasattr(data, "to_numpy") and not isinstance(data, np.ndarray):  # a DataFrame from a CSV request
            raise TypeError("vgan models take image arrays ((H, W, C) or (N, C, H, W)), not tables: send "
                            '{"inputs": <nested list or array>} when serving')
        if isinstance(data, list):
            data = np.asarray(data)
        params = params or {}
        probs = self.module(data, params.get(SCALE_PARAM, SCALE_DEFAULT), params.get(TTA_PARAM, TTA_DEFAULT))
        return probs.cpu().numpy()

    def get_raw_model(self) -> Segmenter:
        return self.module


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> VesselPyfunc:
    """MLflow's loader protocol: `path` is the model's `data` folder (holding `model.pt2`)."""
    import mlflow.pytorch

    device = (model_config or {}).get("device") or os.environ.get("MLFLOW_DEFAULT_PREDICTION_DEVICE") or \
        ("cuda" if torch.cuda.is_available() else "cpu")
    # mlflow.pytorch checks the archive is free of pickle payloads when pickle loading is disallowed
    program = mlflow.pytorch.load_model(os.path.dirname(os.path.abspath(path)))
    return VesselPyfunc(Segmenter(program).to(device))
