"""Tiny trained generators: a checkpoint as vgan.train writes it, and a trial's best generator as the
projection and the registry see it, without running a study."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import TINY

from tuner.tracking import Study
from tuner.trainable import BestEpoch
from vgan.config import apply_overrides, config_from_dict
from vgan.data import load_train_val
from vgan.trainer import Trainer


def tiny_config(**overrides):
    """TINY's config, overrides by dotted key (`**{"train.seed": 1}`)."""
    return apply_overrides(config_from_dict(TINY), overrides, "test") if overrides else config_from_dict(TINY)


def tiny_checkpoint(folder: Path, **overrides) -> Path:
    """A tiny generator trained one epoch, saved as `folder/best.pt` (vgan.train's checkpoint format);
    overrides as tiny_config's."""
    cfg = tiny_config(**overrides)
    t = Trainer(cfg, *load_train_val(cfg.data), torch.device("cpu"))
    t.run_epoch()
    t.save_checkpoint(folder / "best.pt")
    return folder / "best.pt"


def trial_with_best(tmp_path, **overrides):
    """A tiny trained trial's best/ folder and its child run in a fresh study: (cfg, store uri, study, run id);
    overrides as tiny_config's."""
    cfg = tiny_config(**overrides)
    train, val = load_train_val(cfg.data)
    t = Trainer(cfg, train, val, torch.device("cpu"))
    best = BestEpoch(tmp_path / "work" / "best")
    best.keep(t, t.run_epoch())
    best.copy_into(tmp_path / "best", t)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    study = Study.start(uri, "registry-test", "study", {}, resume=False)
    run = study.client.create_run(study.info.experiment_id, tags={"mlflow.parentRunId": study.info.parent_run_id})
    return cfg, uri, study, run.info.run_id
