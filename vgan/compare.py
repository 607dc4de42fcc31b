"""Two evaluations of one split compared image by image: is the candidate's gain more than the choice of test
images explains? And, given several runs of each (seeds of two recipes), more than training's own noise too?

    python -m vgan.compare eval/baseline eval/candidate
    python -m vgan.compare eval/none eval/flips --metrics auc_roc,f1 --json eval/flips-vs-none.json
    python -m vgan.compare --baseline eval/a_s0 eval/a_s1 eval/a_s2 --candidate eval/b_s0 eval/b_s1 eval/b_s2

Each argument is a folder `vgan.evaluate` wrote, or its metrics.json. All must have scored the same images on
the same pixels: the same ids, and for each image the same number of FOV pixels and the same vessel fraction of
its label (maps scored on other masks or labels would mix those in the gain). For each metric: the pooled
figures as reported (each side's mean over its runs) and their difference; the mean of the per-image gains with
its bootstrap percentile interval (10,000 draws, seeded); on how many images the candidate scored higher; and
`higher`, `lower` or `within noise` (the interval above 0, below it, across it). The pooled gain gets an interval
too, drawn the same way, where each draw's pooled figure can be taken: AUC-ROC from the pair counts vgan.evaluate
keeps (`pair_counts`), the thresholded metrics from each image's confusion counts; not AUC-PR or average precision,
whose curves do not add up image by image. The verdict is the per-image gain's; the pooled gain's is said after it
where they differ. With one evaluation a side the
images are drawn with replacement (the interval the registry's promotion gate takes of AUC-ROC): an interval
above 0 says these two models would rank so on photographs like these, and nothing of training's own noise
(another seed of one recipe moves DRIVE's AUC-ROC by up to 0.01: docs/figures.md, "One run is one draw"). With several
runs a side (`--baseline`, `--candidate`), each side's runs are drawn with replacement too: the interval then
holds training's noise as far as those runs show it (few runs understate it). Where the runs belong together in
the order given (the same generators with and without `--tta`), `--paired-runs` draws pairs of runs: what a pair
shares (its generator) cancels in its gain, where drawn apart it widened the interval (the same generators a side
in another order are refused, with the order to give). Thresholded metrics (F1,
...) are each evaluation's at its own threshold, which is said when they differ; an image without vessels in its
FOV has no AUC and is left out of that metric.

A sure sign is not a gain that matters (a blur of 0.4 px lifts V-GAN's own maps' AUC-ROC by 0.0004, on 19 of DRIVE's
20 test images). `--margin M` (or `--margin auc_roc=M,f1=M`) names the least per-image gain that matters: the
verdict is then `higher` or `lower` where the interval lies beyond +-M, `equivalent` where it lies within +-M (the
candidate neither gains nor loses that much: a cheaper model that may stand in for the baseline), and `undecided`
where it crosses +M or -M. The registry keeps its gate's two evaluations with each version it compared (tags
`test_evaluation` and `champion_test_evaluation`, files in this format): compared here, they give its interval.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vgan.cli import exit_program, json_text, nonempty, run_cli, writable_folder
from vgan.errors import ConfigError, DataError
from vgan.metrics import (
    AT_THRESHOLD,
    BOOTSTRAP_SAMPLES,
    PAIR_KEYS,
    ROW_COUNTS,
    SCORED,
    pooled_of_images,
    runs_bootstrap_interval,
    runs_pooled_interval,
)

METRICS_FILE = "metrics.json"
DEFAULT_METRICS = ("auc_roc", "auc_pr", "f1")
SAME_PIXELS = (("n_fov_pixels", "FOV pixels", 0.0), ("vessel_fraction", "vessel fraction of the label", 1e-9))


@dataclass(frozen=True)
class Evaluation:
    """A metrics.json of `vgan.evaluate`: its pooled metrics and each image's row, by id."""

    path: Path
    metrics: dict
    images: dict[str, dict]
    pairs: dict[str, np.ndarray] = field(default_factory=dict)  # by AUC-ROC, its pair counts in `images`' order

    @property
    def what(self) -> str:
        return f"{self.metrics.get('dataset', '?')} {self.metrics.get('split', '?')}"

    @property
    def name(self) -> str:
        """As the user named it: the folder vgan.evaluate wrote, or the file where it was renamed."""
        return str(self.path.parent if self.path.name == METRICS_FILE else self.path)


@dataclass(frozen=True)
class MetricGain:
    metric: str
    baseline: float  # pooled, as the evaluations reported it (the mean over the side's runs)
    candidate: float
    gain: float  # pooled candidate - baseline
    mean_gain: float  # of the per-image gains (of each side's mean over its runs)
    interval: tuple[float, float]  # bootstrap interval of mean_gain
    higher_on: int  # images where the candidate scored higher
    images: int  # images paired (an image without vessels in its FOV has no AUC)
    verdict: str  # higher, lower or within noise; with a margin: higher, lower, equivalent or undecided
    baseline_runs: list[float]  # each run's pooled figure
    candidate_runs: list[float]
    margin: float = 0.0  # the least per-image gain that matters (--margin)
    pooled_interval: tuple[float, float] | None = None  # bootstrap interval of gain; None: not for this metric
    pooled_verdict: str | None = None  # verdict() of pooled_interval, at the margin

    @property
    def said(self) -> str:
        """The verdict as the console says it: with its margin, where one was given."""
        if self.margin == 0:
            return self.verdict
        m = f"{self.margin:g}"
        return {"higher": f"higher by more than {m}", "lower": f"lower by more than {m}",
                "equivalent": f"equivalent within +-{m}", "undecided": f"undecided at +-{m}"}[self.verdict]

    @property
    def row(self) -> str:
        lo, hi = self.interval
        pooled = f"{self.gain:+.4f}" + (" [{:+.4f}, {:+.4f}]".format(*self.pooled_interval)
                                        if self.pooled_interval else " " * 19)
        differs = self.pooled_verdict not in (None, self.verdict)
        return (f"{self.metric:<18} {self.baseline:>8.4f}  {self.candidate:>9.4f}  {pooled}   "
                f"{self.mean_gain:+.4f} [{lo:+.4f}, {hi:+.4f}]   {self.higher_on:>3} of {self.images:<3}  "
                f"{self.said}" + (f"; pooled: {self.pooled_verdict}" if differs else ""))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vgan.compare", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("pair", nargs="*", type=nonempty, metavar="BASELINE CANDIDATE",
                   help="two evaluation folders (or their metrics.json): what is compared with, then the candidate")
    p.add_argument("--baseline", nargs="+", type=nonempty, metavar="EVAL",
                   help="several runs' evaluations of the baseline (seeds of one recipe), in place of the pair")
    p.add_argument("--candidate", nargs="+", type=nonempty, metavar="EVAL",
                   help="several runs' evaluations of the candidate")
    p.add_argument("--paired-runs", action="store_true",
                   help="the runs pair up in the order given (one generator with and without --tta, say): draw "
                        "pairs of runs, not each side's apart")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), metavar="M,M,...",
                   help=f"of {', '.join(SCORED)} (default: {','.join(DEFAULT_METRICS)})")
    p.add_argument("--margin", metavar="M | METRIC=M,...",
                   help="the least mean per-image gain that matters, for every metric or by metric (the others: 0): "
                        "the verdict is higher or lower where the interval lies beyond +-M, equivalent within it, "
                        "undecided across (default: 0, the interval's sign alone)")
    p.add_argument("--confidence", type=float, default=0.95, help="of the interval (default: 0.95)")
    p.add_argument("--seed", type=int, default=0, help="of the bootstrap's draws (default: 0)")
    p.add_argument("--json", type=nonempty, metavar="FILE", help="write the comparison there too")
    return p


def sides(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The baseline's evaluations and the candidate's: the pair, or --baseline and --candidate."""
    if args.pair and (args.baseline or args.candidate):
        raise ConfigError("give BASELINE CANDIDATE, or --baseline EVAL ... --candidate EVAL ..., not both")
    if args.pair:
        if len(args.pair) != 2:
            raise ConfigError(f"{len(args.pair)} evaluation(s) given: give two, BASELINE CANDIDATE (several runs a "
                              "side: --baseline EVAL ... --candidate EVAL ...)")
        if args.paired_runs:
            raise ConfigError("--paired-runs pairs --baseline's runs with --candidate's: give those, as many a side")
        return [args.pair[0]], [args.pair[1]]
    if not (args.baseline and args.candidate):
        raise ConfigError(f"--{'candidate' if args.baseline else 'baseline'}: missing (give BASELINE CANDIDATE, or "
                          "--baseline EVAL ... --candidate EVAL ...)")
    if args.paired_runs and len(args.baseline) != len(args.candidate):
        raise ConfigError(f"--paired-runs: {len(args.baseline)} baseline runs and {len(args.candidate)} candidate "
                          "runs: pairs need as many a side, in the same order")
    return args.baseline, args.candidate


def read_evaluation(arg: str) -> Evaluation:
    path = Path(arg).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such folder or file (give a folder vgan.evaluate wrote, or its {METRICS_FILE})")
    if path.is_dir():
        path = path / METRICS_FILE
        if not path.is_file():
            raise DataError(f"{path}: no such file (not a folder vgan.evaluate wrote?)")
    try:
        metrics = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a metrics file vgan.evaluate writes ({e})") from None
    rows = metrics.get("per_image") if isinstance(metrics, dict) else None
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{path}: no per_image rows, each image's metrics a paired comparison needs (not written "
                        "by vgan.evaluate?)")
    images: dict[str, dict] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise DataError(f"{path}: per_image[{i}] has no id")
        if row["id"] in images:
            raise DataError(f"{path}: per_image holds {row['id']} twice")
        images[row["id"]] = row
    return Evaluation(path, metrics, images, read_pairs(path, metrics, list(images)))


def read_pairs(path: Path, metrics: dict, ids: list[str]) -> dict[str, np.ndarray]:
    """The evaluation's pair counts of each AUC-ROC (`PAIR_KEYS`) in the order of `ids`, its per-image rows', where
    it kept them (not written before vgan.evaluate kept them, nor of a split too large); refused where they are not
    counts of its images."""
    out = {}
    for metric, key in PAIR_KEYS.items():
        if key not in metrics:
            continue
        pairs = metrics[key]
        given = pairs.get("ids") if isinstance(pairs, dict) else None
        counts = pairs.get("counts") if isinstance(pairs, dict) else None
        if not (isinstance(given, list) and sorted(map(str, given)) == sorted(ids) and len(given) == len(ids)):
            raise DataError(f"{path}: {key}.ids are not the ids of its per_image rows")
        if not (isinstance(counts, list) and len(counts) == len(ids) and all(
                isinstance(row, list) and len(row) == len(ids)
                and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in row) for row in counts)):
            raise DataError(f"{path}: {key}.counts is not a {len(ids)} x {len(ids)} table of counts of 0 or more")
        out[metric] = in_order(np.array(counts, dtype=np.int64), given, ids)
    return out


def in_order(counts: np.ndarray, given: list[str], wanted: list[str]) -> np.ndarray:
    """Pair counts of the images `given` (rows and columns in that order) in the order `wanted`."""
    at = {image_id: k for k, image_id in enumerate(given)}
    order = [at[i] for i in wanted]
    return counts[np.ix_(order, order)]


def parse_metrics(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in SCORED]
    if unknown or not names:
        raise ConfigError(f"--metrics {text!r}: {'unknown ' + ', '.join(unknown) if unknown else 'none named'}; "
                          f"give some of {', '.join(SCORED)}")
    return list(dict.fromkeys(names))


def parse_margins(text: str | None, metrics: list[str]) -> dict[str, float]:
    """--margin: one figure for every metric compared, or METRIC=FIGURE,... (a metric not named: 0)."""
    margins = dict.fromkeys(metrics, 0.0)
    if text is None:
        return margins

    def figure(s: str, of: str) -> float:
        try:
            v = float(s)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(f"--margin {text!r}: {of}{s.strip()!r} is not a figure of 0 or more")
        return v

    if "=" not in text:
        return dict.fromkeys(metrics, figure(text, ""))
    named: set[str] = set()
    for part in text.split(","):
        key, sep, s = (x.strip() for x in part.partition("="))
        if not sep or key not in metrics:
            raise ConfigError(f"--margin {text!r}: {part.strip()!r} is not METRIC=FIGURE for a metric compared "
                              f"({', '.join(metrics)}; --metrics names them)")
        if key in named:
            raise ConfigError(f"--margin {text!r}: {key} given twice")
        named.add(key)
        margins[key] = figure(s, f"{key}: ")
    return margins


def verdict(interval: tuple[float, float], margin: float) -> str:
    lo, hi = interval
    if lo > margin:
        return "higher"
    if hi < -margin:
        return "lower"
    if margin == 0:
        return "within noise"
    return "equivalent" if -margin <= lo and hi <= margin else "undecided"


def some(ids: list[str]) -> str:
    return ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")


def check_paired(base: Evaluation, others: list[Evaluation]) -> list[str]:
    """The image ids all scored, in the first baseline's order; refused where one did not score the same pixels."""
    seen = {base.path.resolve()}
    for ev in others:
        if ev.path.resolve() in seen:
            raise ConfigError(f"{ev.path}: given twice: each evaluation is one model's, once")
        seen.add(ev.path.resolve())
    for cand in others:
        only_base = [i for i in base.images if i not in cand.images]
        only_cand = [i for i in cand.images if i not in base.images]
        if only_base or only_cand:
            parts = ([f"{some(only_base)} only in the baseline's"] if only_base else []) + (
                [f"{some(only_cand)} only in this one"] if only_cand else [])
            raise DataError(f"{cand.path}: not the images {base.path} scored ({'; '.join(parts)}): compare "
                            f"evaluations of one split ({base.what} against {cand.what})")
        for image_id, row in base.images.items():
            other = cand.images[image_id]
            for key, what, tolerance in SAME_PIXELS:
                a, b = row.get(key), other.get(key)
                if isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) > tolerance:
                    raise DataError(f"{cand.path}: {image_id} was scored with {what} {b:g}, in {base.path} with "
                                    f"{a:g}: not the same masks or labels (an FOV estimated in one, the dataset's "
                                    "masks in the other?), so the gains would mix the model's with the pixels'")
    return list(base.images)


def generators(ev: Evaluation) -> str | None:
    """What made an evaluation's maps, as vgan.evaluate records it: a checkpoint's path, a model's URI, a maps
    folder, or an ensemble's members' checkpoints; None where it says nothing."""
    members = ev.metrics.get("members")
    if isinstance(members, list) and members and all(isinstance(m, dict) and "source" in m for m in members):
        return " + ".join(str(m["source"]) for m in members)
    source = ev.metrics.get("source")
    return str(source) if source is not None else None


def check_run_pairs(base: list[Evaluation], cand: list[Evaluation]) -> None:
    """--paired-runs pairs runs in the order given. Where both sides are the same generators (scored without and
    with --tta, say) in another order, a pair is two generators: its gain holds their difference, which pairing
    was to cancel, and the interval came out wrong without a word. Refused, with the order to give."""
    made = [generators(ev) for ev in base], [generators(ev) for ev in cand]
    if None in made[0] or None in made[1] or made[0] == made[1] or sorted(made[0]) != sorted(made[1]):
        return
    k = next(i for i, (a, b) in enumerate(zip(*made, strict=True)) if a != b)
    unused = list(cand)
    ordered = [unused.pop(next(j for j, ev in enumerate(unused) if generators(ev) == a)) for a in made[0]]
    raise ConfigError(f"--paired-runs: pair {k + 1} is {base[k].name} of {made[0][k]} against {cand[k].name} of "
                      f"{made[1][k]}: the candidate's runs are the baseline's generators in another order; give them "
                      f"in the baseline's: --candidate {' '.join(ev.name for ev in ordered)}")


def value(ev: Evaluation, image_id: str, metric: str) -> float | None:
    """An image's metric; None where it has none (an AUC of an image without vessels in its FOV)."""
    v = ev.images[image_id].get(metric, "missing")
    if v is None:
        return None
    if v == "missing" and metric not in ev.metrics:  # clDice, in a file written before it was scored
        raise DataError(f"{ev.path}: no {metric} (evaluated before vgan.evaluate scored it): evaluate it again")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise DataError(f"{ev.path}: per_image {image_id} has no {metric} ({v!r})")
    return float(v)


def pooled(ev: Evaluation, metric: str) -> float:
    v = ev.metrics.get(metric)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DataError(f"{ev.path}: no pooled {metric}")
    return float(v)


PooledOf = Callable[[np.ndarray], np.ndarray]  # image weights (draws, images) -> the pooled metric of each draw


def pooled_of(ev: Evaluation, ids: list[str], metric: str) -> PooledOf | None:
    """The evaluation's pooled metric as a function of how often each image (in `ids`' order) is drawn, where its
    file holds what that takes: AUC-ROC from its pair counts, a thresholded metric from each image's confusion
    counts (read from its sensitivity, specificity, FOV pixels and vessel fraction), clDice from each image's
    centreline counts (`vgan.metrics.ROW_COUNTS`). None for AUC-PR and average
    precision (their curves do not add up image by image) and for AUC-ROC without pair counts. Checked: taken of
    every image once, it is the pooled figure the file reports."""
    needed = ROW_COUNTS.get(metric, ("n_fov_pixels", "vessel_fraction"))
    if any(not isinstance(ev.images[i].get(k), (int, float)) for i in ids for k in needed):
        return None  # a file of other making: its per-image comparison stands alone
    rows = [{k: value(ev, i, k) for k in needed} for i in ids]
    counts = in_order(ev.pairs[metric], list(ev.images), ids) if metric in ev.pairs else None
    of = pooled_of_images(metric, rows, counts)
    if of is None:
        return None
    whole = float(of(np.ones((1, len(ids))))[0])
    if not abs(whole - pooled(ev, metric)) <= 1e-9:
        source = PAIR_KEYS.get(metric, "per_image rows")
        raise DataError(f"{ev.path}: its {source} give a pooled {metric} of {whole:.6f}, its file says "
                        f"{pooled(ev, metric):.6f}: not the counts of the maps it scored")
    return of


def compare_metric(base: list[Evaluation], cand: list[Evaluation], ids: list[str], metric: str, confidence: float,
                   seed: int, paired: bool = False, margin: float = 0.0) -> MetricGain:
    rows = [[[value(ev, i, metric) for i in ids] for ev in side] for side in (base, cand)]
    kept = [j for j in range(len(ids)) if all(run[j] is not None for side in rows for run in side)]
    if len(kept) < 2:
        raise DataError(f"{cand[0].path}: {len(kept)} image(s) with a {metric} in every evaluation: a comparison "
                        "needs 2 or more")
    a, b = (np.array([[run[j] for j in kept] for run in side]) for side in rows)
    gains = b.mean(axis=0) - a.mean(axis=0)
    lo, hi = runs_bootstrap_interval(a, b, confidence, seed, paired=paired)  # one a side: the registry gate's
    base_runs, cand_runs = [pooled(ev, metric) for ev in base], [pooled(ev, metric) for ev in cand]
    mean_base, mean_cand = float(np.mean(base_runs)), float(np.mean(cand_runs))
    pooled_interval = None
    of_base, of_cand = [pooled_of(ev, ids, metric) for ev in base], [pooled_of(ev, ids, metric) for ev in cand]
    if None not in (*of_base, *of_cand):
        pooled_interval = runs_pooled_interval(of_base, of_cand, len(ids), confidence, seed, paired=paired)
    return MetricGain(metric, mean_base, mean_cand, mean_cand - mean_base, float(gains.mean()), (lo, hi),
                      int((gains > 0).sum()), len(kept), verdict((lo, hi), margin), base_runs, cand_runs, margin,
                      pooled_interval, None if pooled_interval is None else verdict(pooled_interval, margin))


def thresholds_note(base: list[Evaluation], cand: list[Evaluation], metrics: list[str]) -> str | None:
    shown = [m for m in metrics if m in AT_THRESHOLD]
    if not shown or len({ev.metrics.get("threshold") for ev in (*base, *cand)}) == 1:
        return None

    def of(side: list[Evaluation]) -> str:
        return ", ".join(sorted({f"{ev.metrics.get('threshold')} ({ev.metrics.get('threshold_source', '?')})"
                                 for ev in side}))
    return f"note: {', '.join(shown)} at each evaluation's own threshold: baseline {of(base)}, candidate {of(cand)}"


def observer_note(base: list[Evaluation], cand: list[Evaluation], metrics: list[str]) -> str | None:
    """Where a side is another observer's labels (vgan.evaluate --observer), its AUCs are of one operating point:
    a model's ranking gains on them by construction, which the figures do not say."""
    ranked = [m for m in metrics if m not in AT_THRESHOLD]
    labels = [ev.name for ev in (*base, *cand) if ev.metrics.get("observer")]
    if not ranked or not labels:
        return None
    return (f"note: {', '.join(labels)} scored another observer's labels: its {', '.join(ranked)} "
            f"{'is' if len(ranked) == 1 else 'are'} of one operating point, not of a ranking (a probability map's "
            f"are higher by construction): compare {', '.join(AT_THRESHOLD)}")


def named(side: list[Evaluation]) -> str:
    if len(side) == 1:
        return side[0].name
    return f"{len(side)} runs ({', '.join(ev.name for ev in side)})"


def _main(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    metrics = parse_metrics(args.metrics)
    margins = parse_margins(args.margin, metrics)
    if not 0 < args.confidence < 1:
        raise ConfigError(f"--confidence {args.confidence}: must lie strictly between 0 and 1")
    base_args, cand_args = sides(args)
    base, cand = [read_evaluation(a) for a in base_args], [read_evaluation(a) for a in cand_args]
    ids = check_paired(base[0], [*base[1:], *cand])
    if args.paired_runs:
        check_run_pairs(base, cand)
    gains = [compare_metric(base, cand, ids, m, args.confidence, args.seed, args.paired_runs, margins[m])
             for m in metrics]
    out = Path(args.json).expanduser() if args.json else None
    if out is not None:
        writable_folder(out.parent, "--json")
    print(f"candidate {named(cand)} against baseline {named(base)}: {base[0].what}, {len(ids)} images, the same "
          "FOV pixels and labels")
    interval = f"[{args.confidence:.0%} interval]"
    print(f"{'metric':<18} {'baseline':>8}  {'candidate':>9}  {'gain ' + interval:<26}   per-image gain {interval}"
          "   higher on")
    for g in gains:
        print(g.row)
    for note in (thresholds_note(base, cand, metrics), observer_note(base, cand, metrics)):
        if note:
            print(note)
    draws = f"{BOOTSTRAP_SAMPLES:,} times, seed {args.seed}"
    if len(base) == len(cand) == 1:
        print(f"the interval draws the {len(ids)} images with replacement ({draws}): it says nothing of training's "
              "own noise; give each side several seeds' runs for that (--baseline EVAL ... --candidate EVAL ...)")
    elif args.paired_runs:
        print(f"the interval draws the {len(base)} pairs of runs and the {len(ids)} images with replacement ({draws}): "
              "the gain's spread over the runs as far as these show it (few runs understate it)")
    else:
        print(f"the interval draws each side's runs ({len(base)} and {len(cand)}) and the {len(ids)} images with "
              f"replacement ({draws}): training's noise as far as these runs show it (few runs understate it)")
    without = [g.metric for g in gains if g.pooled_interval is None]
    if len(without) < len(gains):
        print("the gain's interval is drawn the same way, each draw's figures pooled over the pixels of the images "
              "drawn, as the gain is; the verdict is the per-image gain's, then the pooled gain's where they differ")
    if without:
        why = {metric: f"no {key} in {some([ev.name for ev in (*base, *cand) if metric not in ev.pairs])}: written "
                       "before vgan.evaluate kept them, or of a split too large" for metric, key in PAIR_KEYS.items()}
        why["auc_pr"] = why["average_precision"] = "its curve does not add up image by image"
        print("no interval of the pooled gain for " + ", ".join(
            f"{m} ({why.get(m, 'the per-image rows lack the counts it takes')})" for m in without))
    if any(margins.values()):
        print("with a margin M: higher or lower, the interval beyond +-M; equivalent, within +-M; undecided, across "
              "+M or -M (M is of the mean per-image gain, and of the pooled gain where its verdict is shown)")
    if out is not None:
        record = {"baseline": [str(ev.path) for ev in base], "candidate": [str(ev.path) for ev in cand],
                  "dataset": base[0].metrics.get("dataset"), "split": base[0].metrics.get("split"),
                  "images": len(ids), "paired_runs": args.paired_runs, "confidence": args.confidence, "seed": args.seed,
                  "samples": BOOTSTRAP_SAMPLES,
                  "thresholds": {"baseline": [ev.metrics.get("threshold") for ev in base],
                                 "candidate": [ev.metrics.get("threshold") for ev in cand]},
                  "metrics": {g.metric: {k: v for k, v in asdict(g).items() if k != "metric"} for g in gains}}
        out.write_text(json_text(record))
        print(f"wrote {out}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, "vgan.compare")


if __name__ == "__main__":
    exit_program(main())
