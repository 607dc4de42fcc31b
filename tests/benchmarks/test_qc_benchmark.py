"""benchmarks.qc builds a screening batch from DRIVE, segments it with vgan.predict --recursive and scores
each report row against DRIVE's labels."""

import json

import numpy as np
import pytest
from models import tiny_checkpoint
from PIL import Image

from benchmarks.qc import main, spoil, summary
from vgan.images import estimate_fov


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def test_the_batch_is_segmented_as_users_run_it_and_each_row_scored(checkpoint, drive_root, stare_root, tmp_path,
                                                                     capsys):
    out = tmp_path / "qc.json"
    work = tmp_path / "work"
    assert main(["--checkpoint", str(checkpoint), "--drive", str(drive_root), "--stare", str(stare_root),
                 "--kinds", "defocus,dark", "--per-kind", "2", "--work", str(work), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert len(rows) == 44 and sum(r["kind"] == "clean" for r in rows) == sum(r["kind"] == "stare" for r in rows) == 20
    assert all(r["name"].startswith("s") and r["name"].endswith("/OD") for r in rows if r["kind"] == "stare")
    spoiled = [r for r in rows if r["kind"] not in ("clean", "stare")]
    assert sorted(r["kind"] for r in spoiled) == ["dark", "dark", "defocus", "defocus"]
    for r in spoiled:  # beside the photograph it spoils, in its patient's folder
        assert r["name"].endswith(f"/OD_{r['kind']}") and (work / "batch" / f"{r['name']}.png").is_file()
        assert (work / "maps" / "probabilities" / f"{r['name']}.png").is_file()
    with open(work / "maps" / "report.csv") as f:
        assert f.read().count("\n") == 45
    assert data["result"] == summary(rows)[0] and data["summary"][0] in capsys.readouterr().out
    assert data["result"]["images"] == 44 and data["result"]["spoiled"] == 4  # STARE's are clean
    assert all(0 <= r["auc_roc"] <= 1 and 0 <= r["vessel_fraction"] <= 1 for r in rows)


def test_spoiling_does_what_it_says(drive_root):
    rgb = np.asarray(Image.open(drive_root / "test" / "images" / "01_test.tif").convert("RGB"))
    inside = estimate_fov(rgb / 255)
    dark, haze, blur = (spoil(rgb, k).astype(float) for k in ("dark", "haze", "defocus"))
    assert np.abs(dark - 0.3 * rgb).max() <= 0.5
    assert np.std(haze[inside], axis=0) == pytest.approx(0.5 * np.std(rgb[inside].astype(float), axis=0), rel=0.02)
    detail = [np.abs(np.diff(x[..., 1], axis=1))[inside[:, 1:]].mean() for x in (rgb.astype(float), blur)]
    assert detail[1] < 0.5 * detail[0]  # the fine structure (the vessels' edges) goes
    with pytest.raises(ValueError, match="unknown kind 'glare'"):
        spoil(rgb, "glare")


def test_an_unknown_kind_is_refused(checkpoint, drive_root, capsys):
    with pytest.raises(SystemExit, match="2"):
        main(["--checkpoint", str(checkpoint), "--drive", str(drive_root), "--kinds", "dark,glare"])
    assert "--kinds: unknown glare (choose from defocus, dark, haze)" in capsys.readouterr().err
