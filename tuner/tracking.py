"""MLflow layout of a study (DESIGN.md).

One experiment per space file; one parent run per study; one child run per trial with tags
`trial_id`, `node_id`, `status` (completed | pruned | failed, + `pruned_at_epoch` or
`error`), the sampled params, the resolved config, per-epoch metrics with step = epoch, and
the best-epoch generator as an MLflow model with its validation previews and ROC/PR plots.

Trials log from wherever they run (`TrialRun`); the driver's `StatusCallback` closes each
run with its final status, because only the driver sees ASHA stop a trial.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vgan.errors import ConfigError

TELEMETRY_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true"}
os.environ.update(TELEMETRY_ENV)

from mlflow.entities import Metric, Param, RunStatus, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
MODEL_ARTIFACT = "model"
BEST_DIR = "best"  # a trial's best epoch: generator, previews, plots, metrics (in checkpoints too)
MAX_PARAM_LENGTH = 6000


def resolve_tracking_uri(uri: str | None) -> str:
    """An absolute URI every process can use: trials run with another working directory."""
    uri = uri or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve()}"
    if uri.startswith(("http://", "https://", "sqlite:", "postgresql", "mysql", "databricks")):
        return uri
    raise ConfigError(f"--tracking-uri: {uri!r} is not supported (MLflow 3.17 has no file store): "
                      "give sqlite:///PATH or http://HOST:PORT")


def check_tracking_server(uri: str, timeout_s: float = 5.0) -> None:
    """A server that is down is refused in seconds: MLflow's client would retry for minutes."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as r:
            if r.status == 200:
                return
            reason = f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        reason = f"HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        reason = str(getattr(e, "reason", e))
    raise ConfigError(f"--tracking-uri {uri}: the MLflow tracking server is unreachable ({reason}); "
                      "start it or give another URI")


def server_answers(uri: str, timeout_s: float = 5.0) -> bool:
    try:
        check_tracking_server(uri, timeout_s)
        return True
    except ConfigError:
        return False


def wait_for_server(uri: str, window_s: float, poll_s: float = 2.0) -> bool:
    """Whether the tracking server answers within window_s (a store without a server always does)."""
    deadline = time.monotonic() + window_s
    while not server_answers(uri):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
    return True


def artifact_location(uri: str) -> str | None:
    """For a local SQLite store, artifacts live beside the database (mlflow ui finds them)."""
    if uri.startswith("sqlite:////"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    return None  # a server decides (proxied artifacts)


@dataclass
class TrackingInfo:
    """What a trial needs to log into the study (plain values: Ray pickles it)."""

    uri: str
    experiment_id: str
    parent_run_id: str
    study_name: str


class Study:
    """The driver's side: experiment, parent run, study summary."""

    def __init__(self, client: MlflowClient, info: TrackingInfo):
        self.client = client
        self.info = info

    @classmethod
    def start(cls, uri: str, experiment: str, study_name: str, tags: dict[str, str], resume: bool) -> Study:
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment, artifact_location(uri))
        parent = None
        if resume:
            found = client.search_runs([exp_id], f"tags.study = '{study_name}' and tags.kind = 'study'",
                                       max_results=1)
            parent = found[0].info.run_id if found else None
            if parent:
                client.update_run(parent, status="RUNNING")
        if parent is None:
            run = client.create_run(exp_id, run_name=study_name, tags={"study": study_name, "kind": "study", **tags})
            parent = run.info.run_id
        return cls(client, TrackingInfo(uri, exp_id, parent, study_name))

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.info.parent_run_id, str(path), folder)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.info.parent_run_id,
                              metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.client.log_batch(self.info.parent_run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.info.parent_run_id, status)

    def close_orphans(self) -> list[str]:
        """Trial runs still RUNNING once the study's trials have all ended belong to a driver that
        was killed and to trials that will not run again: close them as KILLED (trial ids)."""
        closed = []
        for r in self.child_runs():
            if r.info.status == "RUNNING":
                close_trial_run(self.info.uri, r.info.run_id, "killed")
                closed.append(r.data.tags.get("trial_id", r.info.run_id))
        return closed

    def child_runs(self) -> list:
        return self.client.search_runs([self.info.experiment_id],
                                       f"tags.mlflow.parentRunId = '{self.info.parent_run_id}'",
                                       max_results=10000)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def trial_run_id(client: MlflowClient, info: TrackingInfo, trial_id: str,
                 params: dict[str, Any] | None = None) -> tuple[str, bool]:
    """The trial's child run, created (with its sampled params) if it has none yet: (run id,
    created). One run per trial, whoever asks first: the trial at its start, the driver when
    the trial failed early, or `tuner.replay`."""
    found = client.search_runs([info.experiment_id], f"tags.trial_id = '{trial_id}' and "
                               f"tags.mlflow.parentRunId = '{info.parent_run_id}'", max_results=1)
    if found:
        return found[0].info.run_id, False
    run = client.create_run(info.experiment_id, run_name=trial_id, tags={
        "mlflow.parentRunId": info.parent_run_id, "trial_id": trial_id, "study": info.study_name,
        "status": "running"})
    if params:
        client.log_batch(run.info.run_id, params=[Param(k, _short(v)) for k, v in params.items()])
    return run.info.run_id, True


def unreachable(error: BaseException) -> bool:
    """True for a tracking server that cannot be reached (down, restarting, network), as opposed
    to one that answered with an error."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    text = str(error)
    return isinstance(error, MlflowException) and text.startswith("API request to") and (
        "failed with exception" in text or "Max retries" in text)


class TrialRun:
    """A trial's child run, logged from inside the trial, that survives a tracking-server outage.

    Every call goes to an outbox first and is delivered in order; while the server cannot be
    reached the trial keeps training and the outbox grows (its epochs are also in Ray's
    results). The next call, or `deliver` at the trial's end, sends what waits. `seconds`
    adds up the time spent talking to MLflow: the per-trial logging overhead.
    """

    def __init__(self, info: TrackingInfo, trial_id: str, node_id: str, params: dict[str, Any], config_yaml: str,
                 run_id: str | None = None, seconds: float = 0.0):
        self.info = info
        self.trial_id = trial_id
        self.run_id = run_id
        self.client = MlflowClient(info.uri)
        self.seconds = seconds
        self.logged_through = 0  # epochs already in the run (a resumed trial does not log them twice)
        self.pending: list[tuple[str, tuple]] = [("_open", (node_id, params, config_yaml))]
        self.down_since: float | None = None

    @classmethod
    def open(cls, info: TrackingInfo, trial_id: str, node_id: str, params: dict[str, Any], config_yaml: str,
             run_id: str | None = None) -> TrialRun:
        run = cls(info, trial_id, node_id, params, config_yaml, run_id)
        run.flush()
        return run

    def _open(self, node_id: str, params: dict[str, Any], config_yaml: str) -> None:
        created = False
        if self.run_id is None:  # no checkpoint yet: a first start, or a retry before the first checkpoint
            self.run_id, created = trial_run_id(self.client, self.info, self.trial_id, params)
            if created:
                self.client.log_text(self.run_id, config_yaml, "config.yaml")
        self.client.update_run(self.run_id, status="RUNNING")
        self.client.set_tag(self.run_id, "node_id", node_id)
        if not created:
            self.logged_through = max((m.step for m in self.client.get_metric_history(self.run_id, "epoch_s")),
                                      default=0)

    def _epoch(self, step: int, metrics: list[Metric]) -> None:
        if step > self.logged_through:  # re-run after a restart from an older checkpoint: logged once already
            self.client.log_batch(self.run_id, metrics=metrics)
            self.logged_through = step

    def _best(self, folder: Path) -> None:
        if "best_model_uri" not in self.client.get_run(self.run_id).data.tags:
            log_best_artifacts(self.info.uri, self.run_id, folder)

    def flush(self) -> bool:
        """Deliver what waits, oldest first; False while the server cannot be reached."""
        t0 = time.perf_counter()
        try:
            while self.pending:
                name, args = self.pending[0]
                getattr(self, name)(*args)
                self.pending.pop(0)
        except Exception as e:
            if not unreachable(e):
                raise
            if self.down_since is None:
                self.down_since = time.time()
                print(f"MLflow at {self.info.uri} unreachable: trial {self.trial_id} keeps training and holds "
                      f"its logging until it is back", flush=True)
            return False
        finally:
            self.seconds += time.perf_counter() - t0
        if self.down_since is not None:
            print(f"MLflow back after {time.time() - self.down_since:.0f} s: trial {self.trial_id} delivered "
                  f"what it held", flush=True)
            self.down_since = None
        return True

    def deliver(self, window_s: float, poll_s: float = 2.0) -> bool:
        """At the trial's end: wait up to window_s for the server to take what waits."""
        deadline = time.monotonic() + window_s
        while not self.flush():
            if time.monotonic() >= deadline:
                print(f"MLflow still unreachable after {window_s:.0f} s: trial {self.trial_id} leaves "
                      f"{len(self.pending)} call(s) to `python -m tuner.replay`", flush=True)
                return False
            time.sleep(poll_s)
        return True

    def log_epoch(self, record: dict[str, float]) -> None:
        step = int(record["epoch"])
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in record.items() if k != "epoch" and np.isfinite(v)]
        self.pending.append(("_epoch", (step, metrics)))
        self.flush()

    def log_best(self, folder: Path, window_s: float) -> bool:
        """The best generator, at the trial's end (the folder must outlive this call)."""
        self.pending.append(("_best", (folder,)))
        return self.deliver(window_s)


@contextmanager
def use_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API (start_run, log_model, load_model of models:/) reads a global URI: set it
    only for the call, so no code after it silently reads or writes a store it did not name."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def load_run_json(client: MlflowClient, run_id: str, path: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        return json.loads(Path(client.download_artifacts(run_id, path, d)).read_text())


def log_best_artifacts(uri: str, run_id: str, folder: Path) -> str:
    """Log the best-epoch generator (an MLflow model) with its previews and plots; returns the model URI."""
    import mlflow
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from vgan.models import Generator, ModelConfig, VesselSegmenter

    saved = torch.load(folder / "best_generator.pt", map_location="cpu", weights_only=True)
    g = Generator(ModelConfig(**saved["model_config"]))
    g.load_state_dict(saved["state_dict"])
    model = VesselSegmenter(g.eval()).eval()
    m = 2**g.depth
    # Batch > 1 and sizes that are not multiples of 2**depth keep N, H and W dynamic in the export.
    example = np.random.default_rng(0).random((2, 3, 2 * m + 3, 3 * m + 1), dtype=np.float32)
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1))]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1, -1, -1))]))
    client = MlflowClient(uri)
    with use_tracking_uri(uri), mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(model, name=MODEL_ARTIFACT, signature=signature, input_example=example,
                                        pip_requirements=["torch", "numpy"])
    for path in sorted(folder.glob("*.png")):
        client.log_artifact(run_id, str(path), "best" if path.stem in ("roc", "pr") else "best/previews")
    client.log_artifact(run_id, str(folder / "metrics.json"), "best")
    client.set_tag(run_id, "best_model_uri", info.model_uri)
    client.set_tag(run_id, "best_epoch", str(saved["epoch"]))
    return info.model_uri


def close_trial_run(uri: str, run_id: str, status: str, extra_tags: dict[str, str] | None = None) -> None:
    client = MlflowClient(uri)
    tags = {"status": status, **(extra_tags or {})}
    client.log_batch(run_id, tags=[RunTag(k, _short(v)) for k, v in tags.items()])
    end = {"failed": RunStatus.FAILED, "killed": RunStatus.KILLED}.get(status, RunStatus.FINISHED)
    client.set_terminated(run_id, RunStatus.to_string(end))


def write_json(path: Path, values: dict[str, Any]) -> None:
    path.write_text(json.dumps(values, indent=2, default=float) + "\n")
