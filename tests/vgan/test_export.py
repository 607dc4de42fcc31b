"""`python -m vgan.export`: a checkpoint's generator as an ONNX file that ONNX Runtime runs as PyTorch does."""

import csv
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from models import tiny_checkpoint
from PIL import Image

from vgan import export
from vgan.export import main, read_metadata
from vgan.images import read_image
from vgan.models import VesselSegmenter
from vgan.predict import main as predict_main
from vgan.trainer import generator_from_checkpoint, load_checkpoint


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two tiny generators trained apart (seeds 0 and 1)."""
    return [tiny_checkpoint(tmp_path_factory.mktemp(f"ckpt{seed}"), **{"train.seed": seed}) for seed in (0, 1)]


@pytest.fixture(scope="module")
def photograph(drive_root) -> np.ndarray:
    """A DRIVE test photograph as the file's users give it: (1, 3, 584, 565) float32 in [0, 1]."""
    return (read_image(drive_root / "test" / "images" / "01_test.tif").transpose(2, 0, 1)[None] / 255.0
            ).astype(np.float32)


def module_of(path) -> VesselSegmenter:
    return VesselSegmenter(generator_from_checkpoint(load_checkpoint(path), str(path), torch.device("cpu"))[0]).eval()


def run_onnx(path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    return session.run(["probability"], {"image": images})[0]


def test_onnx_runtime_segments_a_drive_photograph_as_pytorch_does(checkpoints, photograph, tmp_path, capsys):
    out = tmp_path / "models" / "generator.onnx"  # its folder is made
    assert main(["--checkpoint", str(checkpoints[0]), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out}" in said and "ONNX Runtime gives PyTorch's probabilities to" in said
    got = run_onnx(out, photograph)
    with torch.inference_mode():
        want = module_of(checkpoints[0])(torch.from_numpy(photograph)).numpy()
    assert got.shape == (1, 1, 584, 565) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got.max() - got.min() > 0.01  # a map, not a constant
    # any batch and size, neither a multiple of the U-Net's 2**depth: the padding is in the graph
    batch = np.ascontiguousarray(photograph[:, :, 100:173, 200:251].repeat(3, axis=0))
    with torch.inference_mode():
        np.testing.assert_allclose(run_onnx(out, batch), module_of(checkpoints[0])(torch.from_numpy(batch)).numpy(),
                                   atol=1e-5)
    assert sorted(p.name for p in out.parent.iterdir()) == ["generator.onnx"]  # no temporary file left
    (out.parent / "plain").write_bytes(b"")
    assert out.stat().st_mode == (out.parent / "plain").stat().st_mode  # the umask's, as any file written there


def test_the_metadata_says_what_the_file_is_and_tells_its_batches(checkpoints, drive_root, tmp_path):
    """trained_fov_diameter_px is the generator's; weights_digest is the `model` column of report.csv when
    vgan.predict segments with the same checkpoint."""
    out = tmp_path / "g.onnx"
    assert main(["--checkpoint", str(checkpoints[0]), "--out", str(out), "--opset", "18"]) == 0
    meta = read_metadata(out)
    generator = module_of(checkpoints[0]).generator
    assert float(meta["trained_fov_diameter_px"]) == pytest.approx(generator.trained_fov)
    assert meta["source"] == str(checkpoints[0]) and meta["generators"] == "1"
    assert meta["image"].startswith("float32 (N, 3, H, W), RGB in [0, 1]")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "01_test.tif").write_bytes((drive_root / "test" / "images" / "01_test.tif").read_bytes())
    assert predict_main(["--checkpoint", str(checkpoints[0]), "--input", str(photos), "--out",
                         str(tmp_path / "maps"), "--device", "cpu"]) == 0
    with open(tmp_path / "maps" / "report.csv", newline="") as f:
        assert [row["model"] for row in csv.DictReader(f)] == [meta["weights_digest"]]
    import onnx

    assert {o.domain: o.version for o in onnx.load(str(out)).opset_import}[""] == 18


def test_several_checkpoints_make_one_graph_of_the_mean_of_their_maps(checkpoints, photograph, tmp_path):
    out = tmp_path / "ensemble.onnx"
    assert main(["--checkpoint", *map(str, checkpoints), "--out", str(out)]) == 0
    with torch.inference_mode():
        maps = [module_of(c)(torch.from_numpy(photograph)).numpy() for c in checkpoints]
    assert np.abs(maps[0] - maps[1]).max() > 0.01  # trained apart
    np.testing.assert_allclose(run_onnx(out, photograph), (maps[0] + maps[1]) / 2, atol=1e-5)
    assert read_metadata(out)["generators"] == "2"


def test_generators_trained_at_different_scales_are_refused(checkpoints, tmp_path, capsys):
    state = load_checkpoint(checkpoints[1])
    state["generator"]["fov_diameter"] = torch.tensor(540.0)  # as if trained on another camera's photographs
    other = tmp_path / "other.pt"
    torch.save(state, other)
    assert main(["--checkpoint", str(checkpoints[0]), str(other), "--out", str(tmp_path / "g.onnx")]) == 2
    assert "different FOV scales" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pt"]


def test_bad_input_is_refused_before_any_export(checkpoints, tmp_path, capsys, monkeypatch):
    assert main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "g.onnx")]) == 2
    assert "missing.pt: checkpoint not found" in capsys.readouterr().err
    assert main(["--checkpoint", str(checkpoints[0]), "--out", str(tmp_path)]) == 2
    assert "is a folder; give the name of a file to write" in capsys.readouterr().err
    assert main(["--checkpoint", str(checkpoints[0]), "--out", str(tmp_path / "g.onnx"), "--opset", "17"]) == 2
    assert "--opset 17: torch.onnx writes opsets 18 to" in capsys.readouterr().err  # not 18 silently, as it would
    monkeypatch.setattr(export, "PACKAGES", ("onnx", "vgan_no_such_package"))
    assert main(["--checkpoint", str(checkpoints[0]), "--out", str(tmp_path / "g.onnx")]) == 2
    assert 'needs vgan_no_such_package, not installed here: pip install "vgan-tune[onnx]"' in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.delattr(torch.onnx.ONNXProgram, "rename_axes")  # as in an older exporter
    assert main(["--checkpoint", str(checkpoints[0]), "--out", str(tmp_path / "g.onnx")]) == 2
    assert f"ONNX export needs a newer torch than {torch.__version__}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_onnx_runtime_runs_otherwise_is_not_written_and_the_earlier_one_stays(checkpoints, tmp_path,
                                                                                            capsys, monkeypatch):
    out = tmp_path / "g.onnx"
    out.write_bytes(b"an earlier export")
    monkeypatch.setattr(export, "drift", lambda *a: export.Drift(0.05, 0.01, 0.25))
    assert main(["--checkpoint", str(checkpoints[0]), "--out", str(out)]) == 1
    assert "ONNX Runtime's maps differ from PyTorch's by up to 0.25" in capsys.readouterr().err
    assert out.read_bytes() == b"an earlier export" and sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]


def report_rows(folder) -> list[dict]:
    with open(folder / "report.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_vgan_predict_segments_with_the_onnx_file_as_with_its_checkpoint(checkpoints, drive_root, tmp_path, capsys):
    """The file's batch is its checkpoint's: the same maps (16-bit levels at most 1 apart), the same factors (the
    training FOV read from its metadata), the same weights digest; its settings name the runtime, so a batch is
    continued only by the runtime that began it."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("01_test.tif", "02_test.tif"):
        (photos / name).write_bytes((drive_root / "test" / "images" / name).read_bytes())
    onnx_file = tmp_path / "g.onnx"
    assert main(["--checkpoint", str(checkpoints[0]), "--out", str(onnx_file)]) == 0
    for given, out in ((onnx_file, "by_onnx"), (checkpoints[0], "by_torch")):
        assert predict_main(["--checkpoint", str(given), "--input", str(photos), "--out", str(tmp_path / out),
                             "--device", "cpu"]) == 0
    assert "2 image(s) segmented" in capsys.readouterr().out
    by_onnx, by_torch = report_rows(tmp_path / "by_onnx"), report_rows(tmp_path / "by_torch")
    assert [r["status"] for r in by_onnx] == ["segmented"] * 2
    for a, b in zip(by_onnx, by_torch, strict=True):
        assert (a["name"], a["factors"], a["model"]) == (b["name"], b["factors"], b["model"])
        assert float(a["factors"]) != 1  # a DRIVE photograph brought to the tiny generator's training FOV
        assert a["settings"] == b["settings"] + "; runtime onnxruntime"
        maps = [np.asarray(Image.open(tmp_path / out / "probabilities" / f"{Path(a['name']).stem}.png"), np.int64)
                for out in ("by_onnx", "by_torch")]
        assert maps[0].max() > 0 and np.abs(maps[0] - maps[1]).max() <= 1
    assert predict_main(["--checkpoint", str(checkpoints[0]), "--input", str(photos), "--out",
                         str(tmp_path / "by_onnx"), "--device", "cpu", "--continue"]) == 0
    assert "2 image(s) segmented" in capsys.readouterr().out  # PyTorch does not keep ONNX Runtime's maps


def test_an_onnx_file_of_another_model_or_none_is_bad_input(drive_root, tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    onnx.save(helper.make_model(graph), tmp_path / "other.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"not a graph")
    photo = str(drive_root / "test" / "images" / "01_test.tif")
    for name, said in (("other.onnx", "an ONNX file of another model (inputs ['x'], outputs ['y']"),
                       ("broken.onnx", "not an ONNX file ONNX Runtime"), ("none.onnx", "ONNX file not found")):
        assert predict_main(["--checkpoint", str(tmp_path / name), "--input", photo,
                             "--out", str(tmp_path / "out")]) == 2
        assert f"{tmp_path / name}: {said}" in capsys.readouterr().err


def test_the_file_scores_a_drive_split_as_its_checkpoint_does(checkpoints, drive_few, tmp_path):
    """The shipped file scored on a labelled split as the literature scores (vgan.predict at the images' own size
    with the split's masks, then vgan.evaluate --predictions): the rankings vgan.evaluate gives its checkpoint's
    maps. (This tiny generator calls every pixel a vessel at 0.5, so F1 says nothing here: benchmarks.onnx_runtime
    compares a DRIVE generator's.)"""
    from vgan.evaluate import main as evaluate_main

    onnx_file = tmp_path / "g.onnx"
    assert main(["--checkpoint", str(checkpoints[0]), "--out", str(onnx_file)]) == 0
    assert predict_main(["--checkpoint", str(onnx_file), "--input", str(drive_few / "test" / "images"), "--masks",
                         str(drive_few / "test" / "mask"), "--scale", "1", "--out", str(tmp_path / "maps")]) == 0
    assert evaluate_main(["--predictions", str(tmp_path / "maps"), "--data", str(drive_few), "--split", "test",
                          "--out", str(tmp_path / "by_file")]) == 0
    assert evaluate_main(["--checkpoint", str(checkpoints[0]), "--data", str(drive_few), "--split", "test",
                          "--scale", "1", "--out", str(tmp_path / "by_checkpoint")]) == 0
    by_file, by_checkpoint = (json.loads((tmp_path / d / "metrics.json").read_text())
                              for d in ("by_file", "by_checkpoint"))
    for key in ("auc_roc", "auc_pr", "thin_auc_roc", "thick_auc_roc"):
        assert by_file[key] == pytest.approx(by_checkpoint[key], abs=1e-5), key


def test_int8_quantizes_the_convolutions_on_calibration_photographs_and_says_how_far_it_drifts(
        checkpoints, drive_root, photograph, tmp_path, capsys):
    import onnx

    calibration = [str(drive_root / "training" / "images" / f"{i}_training.tif") for i in (21, 22)]
    float_file, int8_file = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    assert main(["--checkpoint", str(checkpoints[0]), "--out", str(float_file)]) == 0
    assert main(["--checkpoint", str(checkpoints[0]), "--out", str(int8_file), "--quantize", "int8",
                 "--calibration", *calibration]) == 0
    said = capsys.readouterr().out
    assert "its convolutions then quantized to 8 bits: on the calibration photographs mean |difference| " in said
    ops = [node.op_type for node in onnx.load(str(int8_file)).graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops and "Sigmoid" in ops
    meta, float_meta = read_metadata(int8_file), read_metadata(float_file)
    assert meta["quantized"].startswith("int8: convolutions, static QDQ per channel, percentile calibration on 2 "
                                        "photograph(s)")
    assert meta["int8_drift"].startswith("on the calibration photographs: mean |difference| ")
    assert meta["weights_digest"] != float_meta["weights_digest"]  # its maps are not the float weights'
    assert meta["trained_fov_diameter_px"] == float_meta["trained_fov_diameter_px"]
    got, exact = run_onnx(int8_file, photograph), run_onnx(float_file, photograph)
    assert 0 < np.abs(got - exact).mean() < 0.01 and np.abs(got - exact).max() < 0.1
    # vgan.predict runs it as any file, and its report tells it from the float file's batches
    assert predict_main(["--checkpoint", str(int8_file), "--input", calibration[0], "--out", str(tmp_path / "maps"),
                         "--device", "cpu"]) == 0
    assert [row["model"] for row in report_rows(tmp_path / "maps")] == [meta["weights_digest"]]


def test_int8_needs_calibration_photographs_that_can_be_read(checkpoints, tmp_path, capsys):
    out = ["--checkpoint", str(checkpoints[0]), "--out", str(tmp_path / "g.onnx")]
    assert main([*out, "--quantize", "int8"]) == 2
    assert "--quantize int8 needs --calibration PHOTOS" in capsys.readouterr().err
    (tmp_path / "notes.png").write_text("not a photograph")
    assert main([*out, "--calibration", str(tmp_path / "notes.png")]) == 2
    assert "--calibration: only with --quantize int8" in capsys.readouterr().err
    assert main([*out, "--quantize", "int8", "--calibration", str(tmp_path / "notes.png")]) == 2
    assert f"--calibration: {tmp_path / 'notes.png'}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.png"]
