"""Search-space files: a base trainer config plus what to search and how.

    data/model/loss/optim/train:  the base trainer config (the same keys as vgan configs)
    search:     dotted trainer key -> distribution
                  {type: loguniform|uniform, low, high}
                  {type: int, low, high, step: 1, log: false}
                  {type: categorical, choices: [...]}
                  any of them with `when: {other.key: value or [values]}` (conditional)
    tune:       num_samples, max_concurrent_trials, seed, ASHA settings, checkpoints, retries
                (a trial's score is its best validation `train.select_metric`: tuner.outcome)
    resources:  cpu and gpu per trial (fractional GPUs allowed)
    mlflow:     experiment, registered_model, promote_margin, promote_confidence, outage_window_s,
                ensemble_top (the registry's candidate: the mean map of up to that many best trials)

Everything is checked here, before Ray starts: `SpaceError` names the file and the key.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from tuner.outcome import score_key
from vgan.config import (
    CONFIG_SECTIONS,
    SEARCH_SPACE_SECTIONS,
    Config,
    DataConfig,
    apply_overrides,
    config_from_dict,
    config_keys,
    from_dict,
    read_yaml,
)
from vgan.errors import ConfigError

DISTRIBUTIONS = ("loguniform", "uniform", "int", "categorical")
_PARAM_FIELDS = {
    "loguniform": {"low", "high"},
    "uniform": {"low", "high"},
    "int": {"low", "high", "step", "log"},
    "categorical": {"choices"},
}


class SpaceError(ConfigError):
    """A search-space file is wrong (exit status 2)."""


# Keys a study cannot vary between trials: the scheduler's horizon, what "best" means, and what it is measured on.
_ONE_DATASET = ("a study is of one dataset: its trials are ranked on its validation images, its champion scored on "
                "its test images")
_ONE_SPLIT = ("trials scored on other validation images are not comparable, and a search would pick the split that "
              "flatters: each trial validates on the base config's split")
NOT_SEARCHABLE = {"train.epochs": "the scheduler's max_t: every trial runs to the same horizon",
                  "train.select_metric": "trials' scores would not be comparable",
                  "data.dataset": _ONE_DATASET, "data.root": _ONE_DATASET, "data.synthetic": _ONE_DATASET,
                  "data.val_count": _ONE_SPLIT, "data.split_seed": _ONE_SPLIT, "data.folds": _ONE_SPLIT,
                  "data.fold": _ONE_SPLIT, "data.person": _ONE_SPLIT}  # a key, or a section of keys


SEARCHERS = ("tpe", "random")
PBT_KEEP = 3  # checkpoints kept per trial under PBT (Ray warns that 2 or fewer break its exploits)
SCHEDULERS = ("asha", "pbt", "none")
# What PBT may change in a running trial (explore): the rest shapes the networks or the GAN and is
# copied from the trial it clones (exploit), whose checkpoint must fit.
MUTABLE = ("optim.lr_g", "optim.lr_d", "optim.weight_decay", "loss.bce_weight", "loss.adv_weight",
           "loss.cldice_weight", "loss.gp_weight", "loss.n_critic", "data.augment_strength", "data.grey_prob")


@dataclass
class TuneSettings:
    num_samples: int = 10
    # trials at once (default 2); not under PBT, whose whole population runs side by side as resources allow
    max_concurrent_trials: int | None = None
    seed: int = 0
    searcher: str | None = None  # tpe | random (default tpe; pbt samples its population at random)
    scheduler: str = "asha"  # asha | pbt | none
    start_from: list[dict[str, Any]] = field(default_factory=list)  # points tried right after the base config
    signal_window: int = 1  # the score: best so far of the mean of the last k epochs (1: the best epoch)
    time_budget_s: float | None = None  # end the study gracefully after this long (None: no budget)
    grace_period: int = 1  # ASHA: epochs before a trial can be stopped
    reduction_factor: int = 3  # ASHA: keep the best 1/reduction_factor at each rung
    pbt_interval: int = 2  # PBT: epochs between exploit/explore decisions
    checkpoint_every: int = 1  # epochs between trial checkpoints
    checkpoint_keep: int | None = None  # checkpoints kept per trial (default 2; 3 under PBT, which clones them)
    max_failures: int = 1  # retries of a trial that raised, from its last checkpoint


@dataclass
class Resources:
    cpu: float = 1.0
    gpu: float = 0.0  # fractional: 0.25 packs four trials on one GPU


@dataclass
class MlflowSettings:
    experiment: str = "vgan-tune"
    # default: vgan-generator for DRIVE, vgan-generator-<dataset> for STARE and synthetic, and for a folder
    # dataset vgan-generator-<its root folder's name> (a champion is only ever compared with models of its own
    # test images: the gate refuses the rest anyway, and two clinics' datasets in one store are two lineages)
    registered_model: str | None = None
    promote_margin: float = 0.0  # a challenger must beat the champion's test score (train.select_metric) by this
    promote_confidence: float = 0.95  # and the bootstrap interval of its per-image gain must lie above 0
    outage_window_s: float = 600.0  # how long a tracking-server outage is waited out before `tuner.replay`
    # The registry's candidate: the mean map of the best k <= ensemble_top trials, k chosen on validation
    # (tuner.ensemble); 1: the best trial's generator alone
    ensemble_top: int = 1


@dataclass
class Param:
    key: str
    type: str
    low: float | None = None
    high: float | None = None
    step: int = 1
    log: bool = False
    choices: list[Any] = field(default_factory=list)
    when: dict[str, list[Any]] = field(default_factory=dict)

    def largest(self) -> Any:
        """The largest value the distribution draws: a categorical's largest choice (None, where every choice is
        None), an int's last step at or below `high`, a float's `high`."""
        if self.type == "categorical":
            return max((c for c in self.choices if c is not None), default=None)
        if self.type == "int":
            return self.low + (self.high - self.low) // self.step * self.step
        return self.high


@dataclass
class SearchSpace:
    source: str
    base: dict[str, Any]  # trainer config values (plain, picklable)
    params: list[Param]
    tune: TuneSettings
    resources: Resources
    mlflow: MlflowSettings

    def trainer_config(self, sampled: dict[str, Any] | None = None) -> Config:
        cfg = config_from_dict(self.base, self.source)
        return apply_overrides(cfg, sampled, f"{self.source} (sampled)") if sampled else cfg

    @property
    def epochs(self) -> int:
        return int(self.base["train"]["epochs"])

    @property
    def metric(self) -> str:
        """The validation metric trials are selected on (`train.select_metric`, e.g. auc_roc)."""
        return self.base["train"]["select_metric"]

    @property
    def score(self) -> str:
        """The trial's score as reported to Ray, told to Optuna and logged to MLflow."""
        return score_key(self.metric, self.tune.signal_window)

    @property
    def searcher(self) -> str | None:
        """The Optuna sampler, or None where Ray samples (PBT refuses search algorithms)."""
        return None if self.tune.scheduler == "pbt" else (self.tune.searcher or "tpe")

    def points(self) -> list[dict[str, Any]]:
        """The configs evaluated first: the base config's values of the searched keys (what is known
        to work is always tried), then `tune.start_from`."""
        out = []
        for values in [{}] + self.tune.start_from:
            point: dict[str, Any] = {}
            for p in self.params:
                if condition_met(p, point, self.base):
                    point[p.key] = values.get(p.key, _lookup(self.base, p.key))
            out.append(point)
        return out


def _err(source: str, key: str, problem: str) -> SpaceError:
    return SpaceError(f"{source}: '{key}' {problem}")


def _number(source: str, key: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _err(source, key, f"must be a finite number, got {value!r}")
    return value


def _parse_param(source: str, key: str, spec: Any, known: dict[str, Any], base: Config,
                 earlier: list[str], searched: list[str]) -> Param:
    where = f"search.{key}"
    if key not in known:
        raise _err(source, where, "is not a trainer config key (see vgan/config.py)")
    barred = next((k for k in NOT_SEARCHABLE if key == k or key.startswith(k + ".")), None)
    if barred is not None:
        raise _err(source, where, f"cannot be searched: {NOT_SEARCHABLE[barred]}")
    if not isinstance(spec, dict):
        raise _err(source, where, f"must be a mapping with a 'type', got {spec!r}")
    kind = spec.get("type")
    if kind not in DISTRIBUTIONS:
        raise _err(source, f"{where}.type", f"unknown distribution {kind!r} (choose from {', '.join(DISTRIBUTIONS)})")
    extra = set(spec) - _PARAM_FIELDS[kind] - {"type", "when"}
    if extra:
        raise _err(source, f"{where}.{sorted(extra)[0]}", f"is not a field of a {kind} distribution")
    p = Param(key=key, type=kind)
    if kind in ("uniform", "loguniform") and known[key] in (int, int | None):
        raise _err(source, f"{where}.type", f"{kind} draws floats, but '{key}' is an integer key: use type int")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _err(source, f"{where}.choices", "must be a non-empty list")
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise _err(source, f"{where}.choices", f"must hold plain values (numbers, strings), got {c!r}")
        p.choices = choices
        candidates = choices
    else:
        for bound in ("low", "high"):
            if bound not in spec:
                raise _err(source, f"{where}.{bound}", "is missing")
        p.low, p.high = _number(source, f"{where}.low", spec["low"]), _number(source, f"{where}.high", spec["high"])
        if p.low >= p.high:
            raise _err(source, where, f"needs low < high, got low={p.low} high={p.high}")
        p.log = kind == "loguniform" or bool(spec.get("log", False))
        if p.log and p.low <= 0:
            raise _err(source, f"{where}.low", f"must be > 0 on a log scale, got {p.low}")
        if kind == "int":
            for bound, v in (("low", p.low), ("high", p.high)):
                if v != int(v):
                    raise _err(source, f"{where}.{bound}", f"must be an integer, got {v}")
            p.low, p.high = int(p.low), int(p.high)
            step = spec.get("step", 1)
            if isinstance(step, bool) or not isinstance(step, int) or step < 1:
                raise _err(source, f"{where}.step", f"must be a positive integer, got {step!r}")
            if p.log and step != 1:
                raise _err(source, f"{where}.step", "must be 1 on a log scale")
            p.step = step
        candidates = [p.low, p.high]
    for c in candidates:  # each value must make a valid trainer config on its own
        try:
            apply_overrides(base, {key: c}, source)
        except ConfigError as e:
            raise _err(source, where, f"value {c!r} is not valid: {str(e).split(': ', 1)[-1]}") from None
    when = spec.get("when", {})
    if not isinstance(when, dict):
        raise _err(source, f"{where}.when", "must be a mapping of trainer keys to values")
    for other, values in when.items():
        if other not in known:
            raise _err(source, f"{where}.when.{other}", "is not a trainer config key")
        if other == key:
            raise _err(source, f"{where}.when.{other}", "cannot refer to the parameter itself")
        if other in searched and other not in earlier:
            raise _err(source, f"{where}.when.{other}", f"refers to a searched key listed later: put '{other}' first")
        p.when[other] = values if isinstance(values, list) else [values]
    return p


def default_model_name(data: DataConfig) -> str:
    """The registered model a study's champion stands in by default: one per dataset, and for one's own
    photographs one per dataset root (`vgan-generator-chase_db1` for .../CHASE_DB1)."""
    from vgan.data import dataset_name

    return "vgan-generator" if data.dataset == "drive" else f"vgan-generator-{dataset_name(data)}"


def load_space(path: str | Path, data_root: str | None = None, sets: dict[str, Any] | None = None,
               given: Mapping[str, str] | None = None) -> SearchSpace:
    """A search-space file read and checked; `data_root` (--data) and `sets` (--set: dotted trainer keys, as
    vgan.config.parse_sets reads them) change its base config, as an edit of the file would; `given`: each set
    key's item as typed (vgan.config.set_flags), named where its value is refused."""
    path = Path(path)
    source = str(path)
    values = read_yaml(path, "search-space file", SpaceError)
    if not isinstance(values, dict):
        raise SpaceError(f"{source}: the top level must be a mapping of sections")
    for section in values:
        if section not in CONFIG_SECTIONS + SEARCH_SPACE_SECTIONS:
            raise SpaceError(f"{source}: unknown section '{section}' (known: "
                             f"{', '.join(CONFIG_SECTIONS + SEARCH_SPACE_SECTIONS)})")
    trainer_values = {k: v for k, v in values.items() if k in CONFIG_SECTIONS}
    if data_root is not None:
        trainer_values.setdefault("data", {})
        if not isinstance(trainer_values["data"], dict):
            raise SpaceError(f"{source}: 'data' must be a mapping")
        trainer_values["data"] = {**trainer_values["data"], "root": str(Path(data_root).expanduser().resolve())}
    try:
        base = config_from_dict(trainer_values, source)
    except ConfigError as e:
        raise SpaceError(str(e)) from None
    sets = sets or {}
    for key in sets:
        top = key.split(".")[0]
        if key == "data.root":
            raise ConfigError("--set data.root=...: give the dataset root with --data")
        if top in SEARCH_SPACE_SECTIONS:
            raise ConfigError(f"--set {key}=...: --set changes the trials' config ({', '.join(CONFIG_SECTIONS)}), "
                              f"not the space's {top} section: edit {source}" +
                              (" (or give --num-samples, --time-budget)" if top == "tune" else ""))
    if sets:
        base = apply_overrides(base, sets, "--set", given)
    if data_root is not None and base.data.dataset == "synthetic":  # it would train on generated images anyway
        from vgan.data import held_layout

        layout = held_layout(data_root)
        raise ConfigError(f"--data {data_root}: {source} trains on the synthetic dataset (data.dataset), which is "
                          "generated and takes no data root: set data.dataset to "
                          + (f"{layout[0]} in it ({layout[1]})" if layout else "drive, stare or folder in it"))
    if base.data.root is not None:
        base.data.root = str((path.parent / base.data.root).resolve())  # Tune changes the cwd of trials

    def section(name: str, cls: type) -> Any:
        raw = values.get(name) or {}
        if not isinstance(raw, dict):
            raise SpaceError(f"{source}: '{name}' must be a mapping")
        try:
            return from_dict(cls, raw, source, prefix=f"{name}.")
        except ConfigError as e:
            raise SpaceError(str(e)) from None

    for gone in ("metric", "mode"):
        if isinstance(values.get("tune"), dict) and gone in values["tune"]:
            raise SpaceError(f"{source}: 'tune.{gone}' is gone: a trial's score is its best validation "
                             f"'train.select_metric' (higher is better); set that instead")
    tune, resources, mlflow = section("tune", TuneSettings), section("resources", Resources), \
        section("mlflow", MlflowSettings)
    # the defaults that depend on other settings, filled before the checks see them
    if tune.checkpoint_keep is None:
        tune.checkpoint_keep = PBT_KEEP if tune.scheduler == "pbt" else 2
    if tune.max_concurrent_trials is None and tune.scheduler != "pbt":
        tune.max_concurrent_trials = 2
    if mlflow.registered_model is None:
        mlflow.registered_model = default_model_name(base.data)
    _check_settings(source, tune, resources, mlflow, base.train.epochs)

    search = values.get("search") or {}
    if not isinstance(search, dict):
        raise SpaceError(f"{source}: 'search' must be a mapping of trainer keys to distributions")
    for key in sets:
        if key in search:
            raise ConfigError(f"--set {key}=...: {source} searches it (search.{key}): each trial's draw would "
                              "replace the value set; edit the space to fix it or search it otherwise")
    if not search:  # every trial would train the same config
        raise SpaceError(f"{source}: 'search' names no trainer key to search (e.g. optim.lr_g: {{type: loguniform, "
                         "low: 1.0e-4, high: 1.0e-2}); one config alone is python -m vgan.train")
    known = config_keys()
    params: list[Param] = []
    for key, spec in search.items():
        params.append(_parse_param(source, str(key), spec, known, base, [p.key for p in params],
                                   [str(k) for k in search]))
    space = SearchSpace(source, base.to_dict(), params, tune, resources, mlflow)
    _check_points(space)
    return space


def _check_settings(source: str, t: TuneSettings, r: Resources, m: MlflowSettings, epochs: int) -> None:
    checks = [
        (t.num_samples >= 1, "tune.num_samples", "must be at least 1"),
        (t.max_concurrent_trials is None or t.max_concurrent_trials >= 1, "tune.max_concurrent_trials",
         "must be at least 1"),
        (t.grace_period >= 1, "tune.grace_period", "must be at least 1"),
        (t.grace_period <= epochs, "tune.grace_period",
         f"is {t.grace_period} epochs, more than the trials' train.epochs ({epochs}): ASHA could never stop one"),
        (t.reduction_factor >= 2, "tune.reduction_factor", "must be at least 2"),
        (t.checkpoint_every >= 1, "tune.checkpoint_every", "must be at least 1"),
        (t.searcher is None or t.searcher in SEARCHERS, "tune.searcher", f"must be one of {', '.join(SEARCHERS)}"),
        (t.scheduler in SCHEDULERS, "tune.scheduler", f"must be one of {', '.join(SCHEDULERS)}"),
        (not (t.scheduler == "pbt" and t.searcher == "tpe"), "tune.searcher",
         "cannot be tpe with scheduler pbt: Ray's PBT refuses search algorithms (it samples its population at random)"),
        (t.signal_window >= 1, "tune.signal_window", "must be at least 1"),
        (t.time_budget_s is None or 0 < t.time_budget_s < math.inf, "tune.time_budget_s",
         "must be a finite number of seconds > 0 (leave it out for no budget)"),
        (t.pbt_interval >= 1, "tune.pbt_interval", "must be at least 1"),
        # PBT saves a top trial and clones it every pbt_interval epochs, and a function trainable's save is its
        # newest checkpoint: Ray's PBT guide advises perturbing at a multiple of the checkpoint interval
        (t.scheduler != "pbt" or t.checkpoint_every < 1 or t.pbt_interval % t.checkpoint_every == 0,
         "tune.pbt_interval", f"is {t.pbt_interval} epochs, not a multiple of tune.checkpoint_every "
         f"({t.checkpoint_every}): with scheduler pbt a trial clones another's newest checkpoint at each "
         f"perturbation, which would be epochs behind it (and those epochs trained again)"),
        (t.checkpoint_keep >= 1, "tune.checkpoint_keep", "must be at least 1"),
        (t.scheduler != "pbt" or t.checkpoint_keep >= PBT_KEEP, "tune.checkpoint_keep",
         f"must be at least {PBT_KEEP} with scheduler pbt: a trial's checkpoint is cloned by another while it "
         "writes newer ones, and one deleted too early fails the clone"),
        (t.max_failures >= 0, "tune.max_failures", "must be >= 0"),
        (0 < r.cpu < math.inf, "resources.cpu", "must be a finite number > 0"),
        (0 <= r.gpu < math.inf and (r.gpu <= 1 or r.gpu == int(r.gpu)), "resources.gpu",
         "must be >= 0, a fraction up to 1 or a whole number of GPUs"),
        (bool(m.experiment), "mlflow.experiment", "must not be empty"),
        (bool(m.registered_model and m.registered_model.strip()), "mlflow.registered_model", "must not be empty"),
        (not any(c in (m.registered_model or "") for c in "/:"), "mlflow.registered_model",
         "must hold neither '/' nor ':' (MLflow's registry refuses such a name, and the study would fail at its end)"),
        (m.promote_margin >= 0, "mlflow.promote_margin", "must be >= 0"),
        (0 < m.promote_confidence < 1, "mlflow.promote_confidence", "must lie strictly between 0 and 1"),
        (m.outage_window_s >= 0, "mlflow.outage_window_s", "must be >= 0"),
        (m.ensemble_top >= 1, "mlflow.ensemble_top", "must be at least 1 (1: the best trial alone)"),
        # Tune caps the trials at once through the search algorithm, and PBT takes none: it warned, unseen, that
        # it ignored the value (ray 2.60). Holding members back would not do either: PBT compares and clones
        # only members training alongside, so the population would split into generations that never meet.
        (t.scheduler != "pbt" or t.max_concurrent_trials is None, "tune.max_concurrent_trials",
         "does not apply with scheduler pbt: its whole population (tune.num_samples) trains side by side, as many "
         "members at once as resources.cpu/gpu per trial let the machines hold, the rest taking turns at the "
         "perturbation points; leave it out"),
    ]
    for ok, key, problem in checks:
        if not ok:
            raise _err(source, key, problem)


def _check_points(space: SearchSpace) -> None:
    """Each start point names searched keys with values inside their distributions, and so does
    the base config (the study's first trial): Optuna would silently sample a value it cannot take."""
    source, known = space.source, {p.key: p for p in space.params}
    if not isinstance(space.tune.start_from, list) or not all(isinstance(v, dict) for v in space.tune.start_from):
        raise _err(source, "tune.start_from", "must be a list of mappings of searched keys to values")
    for i, values in enumerate(space.tune.start_from):
        for key in values:
            if key not in known:
                raise _err(source, f"tune.start_from[{i}].{key}", "is not a searched key (see 'search')")
    for i, point in enumerate(space.points()):
        where = "the base config (the study's first trial)" if i == 0 else f"tune.start_from[{i - 1}]"
        for key, value in point.items():
            if not _inside(known[key], value):
                raise _err(source, f"search.{key}", f"does not hold {where}'s value {value!r}: widen it, or change "
                                                    f"the value")


def _inside(p: Param, value: Any) -> bool:
    if p.type == "categorical":
        return value in p.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if p.type == "int" and (value != int(value) or (value - p.low) % p.step):
        return False
    return p.low <= value <= p.high


def clip_to_space(config: dict[str, Any], params: list[Param]) -> dict[str, Any]:
    """PBT's explore step (x0.8 / x1.2) can leave a range or make an integer 0: bring each value back
    inside its distribution (module level: Ray pickles it)."""
    for p in params:
        if p.key in config and p.type != "categorical":
            value = min(max(config[p.key], p.low), p.high)
            config[p.key] = int(round(value)) if p.type == "int" else float(value)
    return config


def condition_met(p: Param, chosen: dict[str, Any], base: dict[str, Any]) -> bool:
    for other, allowed in p.when.items():
        value = chosen[other] if other in chosen else _lookup(base, other)
        if value not in allowed:
            return False
    return True


def _lookup(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        node = node[part]
    return node


# Where the data is, which device, how fast: set per machine, not what a trial learns. A resumed study
# may change them (another mount of the same images, another GPU); not the rest of what its trials train.
# What a resume may change of how a study searches (tuner.resume applies them to the study Ray restores; Ray
# restores the rest from its own state whatever the space says now). A PBT population is its search: fixed.
RESUMABLE_TUNE = ("num_samples", "max_concurrent_trials", "time_budget_s")
MACHINE_KEYS = ("data.root", "train.device", "train.threads", "train.compile", "train.eval_batch_size",
                "train.preview_every")


def trial_recipe(space: SearchSpace) -> dict[str, Any]:
    """What a study's trials train, as dotted keys: the base config (less MACHINE_KEYS), each searched key's
    distribution and how the study searches (tune.*, less RESUMABLE_TUNE). Kept with the study; a resume must
    not mix trials of two recipes, nor say it searches otherwise than Ray, restoring its state, goes on to."""
    out = {key: _lookup(space.base, key) for key in config_keys() if key not in MACHINE_KEYS}
    plain = asdict(Param("", ""))  # fields at their defaults say nothing: left out, the changes read short
    out.update({f"search.{p.key}": {k: v for k, v in asdict(p).items() if k != "key" and v != plain[k]}
                for p in space.params})
    may_change = [k for k in RESUMABLE_TUNE if not (k == "num_samples" and space.tune.scheduler == "pbt")]
    out.update({f"tune.{k}": v for k, v in asdict(space.tune).items() if k not in may_change})
    out["tune.searcher"] = space.searcher  # as it searches: `tpe` said or left to the default alike
    return out


def check_same_recipe(space: SearchSpace, kept: str, study: str, option: str, remedy: str) -> None:
    """`space` must still say what study `study` began with (`kept`: its recipe.json; '' for a study begun
    before recipes were kept). A resume with a changed base value or searched range would mix trials of
    two recipes in one ranking; a replay would log models with configs they were not trained with. What
    only says how long or how wide (RESUMABLE_TUNE) or where (MACHINE_KEYS) may change."""
    changes = recipe_changes(json.loads(kept), trial_recipe(space)) if kept else []
    if changes:
        more = f"; and {len(changes) - 4} more" if len(changes) > 4 else ""
        raise ConfigError(f"{option}: {space.source} is not what study '{study}' began with "
                          f"({'; '.join(changes[:4])}{more}): {remedy}")


def recipe_changes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """`key: old -> new` for each key whose value differs. A searched key only one side has shows as absent;
    a config key only one side has is a field vgan-tune added or dropped since, not the user's change."""
    keys = (set(before) & set(now)) | {k for k in set(before) | set(now) if k.startswith("search.")}
    return [f"{k}: {before.get(k, 'absent')} -> {now.get(k, 'absent')}"
            for k in sorted(keys) if before.get(k, "absent") != now.get(k, "absent")]


def define_by_run(trial, params: list[Param], base: dict[str, Any]) -> None:
    """Optuna define-by-run space (module level so Ray can pickle it; bind with partial)."""
    chosen: dict[str, Any] = {}
    for p in params:
        if not condition_met(p, chosen, base):
            continue
        if p.type == "categorical":
            chosen[p.key] = trial.suggest_categorical(p.key, p.choices)
        elif p.type == "int":
            chosen[p.key] = trial.suggest_int(p.key, p.low, p.high, step=p.step, log=p.log)
        else:
            chosen[p.key] = trial.suggest_float(p.key, p.low, p.high, log=p.log)
