"""The MLflow model of a trained generator: what is logged for every trial and registered.

One model, two ways to load it, no pickle on either:
- `mlflow.pytorch.load_model(uri)`: the `VesselSegmenter` exported with `torch.export` (pt2),
  RGB float32 (N, 3, H, W) in [0, 1] of any size -> probabilities (N, 1, H, W); values
  outside [0, 1] (an 8-bit image not divided by 255) are refused with that message;
- `mlflow.pyfunc.load_model(uri)` and `mlflow models serve`: `vgan_pyfunc`, shipped in the
  model with the `vgan` package, which takes images as users have them (`vgan.inputs`).
The model folder also holds the trainer config it was trained with (`config.yaml`).

The exported graph depends on the generator's shape, not its weights: a study exports it once
per shape and swaps each trial's weights in (an export takes ~1.5 s of the driver's CPU, a
weight swap milliseconds).
"""

from __future__ import annotations

import copy
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vgan.models import Generator, VesselSegmenter

PYFUNC_MODULE = Path(__file__).with_name("vgan_pyfunc.py")
VGAN_PACKAGE = Path(__file__).resolve().parent.parent / "vgan"
MODEL_TYPE = "vessel-segmenter"
INPUT = ("RGB images in [0, 1]: float32 tensor (N, 3, H, W), any H and W (mlflow.pytorch); pyfunc and "
         "serving also take (H, W, C) or (N, H, W, C) arrays, 8- or 16-bit, float64, grey or RGBA")
OUTPUT = "vessel probabilities, float32 (N, 1, H, W)"

_exports: dict[tuple, Any] = {}
_lock = threading.RLock()  # save_model holds it across export and save: no swap in between


def segmenter(generator: Generator) -> VesselSegmenter:
    """The shipped module: a copy of `generator`, in inference mode, holding no gradients (so a
    user's `probs.numpy()` works)."""
    return VesselSegmenter(copy.deepcopy(generator).cpu()).eval().requires_grad_(False)


def export(generator: Generator):
    """The exported program of `segmenter(generator)`, batch, height and width dynamic."""
    from torch.export import Dim

    module = segmenter(generator)
    weights = module.state_dict()
    key = (generator.depth, tuple((k, tuple(v.shape)) for k, v in weights.items()))
    with _lock:
        program = _exports.get(key)
        if program is None:
            m = 2**generator.depth
            # a batch > 1 and sizes off the multiple of 2**depth keep N, H and W dynamic
            example = torch.rand(2, 3, 2 * m + 3, 3 * m + 1, generator=torch.Generator().manual_seed(0))
            program = torch.export.export(module, (example,), dynamic_shapes=[{0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}])
            _exports[key] = program
        else:
            with torch.no_grad():
                for name, value in weights.items():
                    program.state_dict[name].copy_(value)
        return program


def save_model(path: str, mlflow_model, generator: Generator, config: dict[str, Any] | None = None,
               **_: Any) -> None:
    """MLflow's flavor protocol (`Model.log(flavor=tuner.flavor)` calls it): write the model folder."""
    import yaml
    from mlflow.pyfunc import add_to_model
    from mlflow.utils.environment import (
        _CONDA_ENV_FILE_NAME,
        _PYTHON_ENV_FILE_NAME,
        _REQUIREMENTS_FILE_NAME,
        _mlflow_conda_env,
        _PythonEnv,
    )
    from mlflow.utils.requirements_utils import _get_pinned_requirement

    root = Path(path)
    (root / "data").mkdir(parents=True)
    with _lock:
        torch.export.save(export(generator), root / "data" / "model.pt2")
    code = root / "code"
    shutil.copytree(VGAN_PACKAGE, code / "vgan", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PYFUNC_MODULE, code / PYFUNC_MODULE.name)
    if config is not None:
        (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    mlflow_model.add_flavor("pytorch", model_data="data", pytorch_version=str(torch.__version__), code="code")
    add_to_model(mlflow_model, loader_module=PYFUNC_MODULE.stem, data="data", code="code",
                 conda_env=_CONDA_ENV_FILE_NAME, python_env=_PYTHON_ENV_FILE_NAME)
    # No input schema: MLflow would refuse float64 and (H, W, C) arrays before vgan_pyfunc could take them.
    mlflow_model.metadata = {**(mlflow_model.metadata or {}), "input": INPUT, "output": OUTPUT}
    requirements = [_get_pinned_requirement(p) for p in ("torch", "numpy", "mlflow")]
    (root / _REQUIREMENTS_FILE_NAME).write_text("\n".join(requirements) + "\n")
    with open(root / _CONDA_ENV_FILE_NAME, "w") as f:
        yaml.safe_dump(_mlflow_conda_env(additional_pip_deps=requirements), f)
    _PythonEnv.current().to_yaml(root / _PYTHON_ENV_FILE_NAME)
    mlflow_model.save(str(root / "MLmodel"))


def log_model(generator: Generator, name: str, run_id: str, config: dict[str, Any] | None = None,
              tags: dict[str, str] | None = None):
    """Log `generator` as the logged model `name` of run `run_id` (the fluent API's store: call it
    inside `tracking.use_tracking_uri`). Returns MLflow's ModelInfo (`model_id`, `model_uri`)."""
    from mlflow.models import Model

    # no serving-input validation here: the registry loads and scores what it registers
    return Model.log(artifact_path=None, name=name, flavor=sys.modules[__name__], run_id=run_id, generator=generator, config=config,
                     model_type=MODEL_TYPE, tags=tags, validate_serving_input=False)

