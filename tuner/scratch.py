"""Node-local scratch folders that do not outlive their process, however it ends.

A trial keeps its best generator and validation probabilities in a scratch folder (about 34 MB for
DRIVE's model) and removes it when it ends. A trial killed outright cannot: the OOM killer, a node's
shutdown, a preempted job, Ray killing the workers of a driver that died. On a GPU node whose /tmp is
small, those folders pile up. So each folder holds a lock (flock) that its process keeps open: the
kernel drops it when the process dies, whatever kills it, and whoever opens a scratch folder on the
node, or stops a study there, removes the folders no process holds. The driver keeps a trial's best
generator in one too while it logs it to MLflow.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # Windows: no flock; folders work, and a killed process's stay, as before
    fcntl = None

TRIAL_PREFIX = "vgan-trial-"  # a trial's: its best epoch, its checkpoints as they are saved
BEST_PREFIX = "vgan-best-"  # the driver's: a trial's best generator, copied from storage to be logged
PREFIXES = (TRIAL_PREFIX, BEST_PREFIX)
LOCK = ".held"


@contextmanager
def scratch(prefix: str = TRIAL_PREFIX, parent: Path | None = None) -> Iterator[Path]:
    """A new folder under `parent` (the temp dir), held for the `with` block, then removed. Folders of
    the same prefix that no process holds, left by killed ones, are removed first."""
    parent = Path(parent or tempfile.gettempdir())
    sweep(prefix, parent)
    # Made under a name sweeps do not match, and locked before it takes its own: no sweep sees it unheld.
    staging = Path(tempfile.mkdtemp(prefix="." + prefix, dir=parent))
    folder = parent / staging.name[1:]
    with open(staging / LOCK, "w") as lock:
        if fcntl is not None:
            with suppress(OSError):  # a file system without locks: only a kill leaves the folder behind
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            staging.rename(folder)  # the lock is on the file, which moves with the folder
            yield folder
        finally:
            # removed while still held, so a sweep cannot take it half removed
            shutil.rmtree(folder if folder.exists() else staging, ignore_errors=True)


def sweep(prefix: str = TRIAL_PREFIX, parent: Path | None = None) -> list[Path]:
    """Remove the scratch folders under `parent` whose process is gone; returns them. A folder still
    held, another user's, or one without a lock (made by a version before this one) is left."""
    removed = []
    if fcntl is None:  # whether a folder's process lives cannot be told
        return removed
    for folder in Path(parent or tempfile.gettempdir()).glob(prefix + "*"):
        try:
            with open(folder / LOCK) as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError while its process lives
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # held, gone meanwhile (another sweep), not ours to open, or no lock in it
            continue
        removed.append(folder)
    return removed
