"""docker/ is not built in CI (no Docker engine): these checks keep it in step with the code. The Slurm job runs
here without Slurm (bash, its signal sent as Slurm would send it)."""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from studies import ONE_STUDY_AT_A_TIME, quick_smoke

from tuner.run import build_parser
from vgan.provenance import COMMIT_ENV, DIRTY_ENV

DOCKER = REPO / "docker"
RUN_OPTIONS = {s for a in build_parser()._actions for s in a.option_strings}


def interpolate(text: str) -> str:
    """What compose makes of ${VAR:-default}, ${VAR:?message}, ${VAR} and $$ with nothing exported."""
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", text)
    text = re.sub(r"\$\{(\w+)(:\?[^}]*)?\}", r"<\1>", text)
    return text.replace("$$", "$")


def tuner_run_args(command: str | list[str], env: dict[str, str] | None = None) -> list[str]:
    """The arguments `python -m tuner.run` gets, with the container's shell variables expanded."""
    text = interpolate(command if isinstance(command, str) else " ".join(command))
    env = {k: interpolate(v) for k, v in (env or {}).items()}
    text = re.sub(r"\$(\w+)", lambda m: env[m.group(1)], text.split("python -m tuner.run", 1)[1])
    return shlex.split(text.split("&&")[0])


def tune_args(compose) -> list[str]:
    tune = compose["services"]["tune"]
    return tuner_run_args(tune["command"], tune["environment"])


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def rayjob():
    return yaml.safe_load((DOCKER / "kuberay" / "rayjob.yaml").read_text())


def test_image_installs_this_project_as_a_non_root_user():
    lines = [ln.strip() for ln in (DOCKER / "Dockerfile").read_text().splitlines()]
    base = next(ln for ln in lines if ln.startswith("ARG BASE_IMAGE="))
    assert "pytorch" in base and "cuda" in base
    copied = [ln.split()[1] for ln in lines if ln.startswith("COPY")]
    for src in copied:
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
    assert {"pyproject.toml", "vgan/", "tuner/", "search_spaces/"} <= set(copied)
    install = next(ln for ln in lines if "pip install" in ln)
    extra = re.search(r'"\.\[(\w+)\]"', install).group(1)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert extra in project["optional-dependencies"]
    users = [ln.split()[1] for ln in lines if ln.startswith("USER")]
    assert users and users[-1] not in ("root", "0")
    env = " ".join(ln for ln in lines if not ln.startswith("#"))
    assert "PYTHONUNBUFFERED=1" in env and "RAY_USAGE_STATS_ENABLED=0" in env and "MLFLOW_DISABLE_TELEMETRY=true" in env


def test_compose_services_and_only_mlflow_published_on_localhost(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "mlflow", "ray-head", "ray-worker", "tune"}
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert list(published) == ["mlflow"]
    (mapping,) = published["mlflow"]
    host, host_port, container_port = interpolate(mapping).split(":")
    assert host == "127.0.0.1" and container_port == option(shlex.split(services["mlflow"]["command"]), "--port")
    for name in ("mlflow", "ray-head", "ray-worker", "tune"):
        build = services[name]["build"]
        assert {k: build[k] for k in ("context", "dockerfile")} == {"context": "..", "dockerfile": "docker/Dockerfile"}
    gpu = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]


def test_compose_addresses_agree(compose):
    s = compose["services"]
    mlflow = shlex.split(interpolate(s["mlflow"]["command"]))
    head = shlex.split(s["ray-head"]["command"])
    assert mlflow[:2] == ["mlflow", "server"] and head[:3] == ["ray", "start", "--head"]
    backend = option(mlflow, "--backend-store-uri")
    env = s["postgres"]["environment"]
    assert re.fullmatch(rf"postgresql://{env['POSTGRES_USER']}:<POSTGRES_PASSWORD>@postgres:5432/{env['POSTGRES_DB']}",
                        backend), backend
    assert f"mlflow:{option(mlflow, '--port')}" in option(mlflow, "--allowed-hosts").split(",")
    head_address = f"ray-head:{option(head, '--port')}"
    assert option(shlex.split(s["ray-worker"]["command"]), "--address") == head_address
    tune = interpolate(" ".join(s["tune"]["command"]))
    assert f"ray start --address {head_address}" in tune
    args = tune_args(compose)
    assert option(args, "--tracking-uri") == f"http://mlflow:{option(mlflow, '--port')}"


def test_compose_ray_nodes_share_storage_and_data(compose):
    s = compose["services"]
    args = tune_args(compose)
    storage = option(args, "--storage")
    assert storage.startswith("file:///")
    data = option(args, "--data")
    for name in ("ray-head", "ray-worker", "tune"):
        mounts = {m.split(":")[1]: m.split(":")[0] for m in map(interpolate, s[name]["volumes"])}
        assert any(storage[len("file://"):].startswith(target) and source == "ray-results"
                   for target, source in mounts.items()), (name, mounts)
        assert any(data.startswith(target) for target in mounts), (name, mounts)
        assert s[name]["environment"]["RAY_AUTH_MODE"] == "token" and "RAY_AUTH_TOKEN" in s[name]["environment"]
    assert set(compose["volumes"]) >= {"ray-results", "mlartifacts", "pgdata"}


@pytest.mark.parametrize("where", ["compose", "rayjob"])
def test_the_study_commands_exist_in_tuner_run(compose, rayjob, where):
    args = tune_args(compose) if where == "compose" else tuner_run_args(rayjob["spec"]["entrypoint"])
    flags = [a for a in args if a.startswith("--")]
    assert flags and set(flags) <= RUN_OPTIONS, set(flags) - RUN_OPTIONS
    build_parser().parse_args(args)  # what the container runs parses here
    assert (REPO / option(args, "--space")).is_file()
    assert option(args, "--address") == "auto"



def test_stopping_the_compose_study_reaches_the_driver(compose):
    """Docker stops a container with SIGTERM to its first process: the driver, exec'd by the shell (bash as the
    first process ignores SIGTERM: the driver was SIGKILLed after the grace period), under Docker's init, with time
    to stop the study in order (vgan.cli.sigterm_as_ctrl_c)."""
    tune = compose["services"]["tune"]
    shell = tune["command"][-1]
    assert re.search(r"&&\s+exec python -m tuner\.run ", shell), shell
    assert tune["init"] is True and re.fullmatch(r"\d+m", tune["stop_grace_period"])


def test_stopping_the_rayjob_gives_its_study_time_to_stop_in_order(rayjob):
    """`ray job stop` signals the driver, then SIGKILLs it after RAY_JOB_STOP_WAIT_TIME_S, read where the job
    supervisor runs: on the head."""
    from ray.dashboard.modules.job.job_supervisor import JobSupervisor

    (head,) = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"]
    wait = {e["name"]: e["value"] for e in head["env"]}["RAY_JOB_STOP_WAIT_TIME_S"]
    assert int(wait) >= 30 > JobSupervisor.DEFAULT_RAY_JOB_STOP_WAIT_TIME_S

def test_mlflow_server_options_exist():
    from mlflow.cli import server

    known = {o for p in server.params for o in p.opts}
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    used = {a for a in shlex.split(interpolate(compose["services"]["mlflow"]["command"])) if a.startswith("--")}
    assert used <= known, used - known


def test_rayjob_matches_the_project(rayjob):
    import ray

    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    spec = rayjob["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == ray.__version__
    assert f'"ray[tune]=={ray.__version__}"' in (REPO / "pyproject.toml").read_text()
    args = tuner_run_args(rayjob["spec"]["entrypoint"])
    storage = option(args, "--storage")
    assert storage.startswith("file:///")
    pods = [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
    for pod in pods:
        (container,) = pod["containers"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/shared" in mounts and storage[len("file://"):].startswith("/shared")
        assert option(args, "--data").startswith("/data") and "/data" in mounts
        assert pod["securityContext"]["runAsNonRoot"] is True
    worker = spec["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" in worker["resources"]["limits"]


def test_docker_readme_covers_the_four_ways():
    text = (DOCKER / "README.md").read_text()
    for needle in ("docker compose up", "ray start --head", "ray start --address", "kubectl apply -f docker/kuberay/",
                   "sbatch docker/slurm.sbatch", "--storage file://", "s3://"):
        assert needle in text, needle
    assert Path(DOCKER / "kuberay" / "rayjob.yaml").is_file()


def test_the_image_records_the_commit_it_was_built_from(compose):
    """An image has no checkout for vgan.provenance to ask: the build arguments become the variables it reads,
    and compose passes them from the environment of whoever builds."""
    text = (DOCKER / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines()]
    env = " ".join(ln for ln in text.replace("\\\n", " ").splitlines() if ln.strip().startswith("ENV"))
    for name in (COMMIT_ENV, DIRTY_ENV):
        assert f'ARG {name}=""' in lines and f"{name}=${{{name}}}" in env, name
        assert f"--build-arg {name}=$(git" in text
        assert interpolate(compose["services"]["tune"]["build"]["args"][name]) == ""  # unset: nothing recorded
        assert f"export {COMMIT_ENV}=$(git rev-parse HEAD) {DIRTY_ENV}=" in (DOCKER / "README.md").read_text()


@pytest.mark.slow
@ONE_STUDY_AT_A_TIME
def test_the_slurm_job_stops_its_study_in_order_ahead_of_the_limit_and_goes_on_when_submitted_again(ray_tmpdir,
                                                                                                      tmp_path):
    """At a job's time limit Slurm sends SIGTERM to every process of it, Ray's too: the driver could not stop the
    study in order (it waited a minute for Ray's GCS and exited 1). The job asks for a SIGTERM to its script alone
    ahead of the limit (--signal=B:...), which the script hands to the driver: sent here as Slurm sends it, to the
    script's process only, as the first epoch is reported. The same script, run again, resumes the study."""
    script = DOCKER / "slurm.sbatch"
    sbatch = [ln.split(None, 1)[1] for ln in script.read_text().splitlines() if ln.startswith("#SBATCH ")]
    assert any(re.fullmatch(r"--signal=B:TERM@\d+", o) for o in sbatch), sbatch
    # epochs enough that the study is still training when the signal lands (with 2 it had once ended already)
    space = quick_smoke(tmp_path / "space.yaml", "slurm", train={"epochs": 4}, tune={"num_samples": 2})
    env = {**os.environ, "NAME": "s", "STORAGE": str(tmp_path / "ray"), "SPACE": str(space),
           "TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "RAY_TMPDIR": str(ray_tmpdir),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # its `python`: this one
    job = subprocess.Popen(["bash", str(script), "--no-register"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while not any(f.stat().st_size for f in (tmp_path / "ray" / "s").glob("train_vgan_*/result.json")):
        assert job.poll() is None and time.monotonic() < deadline, "no epoch was reported"
        time.sleep(0.2)
    os.kill(job.pid, signal.SIGTERM)  # the batch script alone (B:)
    out = job.communicate(timeout=300)[0]
    assert job.returncode == 143 and "tuner.run: stopped by SIGTERM" in out, out[-3000:]
    assert re.search(r"^study s interrupted: \d+ trial\(s\) stopped mid-way keep their checkpoints", out, re.M), out
    again = subprocess.run(["bash", str(script), "--no-register"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "2 trials in" in again.stdout and " 0 failed;" in again.stdout
    assert "left running by an earlier driver" not in again.stdout  # nothing was lost: it went on from the stop
