"""benchmarks.serving on a vgan.train checkpoint and a real DRIVE image: every figure written, none asserted."""

import json

import pytest
from models import tiny_checkpoint

from benchmarks.serving import main

KEYS = {"model", "image", "size", "repeat", "local_predict_s", "local_predict_scale_1_s", "request_mb_floats",
        "request_mb_uint8", "served_floats_s", "served_uint8_s"}


@pytest.mark.slow
def test_a_checkpoint_is_logged_served_and_timed(drive_root, tmp_path, capsys, monkeypatch):
    checkpoint = tiny_checkpoint(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "serving.json"
    image = drive_root / "test" / "images" / "01_test.tif"
    assert main(["--checkpoint", str(checkpoint), "--image", str(image), "--repeat", "1", "--json", str(out)]) == 0
    row = json.loads(out.read_text())
    assert set(row) == KEYS and row["model"] == str(checkpoint) and row["size"] == [584, 565]
    assert all(row[k] > 0 for k in KEYS - {"model", "image", "size", "repeat"})
    assert "01_test.tif 584x565: local predict" in capsys.readouterr().out
    assert not (tmp_path / "mlruns").exists(), "the model goes into the temporary store, not the working directory"


def test_a_model_uri_needs_its_store(drive_root, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--model", "models:/x@champion", "--image", str(drive_root / "test" / "images" / "01_test.tif")])
    assert e.value.code == 2 and "--model needs --tracking-uri" in capsys.readouterr().err
