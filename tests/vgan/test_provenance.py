"""vgan.provenance: which code made a result."""

import subprocess

from vgan.provenance import COMMIT_ENV, DIRTY_ENV, code_version, image_code


def test_the_code_version_is_the_checkouts_commit_and_says_when_it_was_changed(tmp_path):
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


def test_an_image_says_its_commit_through_its_build_arguments(monkeypatch):
    """docker/Dockerfile keeps its build arguments as these variables: what an installed package, which has no
    checkout to ask, says of its code. Anything that is not a commit says nothing."""
    monkeypatch.delenv(DIRTY_ENV, raising=False)
    monkeypatch.setenv(COMMIT_ENV, "C29EC4E" + "0" * 33)
    assert image_code() == ("c29ec4e" + "0" * 33, False)
    monkeypatch.setenv(DIRTY_ENV, "true")
    assert image_code() == ("c29ec4e" + "0" * 33, True)
    for said in ("", "HEAD", "c29ec4", "unknown", "g" * 40):
        monkeypatch.setenv(COMMIT_ENV, said)
        assert image_code() is None, said
