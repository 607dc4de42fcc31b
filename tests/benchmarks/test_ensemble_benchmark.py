"""benchmarks.ensemble scores each generator alone and the ensembles of the first k as vgan.evaluate does."""

import json

import pytest
from models import tiny_checkpoint

from benchmarks.ensemble import main
from benchmarks.tta import KEYS
from vgan.evaluate import main as evaluate_main


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("members")
    return [tiny_checkpoint(root / f"s{i}", **{"train.seed": i}) for i in range(3)]


def test_members_and_ensembles_score_as_vgan_evaluate_does(checkpoints, drive_few, tmp_path, capsys):
    out = tmp_path / "ensemble.json"
    assert main(["--checkpoint", *map(str, checkpoints), "--drive", str(drive_few), "--modes", "none,hflip",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    paths = [str(c) for c in checkpoints]
    assert [(r["mode"], r["members"]) for r in rows] == [
        (mode, members) for mode in ("none", "hflip")
        for members in ([paths[0]], [paths[1]], [paths[2]], paths[:2], paths)]
    for row in (rows[2], rows[4], rows[8]):  # one alone, the mean of 3, the mean of 2 mirrored
        got = tmp_path / f"eval{rows.index(row)}"
        assert evaluate_main(["--checkpoint", *row["members"], "--data", str(drive_few), "--scale", "1",
                              "--tta", row["mode"], "--out", str(got)]) == 0
        m = json.loads((got / "metrics.json").read_text())
        assert {k: row[k] for k in KEYS} == {k: round(m[k], 4) for k in KEYS}, row
    assert rows[4]["s_per_image"] == pytest.approx(sum(r["s_per_image"] for r in rows[:3]), abs=2e-3)
    line = result["summary"][0]
    alone = [r["auc_roc"] for r in rows[:3]]
    assert line.startswith(f"DRIVE     none: alone (mean of 3) {sum(alone) / 3:.4f} / ")
    assert f"mean map of 3 {rows[4]['auc_roc']:.4f} / " in line and f"{rows[4]['auc_roc'] - max(alone):+.4f} / " in line
    assert line in capsys.readouterr().out


@pytest.mark.parametrize("n, extra, fragment", [
    (3, ["--modes", "flips,rot"], "--modes: unknown rot"),
    (1, [], "--checkpoint: an ensemble needs 2 or more"),
])
def test_bad_arguments_are_refused(checkpoints, drive_root, capsys, n, extra, fragment):
    with pytest.raises(SystemExit, match="2"):
        main(["--checkpoint", *map(str, checkpoints[:n]), "--drive", str(drive_root), *extra])
    assert fragment in capsys.readouterr().err
