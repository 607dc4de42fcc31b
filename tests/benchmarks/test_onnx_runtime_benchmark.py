"""benchmarks.onnx_runtime scores the ONNX file's maps beside PyTorch's, as vgan.evaluate scores a checkpoint."""

import json

import pytest
from models import tiny_checkpoint

from benchmarks.onnx_runtime import KEYS, main
from vgan.evaluate import main as evaluate_main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def test_the_runtimes_score_a_drive_split_alike_and_pytorch_as_vgan_evaluate(checkpoint, drive_root, drive_few,
                                                                              tmp_path, capsys):
    out = tmp_path / "onnx.json"
    assert main(["--checkpoint", str(checkpoint), "--drive", str(drive_few), "--json", str(out),
                 "--int8", str(drive_root / "training" / "images" / "21_training.tif")]) == 0
    result = json.loads(out.read_text())
    torch_row, onnx_row, int8_row = result["rows"]
    assert [r["runtime"] for r in result["rows"]] == ["pytorch", "onnxruntime", "onnxruntime-int8"]
    assert int8_row["max_difference"] > onnx_row["max_difference"] and int8_row["onnx_bytes"] > 0
    assert torch_row["max_difference"] == 0 and onnx_row["max_difference"] < 1e-4
    assert all(abs(torch_row[k] - onnx_row[k]) <= 1.5e-4 for k in KEYS)  # rounded to 4 digits apart
    assert onnx_row["s_per_image"] > 0 and onnx_row["onnx_bytes"] > 0
    assert evaluate_main(["--checkpoint", str(checkpoint), "--data", str(drive_few), "--scale", "1",
                          "--out", str(tmp_path / "eval")]) == 0
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert {k: torch_row[k] for k in KEYS} == {k: round(m[k], 4) for k in KEYS}
    assert len(result["summary"]) == 2 and result["summary"][1].startswith("DRIVE onnxruntime-int8 (1 checkpoint(s))")
    line = result["summary"][0]
    assert line.startswith("DRIVE onnxruntime (1 checkpoint(s)): probabilities differ by up to ")
    assert " s/image PyTorch, " in line and "onnxruntime (x" in line
    assert line in capsys.readouterr().out
