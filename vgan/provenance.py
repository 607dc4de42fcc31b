"""Which code made a result: the git commit of the checkout the package runs from, and whether it was edited.

A checkpoint records it (`code`), `vgan.evaluate` reports it with the scores, and a study's MLflow runs and
registered versions carry it as tags (`tuner.tracking.source_tags`). A commit alone does not say what ran
when tracked files (code, configs, search spaces) differed from it, so the record says that too.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path
from typing import Any


def code_version(package: Path | None = None) -> tuple[str, bool] | None:
    """(the git commit of the checkout that holds `package` (default: vgan/), whether tracked files differ from
    it); None where the package is no tracked part of a checkout (installed, in an image; a virtual environment
    inside some other checkout is not)."""
    package = package or Path(__file__).resolve().parent

    def git(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *argv], cwd=package, capture_output=True, text=True, timeout=10)

    try:
        if git("ls-files", "--error-unmatch", ".").returncode != 0:
            return None
        head, changed = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no", ":/")
    except (OSError, subprocess.SubprocessError):  # no git
        return None
    return (head.stdout.strip(), bool(changed.stdout.strip())) if head.returncode == 0 else None


# An image holds no checkout: docker/Dockerfile takes the commit as build arguments and keeps them as these.
COMMIT_ENV, DIRTY_ENV = "VGAN_GIT_COMMIT", "VGAN_GIT_DIRTY"


def image_code() -> tuple[str, bool] | None:
    """(the commit an image was built from, whether its tree was edited), as its build said (COMMIT_ENV,
    DIRTY_ENV); None where it said none, or no commit (a hex name of 7 to 40 digits)."""
    commit = os.environ.get(COMMIT_ENV, "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]{7,40}", commit):
        return None
    return commit, os.environ.get(DIRTY_ENV, "").strip().lower() == "true"


@functools.cache
def running_code() -> tuple[str, bool] | None:
    """`code_version` of this checkout, or else `image_code`, asked once per process: every trainer a process
    makes (a study's trials, PBT's restarts, retries) runs the code it imported, and git need not be asked
    again each time."""
    return code_version() or image_code()


def code_record() -> dict[str, Any] | None:
    """The running code as a checkpoint and metrics.json keep it: {"commit": ..., "dirty": ...}, or None."""
    version = running_code()
    return None if version is None else {"commit": version[0], "dirty": version[1]}


def describe_code(record: dict[str, Any] | None) -> str:
    """A code record in words, for a note: "commit 1a2b3c4d5e6f (edited)", or "code of no known commit"."""
    if record is None:
        return "code of no known commit"
    return f"commit {record['commit'][:12]}" + (" (edited)" if record["dirty"] else "")


def code_changed(saved: dict[str, Any] | None, running: dict[str, Any] | None) -> str | None:
    """"<saved> to <running>" where the code that wrote a checkpoint or began a study is not the code resuming
    it, for a note; None where the records agree. Two edited trees of one commit agree: git keeps no record of
    uncommitted edits to tell them apart."""
    return None if saved == running else f"{describe_code(saved)} to {describe_code(running)}"
