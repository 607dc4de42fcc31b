"""A study whose trial storage is an object store (`--storage s3://...`, as a cluster without a shared folder
keeps it; docker/README.md): run, resumed and replayed against a local S3 server (moto), reached as MinIO is,
through pyarrow's URI options."""

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from studies import ONE_STUDY_AT_A_TIME, quick_smoke, trial_runs

pytestmark = ONE_STUDY_AT_A_TIME
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def bucket(monkeypatch):
    """An S3 server on a free local port with an empty bucket `vgan`: its endpoint (host:port)."""
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket="vgan")
    yield f"127.0.0.1:{port}"
    server.stop()


def keys(endpoint: str) -> list[str]:
    import boto3

    pages = boto3.client("s3", endpoint_url=f"http://{endpoint}").get_paginator("list_objects_v2").paginate(Bucket="vgan")
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.mark.slow
def test_a_study_on_an_object_store_runs_resumes_and_replays(bucket, tmp_path, capsys):
    from tuner.replay import main as replay_main

    storage = f"s3://vgan/ray?endpoint_override={bucket}&scheme=http"
    space = quick_smoke(tmp_path / "space.yaml", experiment="s3", tune={"num_samples": 3})
    study = ["--space", str(space), "--storage", storage, "--name", "s", "--study-db", f"sqlite:///{tmp_path}/o.db"]
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # Ray's socket paths must be short
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmp)}

    def run(*more: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "tuner.run", *study, *more,
                               "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    try:
        # the study's folder is made inside the URI's path, its options kept at the end (they were once
        # appended to: "Invalid S3 connection scheme 'http/s'")
        said = run()
        assert f"storage s3://vgan/ray/s?endpoint_override={bucket}&scheme=http" in said
        stored = keys(bucket)
        assert {"ray/s/recipe.json", "ray/s/study_db.txt"} <= set(stored)
        assert any(k.startswith("ray/s/experiment_state-") for k in stored)
        assert any("/checkpoint_" in k and k.endswith("/best/best_generator.pt") for k in stored)
        client, runs = trial_runs(f"sqlite:///{tmp_path}/mlflow.db", "s3", "s")
        assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
        assert int(client.get_model_version_by_alias("s3", "champion").version) == 1
        # a trial folder a killed driver had begun after Ray's last saved state (tuner.resume.unsaved_trials)
        import boto3

        begun = "ray/s/train_vgan_0badf00d_9_optim_lr_g=0.0010_2026-12-07_10-31-00/checkpoint_000000/trial.json"
        boto3.client("s3", endpoint_url=f"http://{bucket}").put_object(Bucket="vgan", Key=begun, Body=b"{}")
        # finished: resumed from Ray's state in the bucket, nothing trained again, nothing registered twice
        said = run("--resume")
        assert "is registered already as s3 version 1" in said
        assert "(its searcher proposed anew): 0badf00d" in said and not any("0badf00d" in k for k in keys(bucket))
        assert set(stored) <= set(keys(bucket)), "nothing else of the study removed"
    finally:
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)
    # every trial's epochs and best model, from the bucket into an empty tracking store
    assert replay_main([*study, "--tracking-uri", f"sqlite:///{tmp_path}/replayed.db"]) == 0
    _, replayed = trial_runs(f"sqlite:///{tmp_path}/replayed.db", "s3", "s")
    assert len(replayed) == 3 and all("best_model_uri" in r.data.tags for r in replayed if
                                      r.data.tags["status"] == "completed")
    assert sorted(r.data.tags["optuna_trial_number"] for r in replayed) == ["0", "1", "2"]


def test_an_exploited_trials_clone_is_copied_within_the_object_store(bucket):
    """TidyPBT's copy of a cloned checkpoint into the exploited trial's folder, on S3 (moto): the files copied
    object to object, the copy registered as the trial's newest, the donor's own left as it was."""
    from ray.train._internal.session import _TrainingResult
    from ray_trials import checkpoint_written, ray_trial

    from tuner.pbt import adopt_clone, cloned

    root = f"s3://vgan/ray?endpoint_override={bucket}&scheme=http"
    donor, t = ray_trial(root, "donor"), ray_trial(root, "t")
    fs = t.storage.storage_filesystem
    files = {"state.pt": b"donor's weights", "best/generator.pt": b"donor's best"}
    given = checkpoint_written(donor, 4, files=files)
    checkpoint_written(t, 0, b"t's own")
    t.run_metadata.checkpoint_manager._latest_checkpoint_result = _TrainingResult(  # as PBT's exploit leaves it
        checkpoint=donor.checkpoint, metrics={})
    assert cloned(t)
    copy = adopt_clone(t)
    assert copy == f"{t.storage.trial_fs_path}/checkpoint_000001" and t.checkpoint.path == copy and not cloned(t)
    for name, data in files.items():
        with fs.open_input_stream(f"{copy}/{name}") as f:
            assert f.read() == data
    with fs.open_input_stream(f"{given}/state.pt") as f:
        assert f.read() == b"donor's weights"
