"""Ray's per-trial result files (`result.json`, `progress.csv`), kept whole across restarts.

They are the one record `tuner.replay` and the end-of-study pass project into MLflow. Ray's
loggers, when a trial starts again from a checkpoint (a PBT pause or exploit, a retry after a
failure), copy the trial's file from the storage over the driver's own copy. The storage copy
is only as new as the last sync (minutes apart), so every epoch since is lost: in a 6-epoch
PBT smoke study, two of four trials kept only their last epoch's row. These loggers keep the
driver's copy when it has one and take the storage's only when it has none (a new driver
resuming the study).
"""

from __future__ import annotations

from pathlib import Path

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback


class _KeepDriverCopy:
    def _restore_from_remote(self, file_name: str, trial) -> None:
        if not Path(trial.local_path, file_name).is_file():
            super()._restore_from_remote(file_name, trial)


class ResultJson(_KeepDriverCopy, JsonLoggerCallback):
    """Ray's `result.json` logger, which keeps the driver's rows when a trial restarts."""


class ResultCsv(_KeepDriverCopy, CSVLoggerCallback):
    """Ray's `progress.csv` logger, which keeps the driver's rows when a trial restarts."""
