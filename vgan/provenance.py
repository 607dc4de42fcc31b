"""Which code made a result: the git commit of the checkout the package runs from, and whether it was edited;
and what it ran on: the library versions, the processor and the accelerator, which one commit's numbers depend on.

A checkpoint records both (`code`, `environment`), `vgan.evaluate` reports them with the scores, and a study's
MLflow runs and registered versions carry the code as tags (`tuner.tracking.source_tags`), a registered version
the environment that trained it too. A commit alone does not say what ran when tracked files (code, configs,
search spaces) differed from it, so the record says that too. Nor does it say what a run's figures will be: one
commit trained a seed's run differently on two machines of one cloud (first epoch's generator loss 1.035186 against
1.035340), and a checkpoint that kept only the commit could not tell why.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch


def code_version(package: Path | None = None) -> tuple[str, bool] | None:
    """(the git commit of the checkout that holds `package` (default: vgan/), whether tracked files differ from
    it); None where the package is no tracked part of a checkout (installed, in an image; a virtual environment
    inside some other checkout is not)."""
    package = package or Path(__file__).resolve().parent

    def git(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *argv], cwd=package, capture_output=True, text=True, timeout=10)

    try:
        if git("ls-files", "--error-unmatch", ".").returncode != 0:
            return None
        head, changed = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no", ":/")
    except (OSError, subprocess.SubprocessError):  # no git
        return None
    return (head.stdout.strip(), bool(changed.stdout.strip())) if head.returncode == 0 else None


# An image holds no checkout: docker/Dockerfile takes the commit as build arguments and keeps them as these.
COMMIT_ENV, DIRTY_ENV = "VGAN_GIT_COMMIT", "VGAN_GIT_DIRTY"


def image_code() -> tuple[str, bool] | None:
    """(the commit an image was built from, whether its tree was edited), as its build said (COMMIT_ENV,
    DIRTY_ENV); None where it said none, or no commit (a hex name of 7 to 40 digits)."""
    commit = os.environ.get(COMMIT_ENV, "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]{7,40}", commit):
        return None
    return commit, os.environ.get(DIRTY_ENV, "").strip().lower() == "true"


@functools.cache
def running_code() -> tuple[str, bool] | None:
    """`code_version` of this checkout, or else `image_code`, asked once per process: every trainer a process
    makes (a study's trials, PBT's restarts, retries) runs the code it imported, and git need not be asked
    again each time."""
    return code_version() or image_code()


def code_record() -> dict[str, Any] | None:
    """The running code as a checkpoint and metrics.json keep it: {"commit": ..., "dirty": ...}, or None."""
    version = running_code()
    return None if version is None else {"commit": version[0], "dirty": version[1]}


def describe_code(record: dict[str, Any] | None) -> str:
    """A code record in words, for a note: "commit 1a2b3c4d5e6f (edited)", or "code of no known commit"."""
    if record is None:
        return "code of no known commit"
    return f"commit {record['commit'][:12]}" + (" (edited)" if record["dirty"] else "")


def code_changed(saved: dict[str, Any] | None, running: dict[str, Any] | None) -> str | None:
    """"<saved> to <running>" where the code that wrote a checkpoint or began a study is not the code resuming
    it, for a note; None where the records agree. Two edited trees of one commit agree: git keeps no record of
    uncommitted edits to tell them apart."""
    return None if saved == running else f"{describe_code(saved)} to {describe_code(running)}"


# What a run's numbers depend on beside its code and config. The OS (its kernel's version) does not, and a
# cluster's nodes update it under a long run: recorded, not compared.
UNCOMPARED = ("os",)
# Variables that choose the kernels or their arithmetic (which instructions oneDNN, ATen and MKL use; cuBLAS's
# workspace; TF32): set, they change a run's last digits as another machine does. ONEDNN_MAX_CPU_ISA=AVX2 on an
# AVX-512 machine trains the CPU recipe's seeds 2 and 3 to the first-epoch losses of a session whose machine had
# no AVX-512 (1.035340 and 0.948244, against 1.035186 and 0.946328): recorded where set.
KERNEL_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS",
                    "MKL_CBWR", "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE")


@functools.cache
def cpu_name() -> str:
    """The processor's model as the OS names it, with its family and model numbers where it gives them (a cloud's
    "AMD EPYC" is several generations), else what `platform` says."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in info.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the first processor's block is enough
            continue
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


@functools.cache
def gpu_driver() -> str | None:
    """The NVIDIA driver's version (torch does not tell it), from `nvidia-smi`; None where it cannot be asked."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    return lines[0] if out.returncode == 0 and lines else None


def environment_record(device: torch.device) -> dict[str, Any]:
    """What a run on `device` runs on, as a checkpoint and metrics.json keep it: Python, torch and NumPy versions,
    the OS, the processor (whose vector instructions oneDNN's convolutions use as they find them), the vector
    instructions torch's own CPU kernels use and its thread count (each changes how sums are split, so the last
    digits), the `KERNEL_VARIABLES` set, and on a GPU its name, CUDA, cuDNN and the driver."""
    record: dict[str, Any] = {
        # plain str: torch's version is a str subclass, which a weights_only load refuses
        "python": platform.python_version(), "torch": str(torch.__version__), "numpy": str(np.__version__),
        "os": platform.platform(), "cpu": cpu_name(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(), "device": device.type,
    }
    chosen = {k: os.environ[k] for k in KERNEL_VARIABLES if os.environ.get(k)}
    if chosen:
        record["kernel_variables"] = chosen
    if device.type == "cuda":
        record.update(gpu=torch.cuda.get_device_name(device), cuda=str(torch.version.cuda),
                      cudnn=torch.backends.cudnn.version(), driver=gpu_driver())
    return record


def describe_environment(record: dict[str, Any] | None) -> str:
    """An environment record in words, for a note: "torch 2.13.0+cpu on AMD EPYC (...), AVX512, 2 threads"."""
    if record is None:
        return "an unrecorded environment"
    threads = record.get("threads")
    on = record.get("gpu") or (f"{record.get('cpu')}, {record.get('cpu_capability')}, {threads} "
                               f"thread{'' if threads == 1 else 's'}")
    return f"torch {record.get('torch')} on {on}"


def environment_changed(saved: dict[str, Any] | None, running: dict[str, Any]) -> str | None:
    """"<key> <saved> to <running>, ..." for what differs between the environment that wrote a checkpoint and the
    one resuming it, for a note; None where they agree (the OS aside) or the checkpoint recorded none."""
    if saved is None:
        return None
    keys = [k for k in dict.fromkeys([*saved, *running]) if k not in UNCOMPARED]
    return ", ".join(f"{k} {saved.get(k)} to {running.get(k)}" for k in keys if saved.get(k) != running.get(k)) \
        or None
