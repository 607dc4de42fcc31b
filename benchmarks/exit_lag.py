"""`python -m benchmarks.exit_lag` (from the repository root): how long a command takes to exit once its work is done.

    python -m benchmarks.exit_lag --drive ../shared/data/DRIVE [--repeats 3] [--json OUT]

Each command is run as a user runs it (`python -m ...`, output piped) and timed from its last line of output
to the end of its process: a one-epoch `vgan.train` on the built-in synthetic data, `vgan.predict` of two DRIVE
test photographs with the checkpoint it wrote, and `vgan.evaluate` of V-GAN's published DRIVE maps. Each also
runs with the interpreter's final garbage collection left in place (`vgan.cli.exit_program` replaced by
`sys.exit`, as every command ended before), alternating, so both see the same machine. A study's command
(`tuner.run`) is left out: a smoke study takes over a minute (its figures, by hand, are in docs/figures.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# runs a module as `python -m` does, its exit_program first swapped for a plain sys.exit where asked
RUNNER = """import runpy, sys
if sys.argv.pop(1) == "collect":
    import vgan.cli
    vgan.cli.exit_program = sys.exit
module = sys.argv.pop(1)
sys.argv[0] = module
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def exit_lag(mode: str, module: str, args: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, mode, module, *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    last = time.perf_counter()
    for _ in iter(proc.stdout.readline, b""):
        last = time.perf_counter()
    if proc.wait() != 0:
        raise RuntimeError(f"{module} {' '.join(args)}: exit {proc.returncode}")
    return time.perf_counter() - last


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.exit_lag", description=__doc__.split("\n\n")[0])
    p.add_argument("--drive", type=Path, required=True, help="the DRIVE dataset root (two test photographs)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    images = [str(args.drive.resolve() / "test" / "images" / f"{i:02d}_test.tif") for i in (1, 2)]
    reference = args.drive.resolve().parent / "reference" / "vgan" / "DRIVE"
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        subprocess.run([sys.executable, "-m", "vgan.train", "--epochs", "1", "--out", str(work / "run"), "--quiet"],
                       cwd=repo, check=True, capture_output=True)
        (ckpt,) = (work / "run").glob("**/best.pt")
        commands = {
            "vgan.train (1 epoch, synthetic)": ("vgan.train", ["--epochs", "1", "--out", str(work / "t"), "--quiet"]),
            "vgan.predict (2 DRIVE photographs)": ("vgan.predict", ["--checkpoint", str(ckpt), "--input", *images,
                                                                    "--out", str(work / "maps")]),
            "vgan.evaluate (V-GAN's published DRIVE maps)": (
                "vgan.evaluate", ["--predictions", str(reference), "--data", str(args.drive.resolve()),
                                  "--dataset", "drive", "--out", str(work / "scores")]),
        }
        figures = {}
        for name, (module, cmd) in commands.items():
            lags: dict[str, list[float]] = {"frozen": [], "collect": []}
            for _ in range(args.repeats):
                for mode in lags:
                    lags[mode].append(exit_lag(mode, module, cmd, repo))
            figures[name] = {mode: {"median_s": statistics.median(v), "runs_s": v} for mode, v in lags.items()}
            print(f"{name}: exit {figures[name]['frozen']['median_s']:.2f} s "
                  f"(with the final collection: {figures[name]['collect']['median_s']:.2f} s), "
                  f"median of {args.repeats}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                         "commands": figures}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
