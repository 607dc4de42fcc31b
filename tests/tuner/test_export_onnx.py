"""`python -m tuner.export` of an MLflow model whose program is an ensemble (as `mlflow.ensemble_top` registers
one): one ONNX graph of the mean of its generators, which ONNX Runtime runs as the program does. (The registered
champion's export: tests/tuner/test_serving.py.)"""

import numpy as np
import onnxruntime as ort
import torch
from test_flavor import generator

from tuner import flavor
from tuner.export import main
from vgan.export import read_metadata
from vgan.scale import recorded_fov


def test_an_ensemble_model_folder_exports_as_one_graph_of_its_generators(tmp_path, drive_root, capsys):
    from mlflow.models import Model

    from vgan.images import read_image

    gs = [generator(5, base_width=10), generator(6, base_width=10, depth=3)]  # shapes no other test exports
    for g in gs:
        g.set_fov_diameter(96.0)
    flavor.save_model(str(tmp_path / "m"), Model(), gs)
    out = tmp_path / "ensemble.onnx"
    assert main(["--model", str(tmp_path / "m"), "--out", str(out), "--tracking-uri",
                 f"sqlite:///{tmp_path}/unused.db"]) == 0  # a folder on disk: no store is read
    assert not (tmp_path / "unused.db").exists()
    meta = read_metadata(out)
    assert (meta["generators"], meta["trained_fov_diameter_px"], meta["source"]) == ("2", "96", str(tmp_path / "m"))
    program = flavor.load_program(str(tmp_path / "m"))
    assert recorded_fov(program) == 96.0
    x = torch.from_numpy(read_image(drive_root / "test" / "images" / "01_test.tif")[200:311, 150:277].copy())
    x = (x.permute(2, 0, 1)[None].float() / 255).contiguous()
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["probability"],
                                                                                  {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, program(x).numpy(), atol=1e-5)
    assert "wrote" in capsys.readouterr().out


def test_models_trained_at_different_scales_are_refused_and_nothing_is_written(tmp_path, capsys):
    from mlflow.models import Model

    for name, fov in (("a", 96.0), ("b", 50.0)):
        g = generator(7 if name == "a" else 8, base_width=10)
        g.set_fov_diameter(fov)
        flavor.save_model(str(tmp_path / name), Model(), g)
    out = tmp_path / "both.onnx"
    assert main(["--model", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 2
    assert "--model: the model's generators were trained at different FOV scales ([50.0, 96.0] px)" in \
        capsys.readouterr().err
    assert not out.exists()
