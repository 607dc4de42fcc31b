"""tuner.replay's input: the study it names must be one in the storage, and nothing is written otherwise."""

import pytest
from studies import SMOKE

from tuner.replay import main


@pytest.mark.parametrize("name, fragment", [
    ("../ray", "--name '../ray': use letters, digits"),  # a folder outside the storage
    ("nope", "--name: no study 'nope' in "),
    ("empty", "holds no study (neither Ray's state nor recipe.json)"),
])
def test_replay_refuses_what_is_not_a_study_before_mlflow(tmp_path, capsys, name, fragment):
    (tmp_path / "ray" / "empty").mkdir(parents=True)
    code = main(["--space", str(SMOKE), "--name", name, "--storage", str(tmp_path / "ray"),
                 "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1, err
    assert not (tmp_path / "mlflow.db").exists()
