"""`python -m benchmarks.model_save` (from the repository root): what logging a trial's model costs the driver.

    python -m benchmarks.model_save --space search_spaces/drive_cpu.yaml --data ../shared/data/DRIVE \\
        [--models 4] [--json OUT]

For generators of the space's base shape (fresh weights each): the pt2 archive `tuner.flavor` writes,
the first one exported (the process's first `torch.export` also pays its own warm-up), the next ones
the first's archive with their own weight records; a fresh `torch.export` + save of the same generator
beside it (what every model cost before the swap); and the whole
`flavor.log_model` into a throwaway SQLite MLflow store (archive, code, environment files, the
store's rows), as the driver's projection calls it at each trial end. Then what loading one costs a user:
`mlflow.pytorch.load_model` of a logged model in a fresh process (its imports timed apart), as `tuner.predict`,
a served model and the registry's scoring pay it once per process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.model_save", description=__doc__.split("\n\n")[0])
    p.add_argument("--space", required=True)
    p.add_argument("--data", help="dataset root, for a space on real images (only its model shape is used)")
    p.add_argument("--models", type=int, default=4, help="generators to save (the first is exported)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.models < 2:
        p.error("--models must be at least 2 (one export, then swaps)")
    import torch

    from benchmarks.train_speed import timed
    from tuner import flavor
    from tuner.space import load_space
    from tuner.tracking import MlflowClient, use_tracking_uri
    from vgan.models import Generator

    cfg = load_space(args.space, args.data).trainer_config().model

    def generator(seed: int) -> Generator:
        torch.manual_seed(seed)
        return Generator(cfg).eval()

    def seconds(fn) -> float:
        return timed(fn, torch.device("cpu"))  # the driver's CPU: what the projection's thread pays

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="vgan-save-") as d:
        saves = [seconds(lambda g=generator(i), i=i: flavor.save_program(g, Path(d) / f"{i}.pt2"))
                 for i in range(args.models)]
        fresh = seconds(lambda g=generator(0): torch.export.save(flavor.export(g), Path(d) / "fresh.pt2"))
        uri = f"sqlite:///{d}/mlflow.db"
        client = MlflowClient(uri)
        run = client.create_run(client.create_experiment("bench", artifact_location=Path(d, "art").as_uri()))
        with use_tracking_uri(uri):
            logs = [seconds(lambda g=generator(i), i=i: flavor.log_model(g, f"m{i}", run.info.run_id))
                    for i in range(args.models)]
        load_imports, load = fresh_load(uri, f"runs:/{run.info.run_id}/m1")
    row = {"space": args.space, "model": vars(cfg), "torch": torch.__version__, "cpus": os.cpu_count(),
           "first_save_s": saves[0], "next_saves_s": statistics.median(saves[1:]), "fresh_export_save_s": fresh,
           "log_model_s": statistics.median(logs[1:]), "load_imports_s": load_imports, "load_model_s": load}
    print(f"{args.space}: first archive (export, and the process's first torch.export) {saves[0]:.2f} s; "
          f"next ones (weights swapped) {row['next_saves_s']:.3f} s each; a fresh export + save {fresh:.2f} s; "
          f"flavor.log_model into SQLite {row['log_model_s']:.2f} s each (median of {args.models - 1}); "
          f"mlflow.pytorch.load_model in a fresh process {load:.2f} s (after {load_imports:.2f} s of imports)")
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")
    return 0


LOAD = """
import sys, time
t = time.perf_counter()
import mlflow.pytorch
from tuner.tracking import use_tracking_uri
imported = time.perf_counter()
with use_tracking_uri(sys.argv[1]):
    mlflow.pytorch.load_model(sys.argv[2])
print(imported - t, time.perf_counter() - imported)
"""


def fresh_load(uri: str, model_uri: str) -> tuple[float, float]:
    """(seconds importing mlflow.pytorch, seconds in mlflow.pytorch.load_model(model_uri)) in a new process."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    out = subprocess.run([sys.executable, "-c", LOAD, uri, model_uri], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent, env=env).stdout
    imports, load = (float(v) for v in out.split()[-2:])
    return imports, load


if __name__ == "__main__":
    sys.exit(main())
