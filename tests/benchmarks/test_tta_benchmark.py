"""benchmarks.tta scores each checkpoint in each mode as vgan.evaluate --tta does, and sums the gains up."""

import json

import pytest
from models import tiny_checkpoint

from benchmarks.tta import KEYS, main
from vgan.evaluate import main as evaluate_main


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return [tiny_checkpoint(tmp_path_factory.mktemp(f"ckpt{i}")) for i in range(2)]


def test_each_mode_scores_as_vgan_evaluate_does(checkpoints, drive_few, tmp_path, capsys):
    out = tmp_path / "tta.json"
    assert main(["--checkpoint", *map(str, checkpoints), "--drive", str(drive_few), "--modes", "hflip",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    # none is always scored: the baseline of every gain
    assert [(r["checkpoint"], r["mode"], r["views"]) for r in rows] == [
        (str(c), m, v) for c in checkpoints for m, v in (("none", 1), ("hflip", 2))]
    assert all(r["dataset"] == "DRIVE" and r["s_per_image"] > 0 for r in rows)
    for row in rows[1:2]:  # (none is vgan.evaluate's protocol: tests/vgan/test_evaluate.py)
        assert evaluate_main(["--checkpoint", row["checkpoint"], "--data", str(drive_few), "--scale", "1",
                              "--tta", row["mode"], "--out", str(tmp_path / row["mode"])]) == 0
        m = json.loads((tmp_path / row["mode"] / "metrics.json").read_text())
        assert {k: row[k] for k in KEYS} == {k: round(m[k], 4) for k in KEYS}
    assert rows[0]["auc_roc"] != rows[1]["auc_roc"]
    gains = [b["auc_roc"] - a["auc_roc"] for a, b in (rows[0:2], rows[2:4])]
    hflip_line = result["summary"][1]
    assert hflip_line.startswith("DRIVE    hflip (2 checkpoint(s)): auc_roc")
    assert f"gain {sum(gains) / 2:+.4f}" in hflip_line
    assert f"AUC-ROC up on {sum(g > 0 for g in gains)} of 2" in hflip_line
    assert hflip_line in capsys.readouterr().out


def test_an_unknown_mode_is_refused(checkpoints, drive_root, capsys):
    with pytest.raises(SystemExit, match="2"):
        main(["--checkpoint", str(checkpoints[0]), "--drive", str(drive_root), "--modes", "flips,rot"])
    assert "--modes: unknown rot (choose from none, hflip, flips, dihedral)" in capsys.readouterr().err
