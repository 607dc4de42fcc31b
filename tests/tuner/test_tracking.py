"""tuner.tracking: what MLflow's stores print on a study's console."""

import logging

from tuner.tracking import SecondaryPipelineError  # noqa: F401 - importing tuner.tracking installs the filter


def test_psycopgs_echo_of_an_error_already_raised_is_dropped_and_its_other_warnings_kept(caplog):
    """On a PostgreSQL store MLflow raises and handles an IntegrityError for a metric a run holds (a best epoch's
    metrics linked to its model), and psycopg warned of the aborted pipeline at every trial's end."""
    log = logging.getLogger("psycopg")
    with caplog.at_level(logging.WARNING):
        log.warning("error ignored terminating %r: %s", "<psycopg.Pipeline [INERROR]>", "pipeline aborted")
        log.warning("unknown PostgreSQL timezone: %r; will use UTC", "Mars/Olympus")
    assert [r.getMessage() for r in caplog.records] == ["unknown PostgreSQL timezone: 'Mars/Olympus'; will use UTC"]


def test_the_code_version_is_the_checkouts_commit_and_says_when_it_was_changed(tmp_path):
    import subprocess

    from tuner.tracking import code_version

    def git(*argv: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *argv], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "space.yaml").write_text("tune: {}\n")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    head = git("rev-parse", "HEAD")
    assert code_version(tmp_path / "pkg") == (head, False)
    (tmp_path / "pkg" / "notes.txt").write_text("untracked: no change to the code\n")
    assert code_version(tmp_path / "pkg") == (head, False)
    (tmp_path / "space.yaml").write_text("tune: {num_samples: 3}\n")  # a tracked file outside the package
    assert code_version(tmp_path / "pkg") == (head, True)
    (tmp_path / "venv" / "pkg").mkdir(parents=True)  # installed into an environment inside the checkout
    assert code_version(tmp_path / "venv" / "pkg") is None
    plain = tmp_path.parent / f"{tmp_path.name}-plain"  # no checkout at all
    plain.mkdir()
    assert code_version(plain) is None
