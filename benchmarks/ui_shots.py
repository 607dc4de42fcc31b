"""`python -m benchmarks.ui_shots` (from the repository root): what a user sees of a study in MLflow's UI.

    python -m benchmarks.ui_shots --tracking-uri sqlite:///mlflow.db --experiment vgan-smoke --study smoke9 \\
        --model vgan-generator-synthetic --out benchmarks/results/ui [--chromium /usr/bin/chromium]

Starts `mlflow ui` over the study's store, opens in headless Chromium the pages a user
opens (the runs table through the link `tuner.run` prints, the best trial's run, the experiment's logged
models, the registered model, its champion version and the champion's logged model, and, where
`tuner.predict --log` recorded batches in the store, their table through the link it prints), saves one PNG
each and stops what it started.

The UI is served on 127.0.0.2 (`--host`), a loopback address MLflow's UI does not take for this machine: there
it opens no assistant panel, which on 127.0.0.1 takes a quarter of every page's width (a user closes it once).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.loopback import free_port, start, venv_bin, wait_for
from tuner.tracking import server_answers

VIEW = "workflowType=machine_learning"


def pages(client, experiment: str, study: str, model: str, base: str) -> dict[str, str]:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"--experiment: no experiment {experiment!r} in this store")
    at = f"{base}/#/experiments/{exp.experiment_id}"
    parent = client.search_runs([exp.experiment_id], f"tags.kind = 'study' AND tags.study = '{study}'", max_results=1)
    if not parent:
        raise SystemExit(f"--study: no study {study!r} in experiment {experiment!r}")
    # the trial tuner.run ranked first by the space's score (the top row of its table and trials.csv)
    best = parent[0].data.tags.get("best_trial_id")
    if best is None:
        raise SystemExit(f"--study: study {study!r} has no best trial yet (still running, or no trial scored)")
    top = client.search_runs([exp.experiment_id],
                             f"tags.mlflow.parentRunId = '{parent[0].info.run_id}' AND tags.trial_id = '{best}'")
    try:
        version = client.get_model_version_by_alias(model, "champion")
    except Exception as e:  # MLflow raises one exception type for a missing model and a missing alias
        raise SystemExit(f"--model: no version of {model!r} is aliased champion ({e})") from None
    urls = {"runs": f"{at}/runs?{VIEW}&viewStateShareKey={study}", "trial": f"{at}/runs/{top[0].info.run_id}?{VIEW}",
            "models": f"{at}/models?{VIEW}", "registered": f"{base}/#/models/{model}",
            "version": f"{base}/#/models/{model}/versions/{version.version}"}
    if version.source.startswith("models:/m-"):  # the champion's logged model: its metrics, datasets, versions
        logged = client.get_logged_model(version.source.removeprefix("models:/"))
        urls["champion_model"] = f"{base}/#/experiments/{logged.experiment_id}/models/{logged.model_id}"
    from tuner.batches import EXPERIMENT
    from tuner.batches import VIEW as BATCHES

    batches = client.get_experiment_by_name(EXPERIMENT)
    if batches is not None and f"mlflow.sharedViewState.{BATCHES}" in batches.tags:
        urls["batches"] = f"{base}/#/experiments/{batches.experiment_id}/runs?{VIEW}&viewStateShareKey={BATCHES}"
    return urls


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ui_shots", description=__doc__.split("\n\n")[0])
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--study", required=True)
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--host", default="127.0.0.2",
                   help="loopback address to serve the UI on (127.0.0.1: as a user sees it, assistant panel and all)")
    p.add_argument("--wait-ms", type=int, default=20000, help="virtual time Chromium gives each page to render")
    args = p.parse_args(argv)
    if not Path(args.chromium).is_file():
        raise SystemExit(f"--chromium: {args.chromium} not found (Debian: apt install chromium)")
    from mlflow.tracking import MlflowClient

    port = free_port()
    base = f"http://{args.host}:{port}"
    urls = pages(MlflowClient(args.tracking_uri), args.experiment, args.study, args.model, base)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vgan-ui-") as d:
        argv = [venv_bin("mlflow"), "ui", "--backend-store-uri", args.tracking_uri, "--host", args.host,
                "--port", str(port), "--allowed-hosts", f"{args.host}:{port}", "--cors-allowed-origins", base]
        ui = start("mlflow ui", argv, Path(d) / "ui.log", {**os.environ})
        try:
            wait_for(ui, lambda: server_answers(base, 2), "mlflow ui", timeout_s=120)
            for name, url in urls.items():
                shot = args.out / f"{name}.png"
                subprocess.run([args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                f"--user-data-dir={d}/chrome", "--window-size=1600,1000",
                                f"--virtual-time-budget={args.wait_ms}", f"--screenshot={shot}", url],
                               check=True, capture_output=True, timeout=180)
                print(f"{shot}  {url}")
        finally:
            ui.stop()
    (args.out / "urls.txt").write_text("".join(f"{k} {v}\n" for k, v in urls.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
