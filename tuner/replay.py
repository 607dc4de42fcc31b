"""`python -m tuner.replay`: put what Ray's results hold of a study into MLflow.

    python -m tuner.replay --space FILE --name NAME [--storage PATH|URI] [--tracking-uri URI]

Every epoch a trial reports is in Ray's results (`result.json`), and its best generator in its
last checkpoint (`best/`). After a tracking-server outage longer than the study's window, this
fills in what MLflow missed: the study and trial runs, params, missing epochs, best models and
final statuses. It is idempotent: what MLflow has already is left as it is. The driver runs the
same `sync_trial` for every trial that ends, so short outages heal without it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from tuner.storage import checkpoint_dirs
from tuner.tracking import (  # mlflow's names through tuner.tracking: it turns telemetry off before mlflow loads
    BEST_DIR,
    Metric,
    MlflowClient,
    Study,
    TrackingInfo,
    close_trial_run,
    log_best_artifacts,
    resolve_tracking_uri,
    trial_run_id,
)
from vgan.cli import run_cli
from vgan.errors import ConfigError


def is_record_key(key: str) -> bool:
    """The per-epoch values a trial logs to MLflow (Ray adds its own bookkeeping to results)."""
    return key.startswith(("loss_", "val_")) or key in ("epoch_s", "val_s")


def read_results(fs, trial_path: str) -> list[dict[str, Any]]:
    try:
        with fs.open_input_stream(f"{trial_path}/result.json") as f:
            text = f.readall().decode()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def newest_best(fs, trial_path: str):
    """The newest checkpoint folder of the trial that holds a best generator, as a pyarrow path."""
    import pyarrow.fs

    for path in reversed(checkpoint_dirs(fs, trial_path)):
        if fs.get_file_info(f"{path}/{BEST_DIR}/best_generator.pt").type != pyarrow.fs.FileType.NotFound:
            return f"{path}/{BEST_DIR}"
    return None


def sync_trial(info: TrackingInfo, fs, trial_path: str, config: dict[str, Any] | None = None,
               results: tuple[Any, str] | None = None) -> dict[str, Any]:
    """Make the trial's MLflow run hold every epoch of its results and its best model.
    fs/trial_path: the trial in Ray's storage; results: where its result.json is newest, if
    elsewhere (the driver's staging folder, synced to storage later)."""
    client = MlflowClient(info.uri)
    rows = read_results(*(results or (fs, trial_path)))
    epochs = [r for r in rows if "epoch_s" in r]
    if not rows:
        return {"run_id": None, "epochs_added": 0, "last": {}}
    trial_id = rows[-1]["trial_id"]
    run_id = next((r["mlflow_run_id"] for r in reversed(rows) if r.get("mlflow_run_id")), None)
    if run_id is None:
        run_id, _ = trial_run_id(client, info, trial_id, config)
    logged = {m.step for m in client.get_metric_history(run_id, "epoch_s")}
    added = 0
    for r in epochs:
        step = int(r["epoch"])
        if step not in logged:
            ts = int(r.get("timestamp", 0) * 1000)
            client.log_batch(run_id, metrics=[Metric(k, float(v), ts, step) for k, v in r.items()
                                              if is_record_key(k) and isinstance(v, (int, float))])
            logged.add(step)
            added += 1
    if "best_model_uri" not in client.get_run(run_id).data.tags:
        best = newest_best(fs, trial_path)
        if best is not None:
            import pyarrow.fs

            with tempfile.TemporaryDirectory() as d:
                pyarrow.fs.copy_files(best, d, source_filesystem=fs,
                                      destination_filesystem=pyarrow.fs.LocalFileSystem())
                log_best_artifacts(info.uri, run_id, Path(d))
    return {"run_id": run_id, "epochs_added": added, "last": rows[-1]}


def final_status(fs, trial_path: str, last: dict[str, Any], max_epochs: int) -> tuple[str, dict[str, str]]:
    if last.get("diverged"):
        return "failed", {"error": str(last.get("error", "diverged"))}
    try:
        with fs.open_input_stream(f"{trial_path}/error.txt") as f:
            lines = [ln for ln in f.readall().decode().splitlines() if ln.strip()]
        return "failed", {"error": lines[-1] if lines else "error"}
    except FileNotFoundError:
        pass
    epoch = int(last.get("epoch", 0))
    return ("completed", {}) if epoch >= max_epochs else ("pruned", {"pruned_at_epoch": str(epoch)})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tuner.replay", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--space", required=True, help="the study's search-space file")
    p.add_argument("--name", required=True, help="the study's name")
    p.add_argument("--storage", default="ray_results", help="the study's Ray storage (as given to tuner.run)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db here)")
    return p


def _main(argv: Sequence[str] | None) -> None:
    import pyarrow.fs

    from tuner.space import load_space
    from tuner.storage import parse_storage
    from tuner.tracking import check_tracking_server

    args = build_parser().parse_args(argv)
    space = load_space(args.space)
    storage = parse_storage(args.storage)
    if not storage.exists(args.name):
        raise ConfigError(f"--name: no study '{args.name}' in {storage.uri}")
    uri = resolve_tracking_uri(args.tracking_uri)
    check_tracking_server(uri)
    study = Study.start(uri, space.mlflow.experiment, args.name, {"storage": storage.uri}, resume=True)
    fs, root = pyarrow.fs.FileSystem.from_uri(storage.study(args.name))
    trials = [i.path for i in fs.get_file_info(pyarrow.fs.FileSelector(root))
              if i.type == pyarrow.fs.FileType.Directory and fs.get_file_info(f"{i.path}/result.json").size]
    statuses = {r.info.run_id: r.info.status for r in study.child_runs()}
    for path in sorted(trials):
        try:
            with fs.open_input_stream(f"{path}/params.json") as f:
                config = json.loads(f.readall().decode())
        except FileNotFoundError:
            config = None
        out = sync_trial(study.info, fs, path, config)
        if out["run_id"] is None:
            continue
        status, tags = final_status(fs, path, out["last"], space.epochs)
        if statuses.get(out["run_id"], "RUNNING") == "RUNNING":
            close_trial_run(uri, out["run_id"], status, tags)
        print(f"{out['last'].get('trial_id')}: {out['epochs_added']} epoch(s) added, {status}")
    study.finish()


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, "tuner.replay")


if __name__ == "__main__":
    sys.exit(main())
