"""The MLflow model of a trained generator: what is logged for every trial and registered.

One model, two ways to load it, no pickle on either:
- `mlflow.pytorch.load_model(uri)`: the `VesselSegmenter` exported with `torch.export` (pt2),
  RGB float32 (N, 3, H, W) in [0, 1], H and W of 2**depth pixels or more (`vgan.scale.smallest_side`) ->
  probabilities (N, 1, H, W); values
  outside [0, 1] (an 8-bit image not divided by 255) are refused with that message;
- `mlflow.pyfunc.load_model(uri)` and `mlflow models serve`: `vgan_pyfunc`, shipped in the
  model with the `vgan` package, which takes images as users have them (`vgan.inputs`) and
  segments each at the scale the generator was trained at (params `scale`: "auto", or a factor),
  optionally averaging the maps of its mirrored views (params `tta`: "none", "hflip", "flips", "dihedral").
The model folder also holds the trainer config it was trained with (`config.yaml`).

An ensemble (several generators, `tuner.ensemble`) is logged the same way, as one program: the
`EnsembleSegmenter` of its generators, the mean of their maps; its metadata counts them (`ensemble_members`).

The exported graph depends on the generator's shape, not its weights: the first model of a shape
is exported and saved (~2.5 s of the driver's CPU), the next ones copy that pt2 archive with
their own weight records (the graph, its guards and example inputs are the same): milliseconds.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any, Sequence, Union

import torch

from tuner.vgan_pyfunc import OUTPUT_PARAM, OUTPUTS, SCALE_DEFAULT, SCALE_PARAM, TTA_PARAM
from vgan.ensemble import segmenter_of
from vgan.models import EnsembleSegmenter, Generator, VesselSegmenter
from vgan.tta import DEFAULT as TTA_DEFAULT

PYFUNC_MODULE = Path(__file__).with_name("vgan_pyfunc.py")
VGAN_PACKAGE = Path(__file__).resolve().parent.parent / "vgan"
MODEL_TYPE = "vessel-segmenter"
INPUT = ("RGB images in [0, 1]: float32 tensor (N, 3, H, W), H and W of smallest_side_px or more (mlflow.pytorch); "
         "pyfunc and serving also take (H, W, C) or (N, H, W, C) arrays, 8- or 16-bit, float64, grey or RGBA, and "
         "resize each photograph to the training FOV (params scale: auto, or a factor such as '1'; params tta: flips "
         "averages the maps of mirrored views); pyfunc and serving take image files too, base64 strings of "
         "PNG, JPEG, TIFF, ...")
OUTPUT = ("vessel probabilities, float32 (N, 1, H, W); params output: png gives each map as the base64 of its "
          "16-bit PNG (value/65535)")

WEIGHTS_CONFIG = "archive/data/weights/model_weights_config.json"  # in a pt2 archive: tensor -> raw record
_archives: dict[tuple, bytes] = {}  # per generator shape: the pt2 archive of the first model exported
# Held across an export: a save that finds its shape being exported (warm() in the background) waits
# for the archive instead of exporting it again.
_lock = threading.Lock()
Shipped = Union[Generator, Sequence[Generator]]  # one generator, or an ensemble's


def load_program(model_uri: str):
    """A logged model's exported program (`mlflow.pytorch.load_model`, from the fluent API's store: call it
    inside `tracking.use_tracking_uri` for a models:/ URI). It waits for an export in progress in this
    process: torch.export.load fails while another thread exports (torch 2.13: "mul expected 2 arguments,
    got 3", shared symbolic-shape state), as the registry's loads did behind a study's warm-up export."""
    import mlflow.pytorch

    with _lock:
        return mlflow.pytorch.load_model(model_uri)


def members(shipped: Shipped) -> list[Generator]:
    return [shipped] if isinstance(shipped, Generator) else list(shipped)


def segmenter(shipped: Shipped) -> VesselSegmenter | EnsembleSegmenter:
    """The shipped module (`vgan.ensemble.segmenter_of`) of a copy of the generator or generators, on the CPU."""
    return segmenter_of([copy.deepcopy(g).cpu() for g in members(shipped)])


def export(shipped: Shipped):
    """The exported program of `segmenter(shipped)`, batch, height and width dynamic."""
    from torch.export import Dim

    m = max(2**g.depth for g in members(shipped))
    # a batch > 1 and sizes off the multiple of 2**depth keep N, H and W dynamic
    example = torch.rand(2, 3, 2 * m + 3, 3 * m + 1, generator=torch.Generator().manual_seed(0))
    return torch.export.export(segmenter(shipped), (example,),
                               dynamic_shapes=[{0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}])


def _saved(program) -> bytes:
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def _template(shipped: Shipped, weights: dict[str, torch.Tensor]) -> bytes:
    """The pt2 archive of this generator's shape (an ensemble's: its members'), exported on the first
    call for the shape."""
    key = (tuple(g.depth for g in members(shipped)), tuple((k, tuple(v.shape), str(v.dtype))
                                                          for k, v in weights.items()))
    with _lock:
        if key not in _archives:
            _archives[key] = _saved(export(shipped))
        return _archives[key]


def save_program(shipped: Shipped, path: Path) -> None:
    """`segmenter(shipped)` as a pt2 archive at `path` (what `mlflow.pytorch.load_model` reads)."""
    weights = segmenter(shipped).state_dict()
    if not _write_with_weights(_template(shipped, weights), weights, path):
        with _lock:  # an export: no load beside it (load_program)
            path.write_bytes(_saved(export(shipped)))


def _write_with_weights(template: bytes, weights: dict[str, torch.Tensor], path: Path) -> bool:
    """Copy `template` to `path` with each weight record replaced by `weights`' raw bytes; False (nothing
    written) where the archive is not laid out as expected (another torch's format), and it is saved anew."""
    with zipfile.ZipFile(io.BytesIO(template)) as src:
        try:
            config = json.loads(src.read(WEIGHTS_CONFIG))["config"]
        except (KeyError, ValueError):
            return False
        if set(config) != set(weights):
            return False
        records = {}
        for name, entry in config.items():
            meta, t = entry["tensor_meta"], weights[name].detach().contiguous()
            if entry.get("use_pickle") or _ints(meta["sizes"]) != list(t.shape) \
                    or _ints(meta["strides"]) != list(t.stride()) or meta["storage_offset"]["as_int"] != 0:
                return False
            records[f"archive/data/weights/{entry['path_name']}"] = t.numpy().tobytes()
        # (torch's reader copies each record: it needs none of the 64-byte alignment its writer pads to)
        with zipfile.ZipFile(path, "w") as dst:
            for info in src.infolist():
                dst.writestr(info, records[info.filename] if info.filename in records else src.read(info))
    return True


def _ints(symbols: list[dict[str, int]]) -> list[int]:
    return [d["as_int"] for d in symbols]  # a size or stride in the archive's schema: {"as_int": n}


def warm(generator: Generator) -> threading.Thread:
    """Export a generator of this shape once, in the background, so that the models of its shape
    only swap weights (a study starts it as its first trials start). Not a daemon: the interpreter waits for
    it on the way out, as a process that exited mid-export (a study failing in its first seconds) aborted
    (SIGABRT, torch.export's "FakeTensorMode" C++ trace)."""
    thread = threading.Thread(target=_template, args=(generator, segmenter(generator).state_dict()),
                              name="pt2-warm")
    thread.start()
    return thread


def save_model(path: str, mlflow_model, generator: Shipped, config: dict[str, Any] | None = None,
               **_: Any) -> None:
    """MLflow's flavor protocol (`Model.log(flavor=tuner.flavor)` calls it): write the model folder."""
    import yaml
    from mlflow.models.signature import ModelSignature
    from mlflow.pyfunc import add_to_model
    from mlflow.types.schema import DataType, ParamSchema, ParamSpec
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
    save_program(generator, root / "data" / "model.pt2")
    code = root / "code"
    shutil.copytree(VGAN_PACKAGE, code / "vgan", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PYFUNC_MODULE, code / PYFUNC_MODULE.name)
    if config is not None:
        (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    mlflow_model.add_flavor("pytorch", model_data="data", pytorch_version=str(torch.__version__), code="code")
    add_to_model(mlflow_model, loader_module=PYFUNC_MODULE.stem, data="data", code="code",
                 conda_env=_CONDA_ENV_FILE_NAME, python_env=_PYTHON_ENV_FILE_NAME)
    # No input schema: MLflow would refuse float64 and (H, W, C) arrays before vgan_pyfunc could take them.
    # A params schema: without one MLflow drops the params of a predict call or a served request.
    scale = ParamSpec(SCALE_PARAM, DataType.string, SCALE_DEFAULT)
    tta = ParamSpec(TTA_PARAM, DataType.string, TTA_DEFAULT)
    output = ParamSpec(OUTPUT_PARAM, DataType.string, OUTPUTS[0])
    mlflow_model.signature = ModelSignature(params=ParamSchema([scale, tta, output]))
    mlflow_model.metadata = {**(mlflow_model.metadata or {}), "input": INPUT, "output": OUTPUT}
    trained_fov = members(generator)[0].trained_fov  # an ensemble's members share it (EnsembleSegmenter)
    if trained_fov is not None:  # the scale tuner.predict brings photographs to (vgan.scale)
        mlflow_model.metadata["trained_fov_diameter_px"] = trained_fov
    mlflow_model.metadata["smallest_side_px"] = max(2**g.depth for g in members(generator))  # vgan.scale.smallest_side
    if len(members(generator)) > 1:
        mlflow_model.metadata["ensemble_members"] = len(members(generator))
    # torch's local label (+cpu, +cu130) names a wheel index, not a version pip can find: drop it
    requirements = [f"torch=={str(torch.__version__).split('+')[0]}",
                    *(_get_pinned_requirement(p) for p in ("numpy", "pillow", "pydicom", "mlflow"))]  # image files
    (root / _REQUIREMENTS_FILE_NAME).write_text("\n".join(requirements) + "\n")
    with open(root / _CONDA_ENV_FILE_NAME, "w") as f:
        yaml.safe_dump(_mlflow_conda_env(additional_pip_deps=requirements), f)
    _PythonEnv.current().to_yaml(root / _PYTHON_ENV_FILE_NAME)
    mlflow_model.save(str(root / "MLmodel"))


def log_model(generator: Shipped, name: str, run_id: str, config: dict[str, Any] | None = None,
              tags: dict[str, str] | None = None, params: dict[str, str] | None = None):
    """Log `generator` (several: their ensemble) as the logged model `name` of run `run_id`, in the run's
    experiment (the fluent API's store: call it inside `tracking.use_tracking_uri`), with `params` (a trial's
    sampled values: the UI's models table and model page show them). Returns MLflow's ModelInfo (`model_id`,
    `model_uri`)."""
    from mlflow.models import Model
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    # Model.log alone would create the model in the fluent API's active experiment (Default, here: the
    # driver has no active run), its artifacts under ./mlruns
    model = client.create_logged_model(client.get_run(run_id).info.experiment_id, name=name, source_run_id=run_id,
                                       tags=tags, params=params, model_type=MODEL_TYPE)
    # no serving-input validation here: the registry loads and scores what it registers
    return Model.log(artifact_path=None, name=name, flavor=sys.modules[__name__], run_id=run_id,
                     model_id=model.model_id, generator=generator, config=config, validate_serving_input=False)
