"""benchmarks.model_save writes every figure it prints; figures are printed, not asserted as speed."""

import json

import pytest
from conftest import REPO

from benchmarks.model_save import main


def test_every_figure_is_written(tmp_path, capsys):
    out = tmp_path / "save.json"
    assert main(["--space", str(REPO / "search_spaces" / "smoke.yaml"), "--models", "2", "--json", str(out)]) == 0
    row = json.loads(out.read_text())
    assert row["model"]["base_width"] > 0
    assert all(row[k] > 0 for k in ("first_save_s", "next_saves_s", "fresh_export_save_s", "log_model_s",
                                                   "load_imports_s", "load_model_s"))
    assert "weights swapped" in capsys.readouterr().out


def test_one_model_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--space", str(REPO / "search_spaces" / "smoke.yaml"), "--models", "1"])
    assert e.value.code == 2 and "--models must be at least 2" in capsys.readouterr().err
