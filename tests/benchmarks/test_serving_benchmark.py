"""benchmarks.serving on vgan.train checkpoints and a real DRIVE image: every figure written, none asserted."""

import json

import pytest
from models import tiny_checkpoint

from benchmarks.serving import main

KEYS = {"model", "image", "size", "members", "repeat", "local_predict_s", "local_predict_scale_1_s",
        "request_mb_floats", "request_mb_uint8", "served_floats_s", "served_uint8_s", "request_mb_file",
        "served_file_png_s", "response_mb_array", "response_mb_png"}


@pytest.mark.slow
def test_checkpoints_are_logged_as_one_model_served_and_timed(drive_root, tmp_path, capsys, monkeypatch):
    """Two checkpoints: one ensemble model (a single one is how every other test logs a model)."""
    checkpoints = [tiny_checkpoint(tmp_path / f"s{seed}", **{"train.seed": seed}) for seed in (0, 1)]
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "serving.json"
    image = drive_root / "test" / "images" / "01_test.tif"
    assert main(["--checkpoint", *map(str, checkpoints), "--image", str(image), "--repeat", "1",
                 "--json", str(out), "--score", str(drive_root)]) == 0
    row = json.loads(out.read_text())
    assert set(row) == KEYS | {"test"} and set(row["test"]) == {"auc_roc", "auc_pr", "f1"}
    assert row["model"] == " ".join(map(str, checkpoints)) and row["size"] == [584, 565]
    assert all(row[k] > 0 for k in KEYS - {"model", "image", "size", "members", "repeat"}) and row["members"] == 2
    said = capsys.readouterr().out
    assert "01_test.tif 584x565, 2 generator(s): local predict" in said
    assert f"{drive_root} test split: auc_roc {row['test']['auc_roc']:.4f}, auc_pr" in said
    assert not (tmp_path / "mlruns").exists(), "the model goes into the temporary store, not the working directory"


def test_a_model_uri_needs_its_store(drive_root, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--model", "models:/x@champion", "--image", str(drive_root / "test" / "images" / "01_test.tif")])
    assert e.value.code == 2 and "--model needs --tracking-uri" in capsys.readouterr().err
