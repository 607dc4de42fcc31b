"""The smoke space as study tests run it, and reading back what a study left in MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO, write_yaml

SMOKE = REPO / "search_spaces" / "smoke.yaml"
# Study tests that assert what the tuner does (placement, faults, schedules, what reaches MLflow), not
# what the trials learn, train a sixth of the shipped steps per epoch: the tuner's time, not trial compute, is
# what they wait on. tests/tuner/test_smoke_study.py runs the shipped file as it is.
QUICK_STEPS = 5
# Modules that start Ray and run studies take one xdist worker between them (`pytest -n auto`), one study at
# a time: each study's Ray takes every core as its own, and their fault tests wait on trials' epochs, which
# two studies at once on a 2-core machine slow past what those tests allow (a 15 s budget saw no epoch).
ONE_STUDY_AT_A_TIME = pytest.mark.xdist_group("studies")
# Save one: the shipped smoke study (tests/tuner/test_smoke_study.py), the longest, runs on the other worker.
# xdist hands out the groups with the most tests first (loadscopereorder), so it begins as the studies do, beside
# their first tests (Slurm's SIGTERM, the two-node cluster and its faults), which wait on events with minutes to
# spare and budget no time; the studies with a time budget come long after it has ended. The studies' worker was
# the suite's length (1405 s of tests against the other worker's 1158 s, 2026-12-07).
BESIDE_THE_STUDIES = pytest.mark.xdist_group("smoke")


def quick_smoke(path: Path, experiment: str | None = None, steps: int | None = QUICK_STEPS,
                **sections: dict) -> Path:
    """The smoke space at `steps` steps per epoch (None: as shipped), each given section updated (train=,
    tune=, mlflow=...), its own experiment and registered model where named; written to `path`."""
    values = yaml.safe_load(SMOKE.read_text())
    if steps is not None:
        values["train"]["steps_per_epoch"] = steps
    for key, update in sections.items():
        values.setdefault(key, {}).update(update)
    if experiment is not None:
        values["mlflow"] = {**values.get("mlflow", {}), "experiment": experiment, "registered_model": experiment}
    return write_yaml(path, values)


def trial_runs(uri: str, experiment: str, study: str | None = None):
    """(client, the experiment's trial runs, of one study if given); none yet if the experiment is not made."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return client, []
    runs = client.search_runs([exp.experiment_id], f"tags.study = '{study}'" if study else "", max_results=1000)
    return client, [r for r in runs if "trial_id" in r.data.tags]


def history(client, run, key: str = "val_auc_roc") -> list[tuple[int, int]]:
    """(step, timestamp in ms) of every value logged for key, by step."""
    return sorted((m.step, m.timestamp) for m in client.get_metric_history(run.info.run_id, key))


def steps(client, run, key: str = "val_auc_roc") -> list[int]:
    return [s for s, _ in history(client, run, key)]
