"""MLflow for a study, on the driver (DESIGN.md): tracking URIs, the server check, the
experiment and its parent run, and logging a trial's best generator as an MLflow model.

One experiment per space file; one parent run per study; one child run per trial (written by
`tuner.projection`) with tags `trial_id`, `node_id`, `environment`, `status` (completed | pruned | stopped | failed, +
`pruned_at_epoch`, `stopped_at_epoch` or `error`), the sampled params, the resolved config, per-epoch metrics with
step = epoch, and the best-epoch generator as an MLflow model with its previews and plots.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterator

import numpy as np

from tuner.outcome import INTERRUPTED, KILLED
from tuner.storage import GENERATOR_FILE, METRICS_FILE, PROBS_FILE, check_sqlite_folder
from vgan.errors import ConfigError
from vgan.provenance import code_changed, describe_code, running_code

COMMIT_TAG, DIRTY_TAG = "mlflow.source.git.commit", "git_dirty"  # what ran a run (source_tags)
RESUMED_TAG = "resumed_git_commits"  # a study run's: the code each resume by other code ran (resumed_code)
UNKNOWN = "unknown"  # a commit tag's value where no commit was known (an installed package)
DATA_NOTES_HEADER = "Notes on the data, as the study said them before it began:\n\n"  # its run's description
TELEMETRY_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true"}
os.environ.update(TELEMETRY_ENV)
# MLflow's client retries an unreachable server for minutes by default; the driver's projection
# rather notices in seconds and waits for it (tuner.projection). Only the driver talks to MLflow.
# Its download bars would print after the study summary, and with a tracking server it prints two
# "View run" lines each time a trial's run ends (tuner.run prints the study's one link itself).
for _key, _value in {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                     "MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                     "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}.items():
    os.environ.setdefault(_key, _value)

from mlflow.entities import Metric, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE  # noqa: E402


class SecondaryPipelineError(logging.Filter):
    """Drops psycopg's warning that a pipeline could not close after an error raised inside it: it only
    comes with an exception already on its way to the caller. On a PostgreSQL store, MLflow raises and
    handles an IntegrityError for a metric the run already holds, which `log_model_metrics` logs again on
    purpose, and the warning was printed on a study's console at every trial's end."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error ignored terminating")


logging.getLogger("psycopg").addFilter(SecondaryPipelineError())

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
MAX_PARAM_LENGTH = 6000
# MLflow 3's UI opens an experiment without this tag in its GenAI view (traces, an assistant)
EXPERIMENT_KIND = "mlflow.experimentKind"


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


def check_tracking_store(uri: str, read_only: bool = False) -> None:
    """Before a study writes to it: a tracking server must answer, a SQLite file's folder take writes. Before
    a command only reads models from it (`read_only`), the SQLite database must be there: MLflow would make
    an empty one and then say the model is not found."""
    if not uri.startswith("sqlite:///"):
        check_tracking_server(uri)
    elif not read_only:
        check_sqlite_folder(uri, "--tracking-uri")
    elif not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ConfigError(f"--tracking-uri {uri}: no MLflow database there (a study writes mlflow.db where it "
                          "runs: give that file)")


def server_answers(uri: str, timeout_s: float = 5.0) -> bool:
    try:
        check_tracking_server(uri, timeout_s)
        return True
    except ConfigError:
        return False


def artifact_location(uri: str) -> str | None:
    """For a local SQLite store, artifacts live beside the database (mlflow ui finds them)."""
    if uri.startswith("sqlite:////"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    return None  # a server decides (proxied artifacts)


def experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    """The experiment's id, made where there is none (shown in the UI's model-training view)."""
    exp = client.get_experiment_by_name(name)
    return exp.experiment_id if exp else client.create_experiment(
        name, artifact_location(uri), tags={EXPERIMENT_KIND: "custom_model_development"})


def share_runs_view(client: MlflowClient, experiment_id: str, key: str, search: str, order_by: str,
                    columns: list[str]) -> str:
    """A runs-table view for MLflow's UI (its "shared view": an experiment tag the UI reads when the URL names
    `key`): the runs `search` finds, flat, `order_by` highest first, with `columns`. Returns the view's path in
    the UI, which opens in its model-training mode."""
    view = {"searchFilter": search, "orderByKey": order_by, "orderByAsc": False, "selectedColumns": columns}
    client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{key}", json.dumps(view))
    return f"#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={key}"


def ui_link(uri: str, view: str) -> str:
    """Where a user opens `view` (a path in MLflow's UI): on the tracking server, or on the `mlflow ui` a
    database needs started."""
    if uri.startswith("http"):
        return f"{uri.rstrip('/')}/{view}"
    return f"http://127.0.0.1:5000/{view}  (after: mlflow ui --backend-store-uri {uri})"


@dataclass
class TrackingInfo:
    """Where a study's runs live (plain values: Tune pickles the projection with its state)."""

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
        exp_id = experiment_id(client, experiment, uri)
        found = client.search_runs([exp_id], f"tags.study = '{study_name}' and tags.kind = 'study'",
                                   max_results=1) if resume else []
        if found:
            parent = found[0].info.run_id
            client.update_run(parent, status="RUNNING")
        else:
            parent = client.create_run(exp_id, run_name=study_name,
                                       tags={"study": study_name, "kind": "study", **tags}).info.run_id
        return cls(client, TrackingInfo(uri, exp_id, parent, study_name))

    def resumed_by(self, source: dict[str, str]) -> str | None:
        """A resumed study's run told which code resumes it (`source`: source_tags); the console's note where
        that is not the code that ran it last (resumed_code). Not for a replay, which trains nothing."""
        tags = self.client.get_run(self.info.parent_run_id).data.tags
        return resumed_code(self.client, tags, source, self.info.parent_run_id)

    def describe_data(self, notes: Collection[str]) -> None:
        """The notes on its data a study says before it begins (tuner.run.data_notes: photographs converted as
        read, FOVs estimated or of several scales), kept as its run's description, the first thing the run's page
        shows: facts about the scores the run holds, where the console that said them is gone. A description of
        the user's own stays, under them."""
        if not notes:
            return
        own = self.client.get_run(self.info.parent_run_id).data.tags.get(MLFLOW_RUN_NOTE, "")
        if own.startswith(DATA_NOTES_HEADER):  # a resume's: the notes said again, what a user wrote below kept
            own = own[len(DATA_NOTES_HEADER):].partition("\n\n")[2]
        said = DATA_NOTES_HEADER + "\n".join(f"- {note}" for note in notes) + (f"\n\n{own}" if own else "")
        self.client.set_tag(self.info.parent_run_id, MLFLOW_RUN_NOTE, said)

    def share_trials_view(self, score: str, metric: str, params: list[str]) -> str:
        """A runs-table view of the study's trials for MLflow's UI (its "shared view": an experiment tag
        the UI reads when the URL names it): the trial runs flat (not folded under the study's run), best
        score first, with the score, the epoch's metric, the losses and the sampled params as columns.
        Returns the view's path in the UI, which opens in its model-training mode."""
        key = self.info.study_name
        return share_runs_view(self.client, self.info.experiment_id, key,
                               f"tags.trial_id LIKE '%' AND tags.study = '{key}'", f"metrics.`{score}`",
                               ["attributes.`Models`", f"metrics.`{score}`", f"metrics.`val_{metric}`",
                                "metrics.`loss_g`", "metrics.`loss_d`", *(f"params.`{p}`" for p in params),
                                "tags.`status`"])

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

    def close_orphans(self, waiting: Collection[str] = ()) -> list[str]:
        """Trial runs still open once the study's trials have all ended and been projected belong to a
        driver that was killed and to trials that will not run again: close them as KILLED (trial ids). Those of
        `waiting` (trial ids), which an interrupted study leaves to its resume, are KILLED tagged `status:
        interrupted`, not orphans: tuner.projection opens them again when they go on."""
        closed = []
        for r in self.child_runs():
            if r.data.tags.get("status") == "running":  # the outcome tag, not the run state (tuner.projection)
                trial_id = r.data.tags.get("trial_id")
                # the state first, the tag that says it ended last: a driver killed between them leaves the run
                # to the next pass (Projection.end likewise)
                self.client.set_terminated(r.info.run_id, "KILLED")
                self.client.set_tag(r.info.run_id, "status", INTERRUPTED if trial_id in waiting else KILLED)
                if trial_id not in waiting:
                    closed.append(trial_id or r.info.run_id)
        return closed

    def child_runs(self) -> list:
        return child_runs(self.client, self.info)


def child_runs(client: MlflowClient, info: TrackingInfo) -> list:
    """The study's trial runs."""
    return client.search_runs([info.experiment_id], f"tags.mlflow.parentRunId = '{info.parent_run_id}'",
                              max_results=10000)


def code_tags(commit_key: str = "git_commit") -> dict[str, str]:
    """The code's commit as `commit_key` and, where tracked files had changed, `git_dirty: true` (the commit
    alone does not say what ran); none outside a checkout."""
    version = running_code()
    if version is None:
        return {}
    return {commit_key: version[0], **({DIRTY_TAG: "true"} if version[1] else {})}


def tagged_code(commit: str | None, dirty: bool) -> dict[str, Any] | None:
    """A code record (vgan.provenance) from tags: None where no commit was known."""
    return None if commit in (None, UNKNOWN) else {"commit": commit, "dirty": dirty}


def resumed_code(client: MlflowClient, study_tags: dict[str, str], now_tags: dict[str, str], run_id: str) -> str | None:
    """A study resumed by other code than ran it last (its start's, or its last resume's) appends the resuming
    code to the study run's tag `resumed_git_commits` ("<commit>[ (edited)]", oldest first; its Source keeps the
    code it began with); returns the note for the console (None: the same code)."""
    resumes = [r.strip() for r in study_tags.get(RESUMED_TAG, "").split(",") if r.strip()]
    if resumes:
        commit, _, edited = resumes[-1].partition(" ")
        last = tagged_code(commit, bool(edited))
    else:
        last = tagged_code(study_tags.get(COMMIT_TAG), study_tags.get(DIRTY_TAG) == "true")
    now = tagged_code(now_tags.get(COMMIT_TAG), now_tags.get(DIRTY_TAG) == "true")
    change = code_changed(last, now)
    if change is None:
        return None
    entry = UNKNOWN if now is None else now["commit"] + (" (edited)" if now["dirty"] else "")
    client.set_tag(run_id, RESUMED_TAG, ", ".join([*resumes, entry]))
    return (f"the code changed since this study last ran ({change}): the trials that train from here train with "
            f"it, and the search compares them with trials trained by {describe_code(last)}")


def source_tags(command: str) -> dict[str, str]:
    """MLflow's tags for what ran a run: its run page's Source shows the command and the commit."""
    return {"mlflow.source.name": command, "mlflow.source.type": "LOCAL", **code_tags(COMMIT_TAG)}


def short(value: Any) -> str:
    """MLflow caps param and tag values."""
    text = str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


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


def split_dataset(cfg, split, name: str):
    """The MLflow dataset a model's metrics are linked to: the split's images by name and fingerprint."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    from vgan.data import dataset_name, split_fingerprint

    if cfg.data.root:
        import warnings

        from mlflow.data.dataset_source_registry import resolve_dataset_source

        with warnings.catch_warnings():  # MLflow registers its local-file source twice and warns of the tie
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(Path(cfg.data.root).as_uri())
    else:
        source = CodeDatasetSource({"generator": "vgan.data.synthetic_pool", **{
            k: str(v) for k, v in vars(cfg.data.synthetic).items()}})
    return MetaDataset(source, name=f"{dataset_name(cfg.data)}-{name}", digest=split_fingerprint(split))


def log_model_metrics(client, run_id: str, metrics: dict[str, float], epoch: int, model_id: str, ds) -> None:
    """Link `metrics` of `epoch` to the logged model `model_id`. Where the run already holds the
    epoch's entry (the projection logged it), its value and timestamp are reused: the store then
    keeps one row in the run's history (a fresh timestamp would show the best epoch twice). An
    epoch trained twice (a PBT clone of a trial behind) has two entries: the one with the model's value."""
    import mlflow

    entries = {}
    for k, v in metrics.items():
        done = [m for m in client.get_metric_history(run_id, k) if m.step == epoch and m.value == float(v)]
        entries[k] = (done[-1].value, done[-1].timestamp) if done else (float(v), None)
    for ts in {t for _, t in entries.values()}:
        mlflow.log_metrics({k: v for k, (v, t) in entries.items() if t == ts}, step=epoch, timestamp=ts,
                           run_id=run_id, model_id=model_id, dataset=ds)


def log_best_model(uri: str, run_id: str, folder: Path, val, cfg, name: str,
                   params: dict[str, Any] | None = None) -> str:
    """Log a trial's best epoch (the local copy of its checkpoint's `best/`): the generator as the
    logged model `name` (tuner.flavor) with the trainer config `cfg`, the trial's sampled `params` (a PBT
    trial's at its end, as `cfg`) and its validation metrics, linked to the validation split; previews and
    ROC/PR plots rendered from its validation probabilities and `val` (the trial's validation split) on the
    run. Returns the model URI (also tagged `best_model_uri` on the run)."""
    import torch

    from tuner import flavor
    from vgan.metrics import curves, fov_pixels
    from vgan.models import Generator, ModelConfig
    from vgan.visualize import save_curves, save_previews

    saved = torch.load(folder / GENERATOR_FILE, map_location="cpu", weights_only=True)
    g = Generator(ModelConfig(**saved["model_config"]))
    g.load_state_dict(saved["state_dict"])
    record = json.loads((folder / METRICS_FILE).read_text())
    metrics = {k: v for k, v in record.items() if k.startswith("val_")}
    epoch = int(saved["epoch"])
    client = MlflowClient(uri)
    with use_tracking_uri(uri):
        info = flavor.log_model(g, name, run_id, cfg.to_dict(), tags={"best_epoch": str(epoch)},
                                params={k: short(v) for k, v in (params or {}).items()})
        log_model_metrics(client, run_id, metrics, epoch, info.model_id, split_dataset(cfg, val, "val"))
    p = np.load(folder / PROBS_FILE).astype(np.float32)
    y, mask = val.labels.numpy(), val.masks.numpy()
    with tempfile.TemporaryDirectory(prefix="vgan-plots-") as d:
        save_previews(Path(d) / "previews", "val", val, p, f"validation, best epoch {epoch} of {name}")
        save_curves(Path(d), curves(*fov_pixels(p, y, mask)), {k[4:]: v for k, v in metrics.items()},
                    f"validation, epoch {epoch}")
        client.log_artifacts(run_id, str(Path(d)), "best")
    client.log_artifact(run_id, str(folder / METRICS_FILE), "best")
    client.set_tag(run_id, "best_model_uri", info.model_uri)
    client.set_tag(run_id, "best_epoch", str(epoch))
    return info.model_uri
