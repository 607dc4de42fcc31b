"""The Ray Tune trainable: one vgan training, one report per epoch.

Lives in an importable module (not `__main__`) because Ray pickles it by reference;
`Tuner.restore` hangs on functions defined in a script.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from ray import tune

from tuner.cluster import FAULTS_ENV
from tuner.storage import checkpoint_dirs
from tuner.tracking import BEST_DIR, TrackingInfo, TrialRun, write_json
from vgan.config import DataConfig, apply_overrides, config_from_dict, from_dict
from vgan.data import Split, check_crop, load_train_val
from vgan.errors import DivergenceError
from vgan.trainer import Trainer, load_checkpoint, resolve_device
from vgan.visualize import save_curves, save_previews

STATE_FILE = "state.pt"
TRIAL_FILE = "trial.json"


@dataclass
class TrialContext:
    """Everything a trial needs besides its sampled params (plain values: Ray pickles it)."""

    base: dict[str, Any]
    tracking: TrackingInfo
    checkpoint_every: int
    metric: str = "val_auc_roc"
    mode: str = "max"
    outage_window_s: float = 600.0


# Fields that change how images are augmented, not which images are read.
_NOT_READ = ("crop_size", "augment_strength", "flip")


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


def restore(recorded: tune.Checkpoint | None, trainer: Trainer, best: Path) -> dict[str, Any]:
    """Load the trial's newest complete checkpoint into `trainer` (and its best/ into `best`);
    returns what it saved of the trial (trial.json), {} for a first start.

    The driver's experiment state can name an older checkpoint than the newest: its snapshots
    lag, and a driver killed between two forgets the later checkpoints (resuming from those
    would re-run, and re-log, epochs that were done). A newer one cut short by the kill is
    skipped; the recorded one must load."""
    if recorded is None:
        return {}
    here = recorded.path.rstrip("/")
    for path in reversed([p for p in checkpoint_dirs(recorded.filesystem, here.rsplit("/", 1)[0]) if p > here]):
        try:
            return _load(tune.Checkpoint(path=path, filesystem=recorded.filesystem), trainer, best)
        except Exception:  # noqa: BLE001 - an unreadable newer checkpoint: try the next older one
            continue
    return _load(recorded, trainer, best)


def _load(checkpoint: tune.Checkpoint, trainer: Trainer, best: Path) -> dict[str, Any]:
    with checkpoint.as_directory() as d:
        state = load_checkpoint(Path(d) / STATE_FILE)
        saved = json.loads((Path(d) / TRIAL_FILE).read_text())
        shutil.rmtree(best, ignore_errors=True)  # a newer checkpoint may have failed halfway through
        if (Path(d) / BEST_DIR).is_dir():
            shutil.copytree(Path(d) / BEST_DIR, best)
    trainer.load_state_dict(state, "trial checkpoint")
    return saved


def inject_faults(trainer: Trainer) -> None:
    """Fault injection for the fault-tolerance tests: with $VGAN_FAULTS naming a folder, a
    trial about to run epoch N claims (deletes) a file `raise-at-N.*` there if it can, and then
    raises halfway through that epoch, after real optimizer steps. One file, one fault: the
    files say how many times, the claim makes each happen once."""
    folder = os.environ.get(FAULTS_ENV)
    if not folder:
        return
    epoch = trainer.epoch + 1
    for path in sorted(Path(folder).glob(f"raise-at-{epoch}.*")):
        try:
            path.unlink()
        except FileNotFoundError:
            continue  # another trial claimed it first
        per_step = 1 + (trainer.cfg.loss.n_critic if trainer.D is not None else 0)  # critic batches too
        draw, left = trainer.next_batch, max(1, trainer.steps_per_epoch * per_step // 2)

        def next_batch_then_fail():
            nonlocal left
            left -= 1
            if left < 0:
                raise RuntimeError(f"injected fault in epoch {epoch} ({path.name})")
            return draw()

        trainer.next_batch = next_batch_then_fail  # this attempt's trainer only: a retry builds a new one
        return


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def save_best(folder: Path, trainer: Trainer, probs: torch.Tensor, record: dict[str, float]) -> None:
    """The best epoch's generator, previews, ROC/PR plots and metrics, ready for MLflow."""
    from vgan.metrics import curves

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    torch.save({"state_dict": trainer.G.state_dict(), "model_config": asdict(trainer.cfg.model),
                "epoch": trainer.epoch}, folder / "best_generator.pt")
    v = trainer.val
    p, y, m = probs.cpu().numpy(), v.labels.cpu().numpy(), v.masks.cpu().numpy()
    save_previews(folder, "val", v.ids, v.images.cpu().numpy(), p, y, m)
    inside = m > 0.5
    metrics = {k[4:]: val for k, val in record.items() if k.startswith("val_")}
    save_curves(folder, curves(p[inside].astype(float), y[inside] > 0.5), metrics, f"validation, epoch {trainer.epoch}")
    write_json(folder / "metrics.json", {"epoch": trainer.epoch, **record})


def train_vgan(config: dict[str, Any], ctx: TrialContext) -> None:
    """Ray Tune function trainable; `config` holds the sampled dotted keys."""
    cfg = apply_overrides(config_from_dict(ctx.base), config, "sampled config")
    train, val = load_data(cfg.data)
    trainer = Trainer(cfg, train, val, resolve_device(cfg.train.device))
    work = Path(tempfile.mkdtemp(prefix="vgan-trial-"))
    best = work / BEST_DIR
    try:
        # a restarted trial continues where its newest checkpoint left it
        saved = restore(tune.get_checkpoint(), trainer, best)
        run = TrialRun.open(ctx.tracking, tune.get_context().get_trial_id(), _node_id(), config,
                            yaml.safe_dump(cfg.to_dict(), sort_keys=False), saved.get("mlflow_run_id"))
        run.seconds += saved.get("mlflow_s", 0.0)
        if trainer.epoch >= cfg.train.epochs and saved.get("report") is not None:
            # Finished before a driver was killed, after its state was saved: say so again, or the
            # driver would take its last remembered (early) epoch for the end and call it pruned.
            run.log_best(best, ctx.outage_window_s)
            tune.report(saved["report"])
            return
        for _ in range(trainer.epoch, cfg.train.epochs):
            inject_faults(trainer)
            try:
                result = trainer.run_epoch()
            except DivergenceError as e:
                # Deterministic: a retry would diverge again. End the trial and say why; the driver
                # marks it failed and Optuna hears FAIL.
                worst = -math.inf if ctx.mode == "max" else math.inf
                run.deliver(ctx.outage_window_s)
                tune.report({"epoch": e.epoch, ctx.metric: worst, "diverged": 1, "error": str(e),
                             "mlflow_run_id": run.run_id, "mlflow_s": run.seconds})
                return
            if result.is_best:
                save_best(best, trainer, result.probs, result.record)
            run.log_epoch(result.record)
            metrics = {**result.record, "best_" + cfg.train.select_metric: trainer.best_score,
                       "mlflow_run_id": run.run_id}
            last = trainer.epoch == cfg.train.epochs
            if trainer.epoch % ctx.checkpoint_every == 0 or last:
                with tempfile.TemporaryDirectory(prefix="vgan-ckpt-") as d:
                    trainer.save_checkpoint(Path(d) / STATE_FILE)
                    if best.is_dir():
                        shutil.copytree(best, Path(d) / BEST_DIR)
                    if last:  # log the model before the final report: Tune may end the actor after it
                        run.log_best(best, ctx.outage_window_s)
                    report = {**metrics, "mlflow_s": run.seconds}
                    (Path(d) / TRIAL_FILE).write_text(json.dumps({"mlflow_run_id": run.run_id,
                                                                  "mlflow_s": run.seconds, "report": report}))
                    tune.report(report, checkpoint=tune.Checkpoint.from_directory(d))
            else:
                tune.report({**metrics, "mlflow_s": run.seconds})
    finally:
        shutil.rmtree(work, ignore_errors=True)
