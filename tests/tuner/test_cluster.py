"""A real two-node Ray cluster and a real MLflow server on 127.0.0.1 run the smoke study."""

import os
import re
import subprocess
import sys
import time

import pytest
import yaml
from loopback import CLUSTER_ENV, free_port, mlflow_server, ray_cluster
from studies import ONE_STUDY_AT_A_TIME, SMOKE, quick_smoke

from tuner.run import main
from tuner.tracking import use_tracking_uri

pytestmark = [pytest.mark.slow, ONE_STUDY_AT_A_TIME]


def run_study(cluster, server, space, storage, cwd, name="smoke"):
    return subprocess.run(
        [sys.executable, "-m", "tuner.run", "--space", str(space), "--name", name, "--address", cluster.address,
         "--tracking-uri", server.uri, "--storage", storage],
        cwd=cwd, env={**os.environ, **CLUSTER_ENV, "PYTHONUNBUFFERED": "1"},
        capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def cluster_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    # four trials: two at a time, one per node's CPU, so both nodes train (a cap of 3 the nodes cannot hold)
    space = quick_smoke(root / "smoke.yaml", tune={"num_samples": 4, "max_concurrent_trials": 3})
    with mlflow_server(root / "mlflow") as server, ray_cluster(root / "ray", nodes=2, cpus_per_node=1) as cluster:
        local = run_study(cluster, server, space, str(root / "local"), root, "refused")
        proc = run_study(cluster, server, space, f"file://{root}/shared", root)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + "\n" + cluster.gcs_errors()
        (root / "study.err").write_text(proc.stderr)  # for a failing test to show
        yield root, server, proc.stdout, local


def test_a_local_folder_is_refused_on_several_nodes(cluster_study):
    root, _, _, local = cluster_study
    assert local.returncode == 2, local.stderr[-2000:]
    assert f"--storage {root}/local: a folder on this machine, but the cluster at" in local.stderr
    assert "has 2 nodes" in local.stderr and f"file://{root}/local" in local.stderr
    assert not (root / "local").exists()


def test_trials_run_on_both_nodes_and_log_to_the_server(cluster_study):
    from mlflow.tracking import MlflowClient

    root, server, out, _ = cluster_study
    space = yaml.safe_load((root / "smoke.yaml").read_text())  # what the study ran
    # the study says what the nodes hold of its cap, and counts that many slots (it counted the cap's)
    assert f"4 trials of up to {space['train']['epochs']} epochs, 2 at once (tune.max_concurrent_trials says 3: the " \
        "nodes hold 2 now), on 2 node(s)" in out
    assert re.search(r"trial compute [\d.]+ s over 2 slots", out), out
    assert "View run" not in out, "MLflow's per-run links stay out of the console"
    client = MlflowClient(server.uri)
    exp = client.get_experiment_by_name(space["mlflow"]["experiment"])
    assert exp.artifact_location.startswith("mlflow-artifacts:"), "artifacts go through the server"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parent = next(r for r in runs if r.data.tags.get("kind") == "study")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == space["tune"]["num_samples"]
    nodes = [r.data.tags.get("node_id") for r in children]
    assert None not in nodes and len(set(nodes)) == 2, (
        [r.data.tags for r in children], out[-3000:], (root / "study.err").read_text()[-5000:])
    for r in children:
        assert r.data.tags["status"] in ("completed", "pruned")
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "val_auc_roc")]
        assert sorted(steps) == list(range(1, len(steps) + 1)) and steps
        names = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"config.yaml", "best"} <= names, names
        assert r.data.tags["best_model_uri"].startswith("models:/")
    stored = [p for p in (root / "mlflow" / "artifacts").rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in stored) and any(p.suffix == ".pt2" for p in stored)


def test_champion_loads_from_the_server_by_alias(cluster_study):
    import mlflow.pytorch
    import torch

    _, server, out, _ = cluster_study
    assert "registered vgan-generator-synthetic version 1 (challenger, champion)" in out
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.uri)  # the server lists the version on its logged model, and the registry not again
    source = client.get_model_version("vgan-generator-synthetic", "1").source
    assert client.get_logged_model(source.removeprefix("models:/")).tags["mlflow.modelVersions"] == \
        '[{"name": "vgan-generator-synthetic", "version": 1}]'
    with use_tracking_uri(server.uri):
        champion = mlflow.pytorch.load_model("models:/vgan-generator-synthetic@champion")
    probs = champion(torch.rand(2, 3, 70, 90))
    assert probs.shape == (2, 1, 70, 90) and 0 <= probs.min() and probs.max() <= 1


def test_an_unreachable_tracking_server_is_refused_in_seconds(tmp_path, capsys):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.perf_counter()
    code = main(["--space", str(SMOKE), "--storage", str(tmp_path / "ray"), "--tracking-uri", uri])
    err = capsys.readouterr().err
    assert code == 2 and f"--tracking-uri {uri}: the MLflow tracking server is unreachable" in err, err
    assert time.perf_counter() - t0 < 15 and not (tmp_path / "ray").exists()
