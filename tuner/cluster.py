"""The Ray side of a study: start or join a cluster, and check it can run the study.

Everything here runs before the first trial, so a study that cannot work is refused
(exit status 2) instead of failing trial by trial.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from tuner.scratch import PREFIXES, sweep
from tuner.space import SearchSpace, SpaceError
from tuner.storage import Storage
from tuner.tracking import TELEMETRY_ENV
from vgan.errors import ConfigError

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", **TELEMETRY_ENV}
PROBE_TIMEOUT_S = 60


def start_ray(address: str | None, verbose: bool = False) -> Path | None:
    """Start a local Ray or join one. Unless verbose, workers' output goes to the trial folders only
    and Ray's driver logs only errors (the terminal is tuner.console's). Returns the local Ray's
    session folder (its own logs and sockets; None when joining a cluster)."""
    os.environ.update(RAY_ENV)
    import ray

    kwargs: dict[str, Any] = dict(runtime_env={"env_vars": dict(RAY_ENV)}, log_to_driver=verbose,
                                  logging_level=logging.INFO if verbose else logging.ERROR)
    if address:
        ray.init(address=address, **kwargs)
        return None
    # Ray's socket paths must stay short: its temp dir goes directly under /tmp, or Ray's own RAY_TMPDIR
    # (where /tmp is small or shared, as on many clusters).
    session = Path(tempfile.mkdtemp(prefix="ray-vgan-", dir=os.environ.get("RAY_TMPDIR") or "/tmp"))
    ray.init(include_dashboard=False, _temp_dir=str(session), **kwargs)
    return session


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """A cluster address where nothing answers is refused in seconds: Ray's own client retries for minutes,
    printing a warning every few seconds. `auto` (a cluster this node belongs to) is left to Ray."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address}: give HOST:PORT (the head's GCS port, 6379 by default) or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError(f"--address {address}: no Ray cluster answers there ({e.strerror or e}); "
                          "start its head with `ray start --head` or give another address") from None


def stop_ray(session: Path | None, keep: bool) -> None:
    """Stop Ray; the local session's folder goes with it unless kept (a study that crashed: Ray's logs
    of raylet, GCS and workers), then named on stderr. Trials' own output is in their folders. Scratch
    folders that trials killed on this node left (tuner.scratch) go too; live trials', any study's, stay."""
    import ray

    ray.shutdown()
    for prefix in PREFIXES:
        sweep(prefix)
    if session is None:
        return
    if keep:
        print(f"Ray's own logs of this study: {session / 'session_latest' / 'logs'}", file=sys.stderr, flush=True)
    else:
        shutil.rmtree(session, ignore_errors=True)


def check_gpus(space: SearchSpace, available: float, where: str) -> None:
    need = space.resources.gpu
    required = math.ceil(need)  # a fraction needs one GPU to share; whole GPUs need that many
    if available < required:
        raise SpaceError(f"{space.source}: 'resources.gpu' asks for {need:g} GPU per trial, but {where} has "
                         f"{'none' if not available else f'{available:g}'}")


def trials_side_by_side(space: SearchSpace, nodes: list[dict[str, Any]]) -> int:
    """How many trials the nodes hold at once, each asking for the space's resources (a trial runs on one node);
    at least 1, as an autoscaling cluster may start with none to spare. A study runs as many at once as they
    hold, up to its tune.max_concurrent_trials (a PBT study has none: its whole population)."""
    need = space.resources

    def on(node: dict[str, Any]) -> int:
        have = node.get("Resources", {})
        n = math.floor(have.get("CPU", 0) / need.cpu + 1e-9)
        return min(n, math.floor(have.get("GPU", 0) / need.gpu + 1e-9)) if need.gpu else n

    return max(1, sum(on(n) for n in nodes))


def trials_held(space: SearchSpace) -> int:
    """How many of the space's trials the cluster's alive nodes hold at once now."""
    return trials_side_by_side(space, alive_nodes())


def alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n["Alive"]]


def check_storage(storage: Storage, nodes: list[dict[str, Any]], where: str) -> None:
    """Trials write checkpoints on whichever node runs them, and a retry may run elsewhere:
    on several nodes the storage must be one place that every node sees."""
    if len(nodes) < 2:
        return
    if not storage.shared:
        raise ConfigError(
            f"--storage {storage.uri}: a folder on this machine, but {where} has {len(nodes)} nodes and each "
            f"would keep its trials on its own disk; give a folder every node mounts at the same path as "
            f"file://{storage.uri} (it is checked), or an object store such as s3://bucket/prefix")
    if storage.local is not None:
        blind = nodes_not_seeing(storage, nodes)
        if blind:
            raise ConfigError(f"--storage {storage.uri}: not shared: {len(blind)} of {len(nodes)} nodes cannot see "
                              f"it ({', '.join(blind)}); mount it at {storage.local} on every node")


def nodes_not_seeing(storage: Storage, nodes: list[dict[str, Any]]) -> list[str]:
    """Write a marker here and ask a task pinned to each node whether it can read it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    assert storage.local is not None
    storage.local.mkdir(parents=True, exist_ok=True)
    marker = storage.local / f".probe-{uuid.uuid4().hex}"
    marker.write_text("vgan-tune storage probe\n")
    try:
        sees = ray.remote(num_cpus=0)(_sees)
        refs = [sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(str(marker)) for n in nodes]
        seen = ray.get(refs, timeout=PROBE_TIMEOUT_S)
    finally:
        marker.unlink(missing_ok=True)
    return [f"{n['NodeManagerAddress']} {n['NodeID'][:8]}" for n, ok in zip(nodes, seen, strict=True) if not ok]


def _sees(path: str) -> bool:
    return os.path.isfile(path)
