"""benchmarks.scale writes every row it prints: each case fed as it is, at auto and around auto."""

import json

import pytest
import torch
from models import tiny_checkpoint

from benchmarks.scale import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))
    return path, float(torch.load(path, weights_only=True)["generator"]["fov_diameter"])


def test_every_row_is_written(checkpoint, drive_root, stare_root, tmp_path, capsys):
    path, trained = checkpoint
    out = tmp_path / "scale.json"
    assert main(["--checkpoint", str(path), "--drive", str(drive_root), "--stare", str(stare_root),
                 "--zooms", "0.5,1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["meta"]["trained_fov_diameter"] == trained
    rows = result["rows"]
    assert [r["case"] for r in rows] == ["DRIVE x0.5"] * 4 + ["DRIVE x1"] * 4 + ["STARE"] * 4
    assert [r["size"] for r in rows[::4]] == [[292, 282], [584, 565], [605, 700]]
    for first in range(0, 12, 4):
        as_is, auto, smaller, larger = rows[first : first + 4]
        # factor and diameter are means over the images: equal to a thousandth
        assert as_is["factor"] == 1 and auto["factor"] == pytest.approx(trained / auto["fov_diameter"], rel=1e-3)
        assert smaller["factor"] == pytest.approx(0.8 * auto["factor"]) and larger["factor"] > auto["factor"]
        assert all(0 <= r[k] <= 1 for r in (as_is, auto) for k in ("auc_roc", "auc_pr", "f1"))
    assert rows[0]["fov_diameter"] == pytest.approx(rows[4]["fov_diameter"] / 2, rel=0.01)
    assert "STARE" in capsys.readouterr().out


def test_a_generator_without_a_recorded_scale_is_refused(checkpoint, drive_root, tmp_path, capsys):
    state = torch.load(checkpoint[0], weights_only=True)
    del state["generator"]["fov_diameter"]
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(tmp_path / "old.pt"), "--drive", str(drive_root)])
    assert e.value.code == 2 and "records no training FOV diameter" in capsys.readouterr().err
