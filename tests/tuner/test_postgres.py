"""A study kept on PostgreSQL, as a cluster keeps it (docker/): the Optuna study and MLflow's tracking store
on one server, then continued and replayed. Runs where VGAN_TEST_POSTGRES names a server on which the tests may
make and drop databases (postgresql://USER[:PASSWORD]@HOST:PORT, with the cluster extra installed); skipped
elsewhere: CI has no PostgreSQL. docs/search.md, "Checks, clusters and GPUs", says how to start one."""

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from studies import ONE_STUDY_AT_A_TIME, quick_smoke, trial_runs

SERVER = os.environ.get("VGAN_TEST_POSTGRES", "").rstrip("/")
pytestmark = [pytest.mark.slow, ONE_STUDY_AT_A_TIME,
              pytest.mark.skipif(not SERVER, reason="VGAN_TEST_POSTGRES names no PostgreSQL server")]


@pytest.fixture
def databases():
    """make(): a new empty database on the server, its URL; all dropped afterwards."""
    import sqlalchemy

    admin = sqlalchemy.create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    made = []

    def make() -> str:
        name = f"vgan_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as c:
            c.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
        made.append(name)
        return f"{SERVER}/{name}"

    yield make
    with admin.connect() as c:
        for name in made:
            c.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def test_a_study_on_postgresql_runs_resumes_and_replays_cleanly(databases, tmp_path, capsys):
    import optuna

    from tuner.replay import main as replay_main
    from tuner.run import main as run_main
    from tuner.storage import shown_url

    study_db, tracking, replayed = databases(), databases(), databases()
    space = quick_smoke(tmp_path / "space.yaml", experiment="pg", tune={"num_samples": 3})
    common = ["--space", str(space), "--storage", str(tmp_path / "ray"), "--name", "s"]
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # Ray's socket paths must be short
    try:
        proc = subprocess.run([sys.executable, "-m", "tuner.run", *common, "--study-db", study_db,
                               "--tracking-uri", tracking], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmp)})
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said[-4000:]
    # MLflow's SQL store handles a metric logged again (a best epoch linked to its model) by catching an
    # IntegrityError; psycopg used to echo it on the console at every trial's end
    assert "error ignored" not in said and "Traceback" not in said, said[-4000:]

    trials = optuna.load_study(study_name="s", storage=study_db).trials
    assert len(trials) == 3 and all(t.state.is_finished() for t in trials), [t.state for t in trials]
    client, runs = trial_runs(tracking, "pg", "s")
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(int(r.data.tags["optuna_trial_number"]) for r in runs) == [0, 1, 2]
    assert all(r.data.metrics.get("best_val_auc_roc", 0) > 0.5 for r in runs)
    assert int(client.get_model_version_by_alias("pg", "champion").version) == 1

    # continued without the --study-db it began with: refused before Ray starts, naming it
    assert run_main([*common, "--resume", "--tracking-uri", tracking]) == 2
    assert f"holds no study 's'; it began with --study-db {shown_url(study_db)}" in capsys.readouterr().err

    # replayed into an empty tracking store: every trial's run, linked to its Optuna trial
    assert replay_main([*common, "--tracking-uri", replayed, "--study-db", study_db]) == 0
    client, runs = trial_runs(replayed, "pg", "s")
    assert len(runs) == 3 and sorted(int(r.data.tags["optuna_trial_number"]) for r in runs) == [0, 1, 2]
    assert "error ignored" not in capsys.readouterr().err
