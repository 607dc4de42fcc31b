"""`python -m benchmarks.cluster` (from the repository root): one study, one node vs two, SQLite vs a tracking server.

Runs the same search space four times on this machine, each in a fresh process and store:
a local Ray (one node) or a two-node loopback cluster (the same CPUs split over two
`ray start` nodes), logging to a SQLite file or to an `mlflow server` with proxied artifacts.
Prints the study's wall time (process start to exit), Tune's fit time, the overhead share
`tuner.run` reports, and the seconds per trial the driver's MLflow projection spent (trials
spend none: they never talk to MLflow).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from tests.support.loopback import CLUSTER_ENV, mlflow_server, ray_cluster

DEFAULT_SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "smoke.yaml"


def run_study(space: Path, work: Path, nodes: int, tracking: str, cpus: int) -> dict[str, float | str]:
    from mlflow.tracking import MlflowClient

    with ExitStack() as stack:
        argv = [sys.executable, "-m", "tuner.run", "--space", str(space), "--name", "bench", "--no-register"]
        if tracking == "server":
            uri = stack.enter_context(mlflow_server(work / "mlflow")).uri
        else:
            uri = f"sqlite:///{work / 'mlflow.db'}"
        if nodes > 1:
            cluster = stack.enter_context(ray_cluster(work / "ray", nodes=nodes, cpus_per_node=cpus // nodes))
            argv += ["--address", cluster.address, "--storage", f"file://{work / 'results'}"]
        else:
            argv += ["--storage", str(work / "results")]
        argv += ["--tracking-uri", uri]
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=work, env={**os.environ, **CLUSTER_ENV}, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            gcs = f"\n{cluster.gcs_errors()}" if nodes > 1 else ""
            raise RuntimeError(f"{nodes} node(s), {tracking}: exit {proc.returncode}\n{proc.stderr[-3000:]}{gcs}")
        client = MlflowClient(uri)
        (parent,) = [r for r in client.search_runs(
            [e.experiment_id for e in client.search_experiments()], "tags.kind = 'study'")]
        m = parent.data.metrics
        return {"nodes": nodes, "tracking": tracking, "study_s": wall, "fit_s": m["wall_s"],
                "overhead_pct": 100 * m["overhead_share"], "mlflow_s_per_trial": m["mlflow_driver_s_per_trial"],
                "trials": int(m["trials_completed"] + m["trials_pruned"] + m["trials_failed"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--space", type=Path, default=DEFAULT_SPACE)
    p.add_argument("--cpus", type=int, default=2, help="CPUs in all, split over the nodes (default 2)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    rows = []
    for nodes in (1, 2):
        for tracking in ("sqlite", "server"):
            with tempfile.TemporaryDirectory(prefix="vgan-bench-") as d:
                rows.append(run_study(args.space, Path(d), nodes, tracking, args.cpus))
            r = rows[-1]
            print(f"{r['nodes']} node(s) {r['tracking']:7s} study {r['study_s']:6.1f} s  fit {r['fit_s']:6.1f} s  "
                  f"overhead {r['overhead_pct']:5.1f} %  MLflow (driver) {r['mlflow_s_per_trial']:5.2f} s/trial  "
                  f"({r['trials']} trials)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
