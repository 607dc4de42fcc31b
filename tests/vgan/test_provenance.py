"""vgan.provenance: which code made a result, and what it ran on."""

import platform
import subprocess

import numpy as np
import torch

from vgan.provenance import (
    COMMIT_ENV,
    DIRTY_ENV,
    KERNEL_VARIABLES,
    code_version,
    cpu_name,
    describe_environment,
    environment_changed,
    environment_record,
    image_code,
)


def test_the_code_version_is_the_checkouts_commit_and_says_when_it_was_changed(tmp_path):
    def git(*argv: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *argv], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "space.yaml").write_text("tune: {}\n")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    head = git("rev-parse", "HEAD")
    assert code_version(tmp_path / "pkg") == (head, False)
    (tmp_path / "pkg" / "notes.txt").write_text("untracked: no change to the code\n")
    assert code_version(tmp_path / "pkg") == (head, False)
    (tmp_path / "space.yaml").write_text("tune: {num_samples: 3}\n")  # a tracked file outside the package
    assert code_version(tmp_path / "pkg") == (head, True)
    (tmp_path / "venv" / "pkg").mkdir(parents=True)  # installed into an environment inside the checkout
    assert code_version(tmp_path / "venv" / "pkg") is None
    plain = tmp_path.parent / f"{tmp_path.name}-plain"  # no checkout at all
    plain.mkdir()
    assert code_version(plain) is None


def test_an_image_says_its_commit_through_its_build_arguments(monkeypatch):
    """docker/Dockerfile keeps its build arguments as these variables: what an installed package, which has no
    checkout to ask, says of its code. Anything that is not a commit says nothing."""
    monkeypatch.delenv(DIRTY_ENV, raising=False)
    monkeypatch.setenv(COMMIT_ENV, "C29EC4E" + "0" * 33)
    assert image_code() == ("c29ec4e" + "0" * 33, False)
    monkeypatch.setenv(DIRTY_ENV, "true")
    assert image_code() == ("c29ec4e" + "0" * 33, True)
    for said in ("", "HEAD", "c29ec4", "unknown", "g" * 40):
        monkeypatch.setenv(COMMIT_ENV, said)
        assert image_code() is None, said


def test_the_environment_record_says_what_a_run_on_the_cpu_ran_on(monkeypatch):
    for name in KERNEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    record = environment_record(torch.device("cpu"))
    assert record == {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                      "os": platform.platform(), "cpu": cpu_name(),
                      "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
                      "device": "cpu"}
    assert record["cpu"] and record["cpu_capability"] in ("DEFAULT", "AVX2", "AVX512", "ZVECTOR", "NO AVX", "SVE256")
    info = open("/proc/cpuinfo").read() if platform.system() == "Linux" else ""
    if "cpu family" in info:  # x86 Linux: a cloud's "AMD EPYC" is several generations, the numbers tell them apart
        family = next(ln for ln in info.splitlines() if ln.startswith("cpu family")).split(":")[1].strip()
        assert f"(family {family}, model " in record["cpu"]
    assert describe_environment(record) == (f"torch {torch.__version__} on {record['cpu']}, "
                                            f"{record['cpu_capability']}, {torch.get_num_threads()} thread"
                                            + ("" if torch.get_num_threads() == 1 else "s"))
    assert describe_environment(None) == "an unrecorded environment"
    # a variable that picks other kernels changes the digits as another machine would: said where set
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert environment_record(torch.device("cpu")) == {**record, "kernel_variables": {"ONEDNN_MAX_CPU_ISA": "AVX2"}}
    assert environment_changed(record, environment_record(torch.device("cpu"))) == \
        "kernel_variables None to {'ONEDNN_MAX_CPU_ISA': 'AVX2'}"


def test_an_environment_change_names_what_differs_but_the_os():
    now = environment_record(torch.device("cpu"))
    assert environment_changed(now, now) is None
    assert environment_changed(None, now) is None  # a checkpoint from before environments were recorded
    assert environment_changed({**now, "os": "Linux-5.4-x86_64"}, now) is None  # a kernel update changes no sum
    before = {**now, "torch": "2.0.0", "threads": now["threads"] + 1}
    assert environment_changed(before, now) == (f"torch 2.0.0 to {now['torch']}, "
                                                f"threads {now['threads'] + 1} to {now['threads']}")
    on_gpu = {**now, "device": "cuda", "gpu": "NVIDIA H100 80GB HBM3", "cuda": "13.0"}
    assert environment_changed(on_gpu, now) == ("device cuda to cpu, gpu NVIDIA H100 80GB HBM3 to None, "
                                                 "cuda 13.0 to None")
