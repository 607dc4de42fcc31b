"""The study's live driver on this machine, so a `--resume` does not run beside it.

Two drivers of one study would each run trials the other's state does not know, and a resume removes the folders
of trials its saved state does not name (tuner.resume.unsaved_trials). A driver holds a lock (flock, as
tuner.scratch's folders do) on a node-local file named after the study's storage URI for as long as it runs: the
kernel drops it when the process ends, however it ends. A `--resume` that finds the lock held is refused, naming the
holder (its file says who). A driver on another machine cannot be seen from here, nor anything on Windows (no
flock): the resume goes on, as before.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

from vgan.errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_PREFIX = "vgan-driver-"


def lock_path(study_uri: str, parent: Path | None = None) -> Path:
    """The study's lock file in the node's temp dir (a URI is no file name)."""
    digest = hashlib.sha256(study_uri.encode()).hexdigest()[:16]
    return Path(parent or tempfile.gettempdir()) / f"{LOCK_PREFIX}{digest}.lock"


def holder(study_uri: str, parent: Path | None = None) -> str | None:
    """Who drives the study on this machine now (as its lock file says), None where no process does."""
    if fcntl is None:
        return None
    try:
        with open(lock_path(study_uri, parent)) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return f.read().strip() or "a process of this machine"
    except OSError:  # no lock file: no driver since the machine's temp dir was cleared
        pass
    return None


def refusal(name: str, who: str) -> ConfigError:
    return ConfigError(f"--resume: study '{name}' is still run by its driver ({who}): a second driver would run "
                       "trials beside its own; stop it first (Ctrl-C where it runs, or kill -INT with its pid: it "
                       "ends in order and says how to go on), or let it end")


def check_not_running(study_uri: str, name: str) -> None:
    """Before a `--resume`: refused where the study's driver runs on this machine."""
    who = holder(study_uri)
    if who is not None:
        raise refusal(name, who)


@contextmanager
def driving(study_uri: str, name: str, parent: Path | None = None) -> Iterator[None]:
    """This process drives the study for the block: the lock held, its file saying who."""
    if fcntl is None:
        yield
        return
    path = lock_path(study_uri, parent)
    with open(path, "a+") as f:
        held = True
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # begun since this one's pre-flight looked
            f.seek(0)
            raise refusal(name, f.read().strip()) from None
        except OSError:  # a temp dir without locks: nothing to tell a resume
            held = False
        if held:
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
            f.flush()
        try:
            yield
        finally:
            if held:
                with suppress(OSError):  # removed while held: a resume that opened it since finds it free, rightly
                    path.unlink()
