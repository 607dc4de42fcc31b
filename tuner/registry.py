"""Model Registry: the best trial's generator becomes a version of `vgan-generator`.

The candidate was chosen on validation; here the test split is read for the first time,
to score exactly the logged model users will load. The new version is aliased
`challenger`; it takes `champion` only if there is none yet or it beats the current
champion's test AUC-ROC by `promote_margin`.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tuner.tracking import use_tracking_uri
from vgan.config import Config
from vgan.data import Split, load_split, load_train_val, split_fingerprint
from vgan.trainer import split_metrics

CHALLENGER, CHAMPION = "challenger", "champion"


@dataclass
class Registration:
    name: str
    version: str
    test_metrics: dict[str, float]
    promoted: bool
    reason: str


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@torch.no_grad()
def score_model(model, split: Split, threshold: float = 0.5, batch_size: int = 1) -> dict[str, float]:
    """FOV-pooled metrics of a loaded model (RGB [0,1] in, probabilities out) on a split."""
    probs = torch.cat([model(split.images[i : i + batch_size]) for i in range(0, len(split), batch_size)])
    return split_metrics(probs, split, threshold)


def champion_test_auc(client: MlflowClient, name: str) -> tuple[str, float] | None:
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    return str(mv.version), float(mv.tags.get("test_auc_roc", "nan"))


def registered_version(client: MlflowClient, name: str, model_uri: str) -> str | None:
    """The version already made from this logged model (a resumed study must not register it twice)."""
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    return next((str(v.version) for v in versions if v.source == model_uri), None)


def register_candidate(uri: str, name: str, model_uri: str, run_id: str, cfg: Config,
                       val_metrics: dict[str, float], margin: float, study: str) -> Registration:
    # MLflow resolves a models:/ URI through its global store, in load_model and also inside
    # the registry's create_model_version: scope the whole registration to this study's store.
    with use_tracking_uri(uri):
        return _register(MlflowClient(uri), name, model_uri, run_id, cfg, val_metrics, margin, study)


def _register(client: MlflowClient, name: str, model_uri: str, run_id: str, cfg: Config,
              val_metrics: dict[str, float], margin: float, study: str) -> Registration:
    import mlflow.pytorch

    train_val = load_train_val(cfg.data)
    test = load_split(cfg.data, "test")
    test_metrics = score_model(mlflow.pytorch.load_model(model_uri), test)

    try:
        client.create_registered_model(name)
    except MlflowException:
        pass  # exists already
    # A tracking server wants the logged model's id with a models:/<model_id> source (SQLite does not check).
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    mv = client.create_model_version(name, model_uri, run_id=run_id, model_id=model_id)
    tags: dict[str, Any] = {
        "study": study, "git_commit": git_commit(), "dataset": cfg.data.dataset,
        "data_split_hash": split_fingerprint(*train_val, test),
        "config": yaml.safe_dump(cfg.to_dict(), sort_keys=False),
        # full precision: the gate compares the next candidate against these tags
        **{f"val_{k}": repr(float(v)) for k, v in val_metrics.items()},
        **{f"test_{k}": repr(float(v)) for k, v in test_metrics.items()},
    }
    for k, v in tags.items():
        client.set_model_version_tag(name, mv.version, k, str(v))
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    promoted, reason = decide(champion_test_auc(client, name), test_metrics["auc_roc"], margin)
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, mv.version)
    client.set_model_version_tag(name, mv.version, "promotion", reason)
    return Registration(name, str(mv.version), test_metrics, promoted, reason)


def decide(champion: tuple[str, float] | None, test_auc: float, margin: float) -> tuple[bool, str]:
    """The promotion gate: (promote?, reason)."""
    if champion is None:
        return True, "first champion"
    version, best = champion
    if not np.isfinite(best):
        return True, f"champion v{version} has no test AUC-ROC"
    if test_auc > best + margin:
        return True, f"test AUC-ROC {test_auc:.4f} beats champion v{version} ({best:.4f}) by more than {margin}"
    return False, f"test AUC-ROC {test_auc:.4f} does not beat champion v{version} ({best:.4f}) by more than {margin}"


def promote(client: MlflowClient, name: str, version: str) -> None:
    """Make `version` the champion by hand (`python -m tuner.promote`)."""
    client.get_model_version(name, version)  # raises if it does not exist
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promotion", "promoted by hand")
