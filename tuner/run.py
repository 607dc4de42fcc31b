"""`python -m tuner.run --space FILE`: a V-GAN hyperparameter search.

    python -m tuner.run --space search_spaces/smoke.yaml
    python -m tuner.run --space search_spaces/gp.yaml --data /data/DRIVE \\
        [--address HOST:PORT] [--tracking-uri URI] [--storage PATH] [--name NAME] [--num-samples N] [--resume]

Optuna TPE proposes configs, ASHA stops weak trials, every trial is a child run in MLflow,
and the best trial's generator (chosen on validation) is scored on the test split and
registered (alias `challenger`, and `champion` when it beats the current one).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from tuner.cluster import alive_nodes, check_gpus, check_storage, start_ray
from tuner.space import SearchSpace, load_space
from tuner.storage import parse_storage, study_db_url
from tuner.tracking import Study, check_tracking_server, load_run_json, resolve_tracking_uri, wait_for_server
from vgan.cli import run_cli
from vgan.data import load_train_val
from vgan.errors import ConfigError, VganError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tuner.run", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--space", required=True, help="search-space YAML (see search_spaces/)")
    p.add_argument("--data", help="dataset root (overrides data.root of the space file)")
    p.add_argument("--address", help="existing Ray cluster HOST:PORT (default: start a local one)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db here)")
    p.add_argument("--storage", default="ray_results",
                   help="Ray trial storage: a folder (one node), file:///SHARED or s3://... (several nodes)")
    p.add_argument("--study-db", help="Optuna database URL (default: sqlite optuna.db in the storage folder)")
    p.add_argument("--name", help="study name (default: <space>-<time>); --resume needs it")
    p.add_argument("--num-samples", type=int, help="trials to run (overrides tune.num_samples)")
    p.add_argument("--resume", action="store_true", help="continue the study --name in --storage")
    p.add_argument("--no-register", action="store_true", help="skip the test-split evaluation and registry")
    return p


def trials_table(results, outcomes: dict[str, dict], metric: str, mode: str) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        trial_id = r.metrics.get("trial_id") if r.metrics else None
        df = r.metrics_dataframe
        if df is not None and metric in df:
            best = df[metric].max() if mode == "max" else df[metric].min()
            compute = float(sum(df[k].fillna(0).sum() for k in ("epoch_s", "val_s") if k in df))
            epochs = int(df["epoch"].max())
            logging = float(df["mlflow_s"].max()) if "mlflow_s" in df else 0.0
        else:
            best, compute, epochs, logging = float("nan"), 0.0, 0, 0.0
        outcome = outcomes.get(trial_id, {})
        rows.append({"trial_id": trial_id, "status": outcome.get("status", "failed" if r.error else "completed"),
                     f"best_{metric}": float(best), "epochs": epochs, "compute_s": compute,
                     "mlflow_s": logging,
                     "mlflow_run_id": outcome.get("run_id") or (r.metrics or {}).get("mlflow_run_id"),
                     **{f"param:{k}": v for k, v in (r.config or {}).items()}})
    rows.sort(key=lambda row: (math.isnan(row[f"best_{metric}"]), -row[f"best_{metric}"] if mode == "max"
                               else row[f"best_{metric}"]))
    return rows


def fail_orphan_trials(storage_url: str, name: str) -> list[str]:
    """Optuna trials still RUNNING once the study has ended were asked for by a driver killed
    before its state was saved: no one will tell them; mark them FAIL (trial numbers)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=storage_url)
    orphans = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    for t in orphans:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return [f"optuna trial {t.number}" for t in orphans]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)


def optuna_plots(storage_url: str, name: str, folder: Path) -> list[Path]:
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import optuna
    from optuna.visualization import matplotlib as ovm

    study = optuna.load_study(study_name=name, storage=storage_url)
    out = []
    for fname, plot in (("optimization_history", ovm.plot_optimization_history),
                        ("param_importances", ovm.plot_param_importances),
                        ("parallel_coordinate", ovm.plot_parallel_coordinate)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = plot(study)
            fig = (ax[0] if hasattr(ax, "__len__") else ax).figure
            fig.set_size_inches(9, 5)
            fig.tight_layout()
            path = folder / f"{fname}.png"
            fig.savefig(path, dpi=90)
            matplotlib.pyplot.close(fig)
            out.append(path)
        except Exception as e:  # e.g. importance needs two finished trials
            print(f"(no {fname} plot: {e})")
    return out


def _main(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    space = load_space(args.space, args.data)
    if args.num_samples is not None:
        if args.num_samples < 1:
            raise ConfigError("--num-samples must be at least 1")
        space.tune.num_samples = args.num_samples
    cfg = space.trainer_config()
    load_train_val(cfg.data)  # bad data stops here, before Ray starts
    uri = resolve_tracking_uri(args.tracking_uri)
    storage = parse_storage(args.storage)
    storage_url = study_db_url(storage, args.study_db)
    if args.resume and not args.name:
        raise ConfigError("--resume needs --name (the study to continue)")
    name = args.name or f"{Path(args.space).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.resume and not storage.exists(name):
        raise ConfigError(f"--resume: no study '{name}' in {storage.uri}")
    if not args.resume and storage.exists(name):
        raise ConfigError(f"--name: a study '{name}' exists in {storage.uri} already (use --resume to continue it)")
    check_tracking_server(uri)
    if not args.address:
        import torch

        check_gpus(space, torch.cuda.device_count(), "this machine")

    start_ray(args.address)
    import ray
    from ray import tune

    from tuner.search import build_tuner, make_trainable

    try:
        if args.address:
            where = f"the cluster at {args.address}"
            check_gpus(space, ray.cluster_resources().get("GPU", 0), where)
            check_storage(storage, alive_nodes(), where)
        if storage.local is not None:
            storage.local.mkdir(parents=True, exist_ok=True)
        study = Study.start(uri, space.mlflow.experiment, name,
                            {"space_file": str(Path(args.space).resolve()), "storage": storage.uri}, args.resume)
        print(f"study {name}: {space.tune.num_samples} trials of up to {space.epochs} epochs on "
              f"{len(alive_nodes())} node(s), MLflow {uri} (experiment '{space.mlflow.experiment}'), "
              f"storage {storage.study(name)}", flush=True)
        t0 = time.perf_counter()
        if args.resume:  # the searcher, scheduler and callbacks come back from the study's state
            # Unfinished trials continue from their checkpoints; failed ones stay failed.
            tuner = tune.Tuner.restore(storage.study(name), trainable=make_trainable(space, study.info),
                                       resume_unfinished=True, resume_errored=False)
        else:
            tuner = build_tuner(space, study.info, storage.uri, name, storage_url)
        results = tuner.fit()  # the status callback finishes its MLflow work before fit returns
        wall = time.perf_counter() - t0
        if not wait_for_server(uri, space.mlflow.outage_window_s):
            replay = (f"python -m tuner.replay --space {args.space} --name {name} --storage {storage.uri} "
                      f"--tracking-uri {uri}")
            raise VganError(f"the study ran, but MLflow at {uri} is unreachable: every trial's epochs and "
                            f"checkpoints are in {storage.study(name)}; once the server is back, run: {replay}")
        orphans = study.close_orphans() + fail_orphan_trials(storage_url, name)
        if orphans:
            print(f"closed {len(orphans)} trial run(s) left running by an earlier driver as KILLED: "
                  f"{', '.join(orphans)}")
        summarize(space, study, results, storage_url, name, wall, register=not args.no_register)
        study.finish()
    finally:
        ray.shutdown()


def summarize(space: SearchSpace, study: Study, results, storage_url: str, name: str, wall: float,
              register: bool) -> None:
    t = space.tune
    # MLflow holds each trial's final status (set by the status callback, also across --resume)
    outcomes = {r.data.tags.get("trial_id"): {"status": r.data.tags.get("status"), "run_id": r.info.run_id}
                for r in study.child_runs()}
    rows = trials_table(results, outcomes, t.metric, t.mode)
    compute = sum(r["compute_s"] for r in rows)
    slots = min(t.max_concurrent_trials, len(rows)) or 1
    overhead = max(0.0, 1 - compute / (wall * slots))
    counts = {s: sum(r["status"] == s for r in rows) for s in ("completed", "pruned", "failed")}
    logging = sum(r["mlflow_s"] for r in rows) / max(1, len(rows))
    print(f"\n{len(rows)} trials in {wall:.1f} s: {counts['completed']} completed, {counts['pruned']} pruned, "
          f"{counts['failed']} failed; trial compute {compute:.1f} s over {slots} slots, "
          f"overhead {100 * overhead:.1f} % of the wall time; MLflow logging {logging:.2f} s per trial")
    print(f"top {min(5, len(rows))} by {t.metric}:")
    for r in rows[:5]:
        params = ", ".join(f"{k[6:]}={_fmt(v)}" for k, v in r.items() if k.startswith("param:"))
        print(f"  {r['trial_id']}  {r['status']:9s} {t.metric} {r[f'best_{t.metric}']:.4f}  "
              f"epochs {r['epochs']}  {params}")
    study.log_metrics({"wall_s": wall, "trial_compute_s": compute, "overhead_share": overhead,
                       "mlflow_s_per_trial": logging,
                       **{f"trials_{k}": v for k, v in counts.items()}})
    # a failed trial (diverged, or out of retries) logged no model: the best is among the others
    best = next((r for r in rows if not math.isnan(r[f"best_{t.metric}"]) and r["status"] != "failed"), None)
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        write_csv(folder / "trials.csv", rows)
        study.log_artifact(folder / "trials.csv")
        for path in optuna_plots(storage_url, name, folder):
            study.log_artifact(path, "optuna")
        if best is not None:
            sampled = {k[6:]: v for k, v in best.items() if k.startswith("param:")}
            (folder / "best_config.yaml").write_text(
                f"# Best trial {best['trial_id']} of study {name}: {t.metric} {best[f'best_{t.metric}']:.4f}\n"
                f"# python -m vgan.train --config best_config.yaml\n"
                + yaml.safe_dump(space.trainer_config(sampled).to_dict(), sort_keys=False))
            study.log_artifact(folder / "best_config.yaml")
    if best is None:
        print("no trial produced a result: nothing to register")
        return
    study.set_tags({"best_trial_id": best["trial_id"], f"best_{t.metric}": f"{best[f'best_{t.metric}']:.6f}"})
    if not register:
        return
    from tuner.registry import register_candidate, registered_version

    run = study.client.get_run(best["mlflow_run_id"])
    model_uri = run.data.tags.get("best_model_uri")
    if model_uri is None:
        print(f"best trial {best['trial_id']} logged no model: nothing to register")
        return
    done = registered_version(study.client, space.mlflow.registered_model, model_uri)
    if done is not None:
        print(f"best trial {best['trial_id']} is registered already as {space.mlflow.registered_model} "
              f"version {done}")
        return
    from vgan.metrics import METRIC_NAMES

    best_epoch = load_run_json(study.client, run.info.run_id, "best/metrics.json")
    val = {name: best_epoch[f"val_{name}"] for name in METRIC_NAMES}
    val["epoch"] = best_epoch["epoch"]
    sampled = {k[6:]: v for k, v in best.items() if k.startswith("param:")}
    reg = register_candidate(study.info.uri, space.mlflow.registered_model, model_uri, run.info.run_id,
                             space.trainer_config(sampled), val, space.mlflow.promote_margin, name)
    study.set_tags({"registered_version": reg.version, "promoted": str(reg.promoted)})
    aliases = "challenger, champion" if reg.promoted else "challenger"
    print(f"registered {reg.name} version {reg.version} ({aliases}): test AUC-ROC {reg.test_metrics['auc_roc']:.4f}, "
          f"AUC-PR {reg.test_metrics['auc_pr']:.4f}, F1 {reg.test_metrics['f1']:.4f}; {reg.reason}")
    browse = (study.info.uri if study.info.uri.startswith("http")
              else f"mlflow ui --backend-store-uri {study.info.uri}")
    print(f"load it with mlflow.pytorch.load_model('models:/{reg.name}@champion'); browse: {browse}")


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, "tuner.run")


if __name__ == "__main__":
    sys.exit(main())
