"""A real multi-node Ray cluster and a real MLflow tracking server on 127.0.0.1.

For the cluster tests and the cluster benchmark: each node is its own `ray start --block`
with its own temp dir, so one machine stands in for several. Everything is torn down by the
ids of the processes started here (never `ray stop`, which stops every Ray on the machine),
also when the code using it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tuner.cluster import RAY_ENV
from tuner.tracking import server_answers

# Token auth switches itself on when ~/.ray/auth_token exists; every process must agree.
CLUSTER_ENV = {**RAY_ENV, "RAY_AUTH_MODE": "disabled", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # the command may contain spaces and parentheses: fields follow the last ')'
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (Linux /proc), parents first."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def kill_tree(pids: list[int], grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL whatever is left after the grace period; SIGKILL alone without one
    (a SIGTERM that is not waited for still runs the processes' handlers, racing the SIGKILL)."""
    for sig in (signal.SIGTERM, signal.SIGKILL) if grace_s > 0 else (signal.SIGKILL,):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        if not any(_alive(p) for p in pids):
            return


@dataclass
class Service:
    """One started command, its log, and every process it spawned."""

    name: str
    proc: subprocess.Popen
    log: Path
    grace_s: float = 5.0  # between SIGTERM and SIGKILL on stop
    known: set[int] = field(default_factory=set)

    def remember(self) -> None:
        # Ray re-parents some children (workers start their own process group): record the
        # tree while the parents live, so teardown still finds them by id.
        self.known.update(process_tree(self.proc.pid))

    def stop(self) -> None:
        self.remember()
        kill_tree(sorted(self.known), self.grace_s)
        self.proc.wait(timeout=30)

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""


def start(name: str, argv: list[str], log: Path, env: dict[str, str], grace_s: float = 5.0) -> Service:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return Service(name, proc, log, grace_s=grace_s)


def wait_for(service: Service, ready, what: str, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited ({service.proc.returncode}) before {what}:\n{service.tail()}")
        if ready():
            service.remember()
            return
        time.sleep(0.25)
    raise TimeoutError(f"{service.name}: no {what} after {timeout_s:.0f} s:\n{service.tail()}")


def venv_bin(tool: str) -> str:
    """`tool`'s command beside this interpreter (the venv's ray, mlflow), else on PATH."""
    here = Path(sys.executable).parent / tool
    return str(here) if here.exists() else shutil.which(tool) or tool


@dataclass
class RayCluster:
    address: str
    nodes: list[Service]
    temp: Path

    def gcs_errors(self, n: int = 20) -> str:
        """The tail of the head's GCS stderr (its errors, a crash's trace), for a failure message:
        the folder is gone after teardown."""
        err = self.temp / "0" / "session_latest" / "logs" / "gcs_server.err"
        lines = err.read_text(errors="replace").splitlines()[-n:] if err.exists() else []
        alive = any(_alive(p) and _name(p) == "gcs_server" for p in process_tree(self.nodes[0].proc.pid))
        return "\n".join([f"GCS process {'alive' if alive else 'gone'}; its stderr:", *(lines or ["(empty)"])])

    def remember(self) -> None:
        for n in self.nodes:
            n.remember()

    def kill_node(self, index: int) -> None:
        """What losing a machine looks like to Ray: all the node's processes die at once, unwarned
        (a SIGTERM would let the raylet tell the GCS it is leaving, which no lost machine does)."""
        node = self.nodes[index]
        node.remember()
        kill_tree(sorted(node.known), grace_s=0.0)


def start_ray_node(root: Path, temp: Path, index: int, cpus: int, env: dict[str, str], head_port: int) -> Service:
    """Node 0 is the head, listening on head_port; the others join it. Logs go to root."""
    root.mkdir(parents=True, exist_ok=True)
    argv = [venv_bin("ray"), "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus),
            "--num-gpus", "0", "--temp-dir", str(temp), "--dashboard-agent-listen-port", str(free_port()),
            "--disable-usage-stats"]
    if index == 0:
        argv += ["--head", "--port", str(head_port), "--include-dashboard", "false",
                 "--dashboard-port", str(free_port())]
    else:
        argv += ["--address", f"127.0.0.1:{head_port}"]
    log = root / f"node{index}.log"
    # A test cluster holds nothing to save, and a node given SIGTERM outlives any grace period here
    # (its raylet and GCS were still up 6 s on): it is killed at once.
    node = start(f"ray node {index}", argv, log, env, grace_s=0.0)
    wait_for(node, lambda: "Ray runtime started" in log.read_text(errors="replace"), "'Ray runtime started'")
    return node


@contextmanager
def ray_cluster(root: Path, nodes: int = 2, cpus_per_node: int = 1,
                env: dict[str, str] | None = None) -> Iterator[RayCluster]:
    env = {**os.environ, **CLUSTER_ENV, **(env or {})}
    with ExitStack() as stack:
        # Ray's socket paths must fit in 107 bytes: the nodes' temp dirs go directly under /tmp.
        temp = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
        stack.callback(shutil.rmtree, temp, ignore_errors=True)
        port = free_port()
        cluster = RayCluster(f"127.0.0.1:{port}", [], temp)
        for i in range(nodes):
            node = start_ray_node(root, temp / str(i), i, cpus_per_node, env, port)
            stack.callback(node.stop)
            cluster.nodes.append(node)
        yield cluster
        cluster.remember()


@dataclass
class MlflowServer:
    uri: str
    service: Service
    argv: list[str]
    env: dict[str, str]

    def stop(self) -> None:
        self.service.stop()

    def restart(self) -> None:
        """The same server again (same store, port and artifacts), as after an outage."""
        self.service = start("mlflow server", self.argv, self.service.log.with_suffix(".restart.log"), self.env)
        wait_for(self.service, lambda: server_answers(self.uri, 2), "/health")


@contextmanager
def mlflow_server(root: Path, env: dict[str, str] | None = None) -> Iterator[MlflowServer]:
    """SQLite backend store, artifacts proxied by the server to a folder (clients need no shared disk)."""
    env = {**os.environ, **CLUSTER_ENV, **(env or {})}
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [venv_bin("mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1"]
    server = MlflowServer(f"http://127.0.0.1:{port}", start("mlflow server", argv, root / "mlflow.log", env), argv, env)
    try:
        wait_for(server.service, lambda: server_answers(server.uri, 2), "/health")
        yield server
    finally:
        server.stop()


def _pings(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def model_server(root: Path, model_uri: str, tracking_uri: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`mlflow models serve -m MODEL --env-manager local` on 127.0.0.1; yields its URL. Stops what it started."""
    mlflow = venv_bin("mlflow")
    # mlflow runs the server as `uvicorn` from PATH: the venv's, though the venv is not activated
    path = os.pathsep.join([str(Path(mlflow).parent), os.environ.get("PATH", "")])
    env = {**os.environ, **CLUSTER_ENV, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": path, **(env or {})}
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [mlflow, "models", "serve", "-m", model_uri, "--env-manager", "local", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1"]
    service = start("mlflow models serve", argv, root / "serve.log", env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(service, lambda: _pings(url), "/ping", timeout_s=180)
        yield url
    finally:
        service.stop()


def invoke(url: str, payload: dict, timeout_s: float = 120) -> dict:
    """POST a JSON payload to a model server's /invocations; the parsed answer."""
    import json
    import urllib.request

    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as r:
        return json.loads(r.read())
