"""Ray's result files kept whole when a trial starts again from a checkpoint (tuner.results)."""

import json

import pyarrow.fs
from ray.tune.logger import JsonLoggerCallback

from tuner.results import ResultCsv, ResultJson


class Trial:
    """What Ray's loggers read of a trial: its driver folder, its storage folder, a checkpoint."""

    def __init__(self, driver, storage):
        self.config, self.local_path, self.checkpoint = {"optim.lr_g": 0.01}, str(driver), "checkpoint_000002"
        self.storage = type("Storage", (), {"trial_fs_path": str(storage),
                                            "storage_filesystem": pyarrow.fs.LocalFileSystem()})()
        self._driver = driver

    def init_local_path(self):
        self._driver.mkdir(parents=True, exist_ok=True)


def restart(tmp_path, logger, driver_has_copy=True):
    """Epochs 1-2 on the driver, storage synced after epoch 1; the trial restarts, reports epoch 3."""
    driver, storage = tmp_path / "driver" / "t", tmp_path / "storage" / "t"
    storage.mkdir(parents=True)
    driver.mkdir(parents=True)
    (storage / "result.json").write_text(json.dumps({"epoch": 1}) + "\n")
    if driver_has_copy:
        (driver / "result.json").write_text("".join(json.dumps({"epoch": e}) + "\n" for e in (1, 2)))
    trial = Trial(driver, storage)
    logger.log_trial_start(trial)
    logger.log_trial_result(3, trial, {"epoch": 3, "config": trial.config})
    logger.on_experiment_end([trial])
    return [json.loads(ln)["epoch"] for ln in (driver / "result.json").read_text().splitlines()]


def test_a_restart_keeps_the_drivers_rows(tmp_path):
    assert restart(tmp_path / "ray", JsonLoggerCallback()) == [1, 3], "Ray's own logger: epoch 2 lost"
    assert restart(tmp_path / "ours", ResultJson()) == [1, 2, 3]


def test_a_new_driver_takes_the_storages_rows(tmp_path):
    assert restart(tmp_path, ResultJson(), driver_has_copy=False) == [1, 3]


def test_they_stand_in_for_rays_own_loggers():
    """Ray adds its JSON and CSV loggers unless it is given loggers of those kinds: then only ours write."""
    from ray.tune.logger import CSVLoggerCallback
    from ray.tune.utils.callback import _create_default_callbacks

    loggers = [c for c in _create_default_callbacks([ResultJson(), ResultCsv()])
               if isinstance(c, (JsonLoggerCallback, CSVLoggerCallback))]
    assert sorted(type(c).__name__ for c in loggers) == ["ResultCsv", "ResultJson"]
