"""`python -m benchmarks.compare` (from the repository root): does the search pay for itself?

    python -m benchmarks.compare --data ../shared/data/DRIVE [--budget auto|20m] [--seeds 0,1]
                                 [--only recipe,random,tpe,pbt] [--set KEY=VALUE ...]
                                 [--json benchmarks/results/compare.json]

At one wall-clock budget on this machine, each seed:
- recipe: the hand recipe `configs/drive_cpu.yaml` trained alone (`vgan.train`); with
  `--budget auto` its wall time is the budget the searches get;
- random: `search_spaces/drive_cpu.yaml` with random sampling + ASHA on the best epoch, no start
          points but the base config;
- tpe:    the space as shipped: TPE + ASHA on the 3-epoch signal, after the start points (the base
          config = the recipe, then V-GAN's U-Net baseline);
- pbt:    the same space with population-based training every 5 epochs, a population of 2 = the two
          start points (the machine's two slots: more members would wait for 60-epoch trials that
          never end in time).
Every search's first trial is its base config, the recipe (its soft-clDice term included since 2026-12-07; the
runs before it compared the recipe without it: `--set loss.cldice_weight=0` trains that one). Each row: best validation
AUC-ROC of the generator it would register (the recipe: its best checkpoint), and that generator's test
AUC-ROC / AUC-PR / F1 / clDice (the test split read once, at the end).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from vgan.config import parse_sets
from vgan.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "configs" / "drive_cpu.yaml"
SPACE = REPO / "search_spaces" / "drive_cpu.yaml"
TEST_METRICS = ("auc_roc", "auc_pr", "f1", "cldice")  # each row's test scores, the recipe's and a search's alike
STRATEGIES = {
    "random": {"searcher": "random", "signal_window": 1, "start_from": []},  # the naive baseline
    "tpe": {},  # as shipped: TPE, the start points, the 3-epoch signal
    # the population: the start points, side by side (PBT takes no max_concurrent_trials); PBT clones
    # checkpoints, so it keeps 3 per trial (the space keeps 1)
    "pbt": {"scheduler": "pbt", "searcher": None, "num_samples": 2, "checkpoint_keep": 3,
            "max_concurrent_trials": None},
}


def run(argv: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-2000:]}")
    (cwd / f"{argv[1].replace('.', '_')}.log").write_text(proc.stdout + proc.stderr)
    return time.perf_counter() - t0


def recipe(data: Path, seed: int, work: Path, changes: dict[str, str] | None = None) -> dict:
    """The recipe trained with `train.seed` = seed and `changes` (dotted keys, YAML values) made to it."""
    from vgan.config import apply_overrides, load_config

    changes = {k: yaml.safe_load(v) for k, v in (changes or {}).items()}
    cfg = apply_overrides(load_config(RECIPE), {"train.seed": seed, **changes}, "--set").to_dict()
    (work / "recipe.yaml").write_text(yaml.safe_dump(cfg))
    wall = run(["-m", "vgan.train", "--config", str(work / "recipe.yaml"), "--data", str(data), "--out",
                str(work / "run"), "--quiet"], work)
    val = max(json.loads(ln)["val_auc_roc"] for ln in (work / "run" / "metrics.jsonl").read_text().splitlines())
    run(["-m", "vgan.evaluate", "--checkpoint", str(work / "run" / "checkpoints" / "best.pt"), "--data", str(data),
         "--split", "test", "--out", str(work / "eval")], work)
    test = json.loads((work / "eval" / "metrics.json").read_text())
    return {"wall_s": wall, "val_auc_roc": val, **{f"test_{k}": test[k] for k in TEST_METRICS}}


def search(name: str, data: Path, seed: int, budget: float, work: Path) -> dict:
    from mlflow.tracking import MlflowClient

    values = yaml.safe_load(SPACE.read_text())
    values["tune"].update({k: v for k, v in STRATEGIES[name].items()}, seed=seed)
    model = f"compare-{name}"
    values["mlflow"] = {"experiment": model, "registered_model": model}
    (work / "space.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    uri = f"sqlite:///{work}/mlflow.db"
    wall = run(["-m", "tuner.run", "--space", str(work / "space.yaml"), "--data", str(data), "--name", name,
                "--storage", str(work / "ray"), "--tracking-uri", uri, "--time-budget", f"{budget:.0f}s"], work)
    client = MlflowClient(uri)
    keys = ("val_auc_roc", *(f"test_{k}" for k in TEST_METRICS))
    try:  # the registered generator's metrics live on its logged model
        source = client.get_model_version_by_alias(model, "champion").source
        logged = {m.key: m.value for m in client.get_logged_model(source.removeprefix("models:/")).metrics}
        scores = {k: float(logged[k]) for k in keys}
    except Exception:  # noqa: BLE001 - nothing registered: no trial got as far as a checkpoint
        scores = dict.fromkeys(keys, float("nan"))
    (parent,) = client.search_runs([client.get_experiment_by_name(model).experiment_id], "tags.kind = 'study'")
    m = parent.data.metrics
    return {"wall_s": wall, **scores,
            # every trial the study began: a time budget ends the last ones as stopped (and a resume's as interrupted)
            "trials": int(sum(v for k, v in m.items() if k.startswith("trials_"))),
            "overhead_pct": 100 * m["overhead_share"], "best_trial": parent.data.tags.get("best_trial_id")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="DRIVE root")
    p.add_argument("--budget", default="auto", help="wall-clock budget of each search (auto: the recipe's time)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--only", default="recipe,random,tpe,pbt")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a change to the recipe (dotted key, YAML value), e.g. optim.lr_schedule=cosine")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    try:
        changes = parse_sets(args.set)
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    from tuner.run import parse_duration

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        budget = None if args.budget == "auto" else parse_duration(args.budget, "--budget")
        for name in args.only.split(","):
            d = Path(tempfile.mkdtemp(prefix=f"vgan-compare-{name}-{seed}-"))  # kept: logs, stores, runs
            if name == "recipe":
                row = {**recipe(args.data.resolve(), seed, d, changes), **({"set": changes} if changes else {})}
                budget = budget or row["wall_s"]
            else:
                if budget is None:
                    raise SystemExit("--budget auto needs the recipe run first (--only recipe,...)")
                row = search(name, args.data.resolve(), seed, budget, d)
            row["work"] = str(d)
            rows.append({"strategy": name, "seed": seed, "budget_s": budget, **row})
            r = rows[-1]
            print(f"seed {seed} {name:7s} {r['wall_s']:6.0f} s  val AUC-ROC {r['val_auc_roc']:.4f}  test AUC-ROC "
                  f"{r['test_auc_roc']:.4f} AUC-PR {r['test_auc_pr']:.4f} F1 {r['test_f1']:.4f} "
                  f"clDice {r['test_cldice']:.4f}"
                  + (f"  ({r['trials']} trials, best {r['best_trial']})" if "trials" in r else ""), flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
