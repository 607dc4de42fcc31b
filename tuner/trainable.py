"""The Ray Tune trainable: one vgan training, one report per epoch, a checkpoint every few.

A trial knows nothing of MLflow or Optuna: everything it knows goes into its reports (the
epoch's metrics, its score so far, its node) and its checkpoints (both networks, optimizers
and RNG to resume; `best/` with the best epoch's generator, metrics and validation
probabilities). The driver projects those into MLflow (`tuner.projection`).

Lives in an importable module (not `__main__`) because Ray pickles it by reference;
`Tuner.restore` hangs on functions defined in a script.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ray import tune

from tuner.outcome import Signal, score_key
from tuner.scratch import scratch
from tuner.storage import (
    BEST_DIR,
    GENERATOR_FILE,
    METRICS_FILE,
    PROBS_FILE,
    checkpoint_dirs,
    checkpoint_number,
    in_folder,
    newest_index,
)
from vgan.config import Config, DataConfig, apply_overrides, config_from_dict, from_dict
from vgan.data import Split, check_crop, load_train_val
from vgan.errors import DivergenceError
from vgan.provenance import describe_environment
from vgan.trainer import EpochResult, Trainer, fit, load_checkpoint, resolve_device

STATE_FILE = "state.pt"
TRIAL_FILE = "trial.json"
WALL_TIME = "wall_time"  # a report's time in seconds, to the microsecond, as the trial stamps it
REPEATS = "repeats"  # on a report that says again one made before: that one's WALL_TIME
ORPHAN = "orphan"  # restore's answer: the checkpoint it loaded that Ray does not know, to delete once superseded
SUPERSEDES = "supersedes"  # in a report: that checkpoint, which the report's own supersedes (search.SupersededDeleted)


@dataclass
class TrialContext:
    """Everything a trial needs besides its sampled params (plain values: Ray pickles it)."""

    base: dict[str, Any]
    checkpoint_every: int
    signal_window: int = 1


# Fields that change how images are augmented, not which images are read.
_NOT_READ = ("crop_size", "augment_strength", "grey_prob", "flip")


@functools.lru_cache(maxsize=2)
def _train_val(data_key: str) -> tuple[Split, Split]:
    cfg = from_dict(DataConfig, json.loads(data_key), "trial data")
    cfg.crop_size = None
    return load_train_val(cfg)


def load_data(cfg: DataConfig) -> tuple[Split, Split]:
    """Read once per worker process: reused actors train many trials on the same images."""
    key = {k: v for k, v in asdict(cfg).items() if k not in _NOT_READ}
    train, val = _train_val(json.dumps(key, sort_keys=True))
    check_crop(cfg, train)  # crop_size is searchable: check it for this trial
    return train, val


def restore(recorded: tune.Checkpoint | None, trainer: Trainer, best: Path,
            storage: Any | None = None) -> dict[str, Any]:
    """Load the trial's newest complete checkpoint into `trainer` (and its best/ into `best`);
    returns what it saved of the trial (trial.json), {} for a first start. `storage`: the trial's
    Ray StorageContext (where its checkpoints are, how the next one is named).

    The driver's experiment state can name an older checkpoint of the trial's own than the newest,
    or none: its snapshots lag, and a driver killed between two forgets the later checkpoints
    (resuming from those, or from scratch, would train again epochs that were done). So the newest
    checkpoint in the trial's folder is taken, one cut short by the kill skipped, and it comes back
    with `unseen`: the driver may have died before its report. A checkpoint of another trial (PBT's
    exploit) is taken as named: that trial trained on since.

    The same lagging state numbers the trial's next checkpoint: from its index the restored trial wrote
    over older folders of its own (a study resumed here had checkpoint_000003 holding epoch 5), and a
    folder left from before the kill looked newest by name. So numbering goes on after the newest.

    Ray's num_to_keep deletes only the checkpoints its state knows: those written after it was saved are
    deleted here, the older ones at once (the one loaded holds all they hold, its best/ included), the
    one loaded (answered as ORPHAN) by the driver once the trial reports its next (search.SupersededDeleted)."""
    if storage is None:
        return _load(recorded, trainer, best) if recorded is not None else {}
    fs, folder = storage.storage_filesystem, storage.trial_fs_path.rstrip("/")
    own = checkpoint_dirs(fs, folder)
    storage.current_checkpoint_index = newest_index(storage.current_checkpoint_index, own)
    if recorded is None or in_folder(recorded.path, folder):
        after = checkpoint_number(recorded.path) if recorded is not None else -1
        unknown = [p for p in own if checkpoint_number(p) > after]  # to Ray: its num_to_keep never deletes them
        # a copy the kill cut short lacks files: nothing supersedes it (numbering goes on after it), and left, it
        # stayed in storage for good; one whole but unreadable (the storage's error?) is skipped and kept
        cut = [p for p in unknown if cut_short(fs, p)]
        for path in cut:
            delete_checkpoint(fs, path)
        unknown = [p for p in unknown if p not in cut]
        for i in reversed(range(len(unknown))):
            try:
                saved = _load(tune.Checkpoint(path=unknown[i], filesystem=fs), trainer, best)
            except Exception:  # noqa: BLE001 - an unreadable newer checkpoint: try the next older one
                continue
            for path in unknown[:i]:  # what the one loaded holds, and more
                delete_checkpoint(fs, path)
            return {**saved, "unseen": True, ORPHAN: unknown[i]}
    return _load(recorded, trainer, best) if recorded is not None else {}


def cut_short(fs, path: str) -> bool:
    """Whether a checkpoint folder lacks a file every checkpoint the trainable writes has: its copy into storage
    was cut short (Ray copies the files one by one; a driver killed then takes the trial's workers with it)."""
    from pyarrow.fs import FileType

    infos = fs.get_file_info([f"{path}/{STATE_FILE}", f"{path}/{TRIAL_FILE}"])
    return any(info.type == FileType.NotFound for info in infos)


def delete_checkpoint(fs, path: str) -> None:
    """A superseded checkpoint folder deleted: one gone already is left so."""
    try:
        fs.delete_dir(path)
    except FileNotFoundError:
        pass
    except OSError as e:  # disk space, not the trial's work, is lost
        print(f"could not delete the superseded checkpoint {path}: {e}")


def _storage() -> Any | None:
    """This trial's Ray StorageContext: where its checkpoints are, and how the next one is named."""
    try:
        return tune.get_context().get_storage()
    except Exception:  # noqa: BLE001 - a DeveloperAPI: without it, a trial Ray names no checkpoint for starts anew
        return None


def _load(checkpoint: tune.Checkpoint, trainer: Trainer, best: Path) -> dict[str, Any]:
    with checkpoint.as_directory() as d:
        state = load_checkpoint(Path(d) / STATE_FILE)
        saved = json.loads((Path(d) / TRIAL_FILE).read_text())
        shutil.rmtree(best, ignore_errors=True)  # a newer checkpoint may have failed halfway through
        if (Path(d) / BEST_DIR).is_dir():
            shutil.copytree(Path(d) / BEST_DIR, best)
    trainer.load_state_dict(state, "trial checkpoint")
    return saved


class BestEpoch:
    """The best epoch so far: its generator and validation probabilities kept in host memory when
    it happens, written into `folder` only when a checkpoint takes it. The driver renders the
    previews and plots from it once, when it logs the trial's model (tuner.projection)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._pending: tuple[dict[str, Any], int, torch.Tensor, dict[str, float]] | None = None

    def keep(self, trainer: Trainer, result: EpochResult) -> None:
        self._pending = (trainer.best_generator(), trainer.epoch, result.probs.cpu(), dict(result.record))

    def copy_into(self, dest: Path, trainer: Trainer) -> None:
        if self._pending is not None:
            weights, epoch, probs, record = self._pending
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True)
            torch.save({"state_dict": weights, "model_config": asdict(trainer.cfg.model), "epoch": epoch},
                       self.folder / GENERATOR_FILE)
            np.save(self.folder / PROBS_FILE, probs.numpy().astype(np.float16))  # 2.6 MB for DRIVE's 4
            (self.folder / METRICS_FILE).write_text(json.dumps({"epoch": epoch, **record}, indent=2) + "\n")
            self._pending = None
        if self.folder.is_dir():
            shutil.copytree(self.folder, dest)


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def report_now(metrics: dict[str, Any], checkpoint: tune.Checkpoint | None = None) -> None:
    """`tune.report`, stamped when it is made (WALL_TIME) unless `metrics` carry their stamp already (a
    report saved in its checkpoint). Ray's own `timestamp` is whole seconds, and the projection orders a
    PBT trial's schedule by time: a clone restarts and reports within the second of the exploit. The
    stamp is also what tells a report said again (REPEATS) from an epoch trained again."""
    tune.report({WALL_TIME: time.time(), **metrics}, checkpoint=checkpoint)


def said_again(report: dict[str, Any]) -> dict[str, Any]:
    """A saved report, to report again now: stamped now, marked with the original's stamp (REPEATS), so
    the projection logs it only on a run that lacks the original."""
    return {**report, WALL_TIME: time.time(), **({REPEATS: report[WALL_TIME]} if WALL_TIME in report else {})}


def train_vgan(config: dict[str, Any], ctx: TrialContext) -> None:
    """Ray Tune function trainable; `config` holds the sampled dotted keys."""
    cfg = apply_overrides(config_from_dict(ctx.base), config, "sampled config")
    train, val = load_data(cfg.data)
    trainer = Trainer(cfg, train, val, resolve_device(cfg.train.device))
    with scratch() as work:
        _train(cfg, ctx, trainer, work)


def _train(cfg: Config, ctx: TrialContext, trainer: Trainer, work: Path) -> None:
    score, epochs = score_key(cfg.train.select_metric, ctx.signal_window), cfg.train.epochs
    # where it trains, for its run's tags: the node, and what it runs on there (a cluster's nodes may differ)
    place = {"node_id": _node_id(), "environment": describe_environment(trainer.environment)}
    signal = Signal(ctx.signal_window)
    best = BestEpoch(work / BEST_DIR)
    # a restarted trial continues where its newest checkpoint left it
    storage = _storage()
    saved = restore(tune.get_checkpoint(), trainer, best.folder, storage)
    orphan = saved.get(ORPHAN)
    if "signal" in saved:
        signal = Signal(**saved["signal"])
    # Say the restored checkpoint's report again where the driver may not have it: a trial that finished
    # before a driver was killed (else the driver takes its last remembered, early, epoch for the end and
    # calls it pruned; a PBT clone of a finished trial ends so too), or a checkpoint of its own newer
    # than the driver's state knew (the kill may have kept its report from the driver)
    finished = trainer.epoch >= epochs
    if saved.get("report") is not None and (finished or saved.get("unseen")):
        report_now(said_again(saved["report"]))
        if finished:
            return

    def on_epoch(result: EpochResult) -> None:
        nonlocal orphan
        if result.is_best:
            best.keep(trainer, result)
        value = signal.update(result.record[f"val_{cfg.train.select_metric}"])
        report = {**result.record, score: value, "best_epoch": trainer.best_epoch, **place}
        # Also on a new best epoch: a trial can be stopped at any report (ASHA, PBT, a time budget),
        # and its best generator must be in its newest checkpoint, the one the driver logs.
        if trainer.epoch % ctx.checkpoint_every and trainer.epoch < epochs and not result.is_best:
            report_now(report)
            return
        with tempfile.TemporaryDirectory(prefix="ckpt-", dir=work) as d:
            trainer.save_checkpoint(Path(d) / STATE_FILE)
            best.copy_into(Path(d) / BEST_DIR, trainer)
            report[WALL_TIME] = time.time()  # saved with it: a report said again names the original by it
            (Path(d) / TRIAL_FILE).write_text(json.dumps({"report": report, "signal": asdict(signal)}))
            # the driver deletes the orphan on this report: a trial stopped at it (its last epoch, an ASHA rung,
            # the time budget) never runs what follows it, and the orphan stayed for good
            report_now({**report, SUPERSEDES: orphan} if orphan else report, tune.Checkpoint.from_directory(d))
        orphan = None

    try:
        fit(trainer, on_epoch)
    except DivergenceError as e:
        # Deterministic: a retry would diverge again. End the trial and say why (tuner.outcome
        # makes it failed, Optuna hears FAIL); its score drops to the worst so no view picks it.
        report_now({"epoch": e.epoch, score: -math.inf, "diverged": 1, "error": str(e), **place})
