"""The one typed config tree (data, model, loss, optim, train) and its YAML loading.

Every key is a dataclass field; unknown keys, wrong types and inconsistent values raise
`ConfigError` naming the file and the dotted key. The tuner addresses fields by the same
dotted keys (`optim.lr_g`), see `apply_overrides`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from vgan.errors import ConfigError
from vgan.metrics import SELECTABLE

DATASETS = ("synthetic", "drive", "stare", "folder")
ADVERSARIAL = ("wgan-gp", "vanilla", "none")
LR_SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")
MIN_FOV_DIAMETER = 32  # pixels: a FOV narrower holds no vessel a U-Net could learn (DRIVE's is 540)
SEARCH_SPACE_SECTIONS = ("search", "tune", "resources", "mlflow")  # a search space's sections beside a config's
FOV_MEDIAN = "median"  # data.fov_diameter: the training split's median, whatever the cameras
PERSON_EYES, PERSON_NONE = "eyes", "none"  # data.person: by the eye marker in a name, or each image its own


@dataclass
class SyntheticConfig:
    num_train: int = 20
    num_test: int = 10
    size: int = 128  # side of the square synthetic images
    seed: int = 1234


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # synthetic | drive | stare | folder (one's own: vgan.data.FOLDER_LAYOUT)
    root: str | None = None  # dataset folder; required for all but synthetic
    val_count: int = 4  # training images held out for validation (seeded choice)
    folds: int = 0  # > 0: k-fold cross-validation over the training images instead
    fold: int = 0  # which fold is the validation split when folds > 0
    split_seed: int = 0
    # Whose each image is, so one person's images stay in one split (train or val, one fold): "eyes" (images
    # named alike but for a last eye marker, Image_01L and Image_01R, _OD and _OS, are one person's), "none"
    # (each image its own person), or a regular expression whose first group is the person in an image's id
    person: str = PERSON_EYES
    crop_size: int | None = 64  # training crop side; None trains on whole images
    # Photographs of the training pool resized so their FOV is this many pixels across (within 10 % as they
    # are): one scale for a pool from several cameras; "median": the training split's median FOV diameter;
    # None: each at its own size (vgan.scale)
    fov_diameter: float | str | None = None
    augment_strength: float = 1.0  # scales colour-jitter ranges; 0 disables jitter
    # share of training crops turned grey (their green channel or their luminance, at random, in all three
    # channels), as red-free photographs and colour ones saved as grey reach vgan.predict; 0: none
    grey_prob: float = 0.0
    flip: bool = True
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


DISC_HEADS = ("pixel", "patch", "image")
DISC_NORMS = ("none", "instance", "layer", "batch")


@dataclass
class ModelConfig:
    """The networks' (vgan.models): here with the rest of the tree, so reading a config needs no torch (a CLI's
    --help, or its refusal of a bad option, answers at once)."""

    base_width: int = 16  # channels of the first U-Net level; doubled at each level down
    depth: int = 3  # number of 2x downsamplings in the U-Net
    disc_head: str = "patch"  # pixel | patch | image (V-GAN's discriminator variants)
    disc_width: int = 16
    disc_depth: int = 3  # stride-2 convolutions before the patch/image head
    disc_norm: str = "instance"  # none | instance | layer | batch (batch is refused with WGAN-GP)


@dataclass
class LossConfig:
    adversarial: str = "wgan-gp"  # wgan-gp | vanilla | none (plain U-Net)
    bce_weight: float = 1.0
    adv_weight: float = 0.1  # V-GAN: 1 / ratio_gan2seg with ratio 10; 0 = plain U-Net
    gp_weight: float = 10.0
    n_critic: int = 5  # critic steps per generator step
    # soft clDice (vgan.losses.soft_cldice: Shit et al. 2021) in the generator's loss, for connected vessels; 0 = off
    cldice_weight: float = 0.0
    cldice_iters: int = 10  # its soft skeleton's erosions: a vessel wider than 2 * cldice_iters + 1 px has none
    # BCE weight of the label's thin-vessel pixels (under 3 px across at their centreline, vgan.metrics.thin_vessels,
    # found once on each whole training label), every other pixel weighing 1: the capillaries most models miss
    thin_weight: float = 1.0


@dataclass
class OptimConfig:
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    betas_g: tuple[float, float] = (0.5, 0.9)
    betas_d: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 0.0
    # cosine: both learning rates fall from lr_g / lr_d at the first epoch along half a cosine over train.epochs
    # (to 0.07 % of them in the last of 60), so the last epochs refine instead of jumping between minima
    lr_schedule: str = "constant"


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 8
    steps_per_epoch: int | None = 10  # generator steps per epoch; None = one pass over the training images
    eval_batch_size: int = 2
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | mps
    amp: bool = True  # bf16 autocast, CUDA only
    channels_last: bool = True  # NHWC activations and weights (CUDA and CPU)
    compile: bool = False  # torch.compile the generator's training forward; eager if compiling fails
    # validation metric that picks the best checkpoint; "cldice" thins the validation maps on the host each epoch
    select_metric: str = "auc_roc"
    preview_every: int = 5  # epochs between validation preview images; 0 = never
    threads: int | None = None  # torch intra-op threads on CPU; None = torch's default


@dataclass
class Config:
    """Defaults: a quick WGAN-GP run on the synthetic set (configs/synthetic.yaml spells them out)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    @property
    def adversarial_on(self) -> bool:
        return self.loss.adversarial != "none" and self.loss.adv_weight > 0


CONFIG_SECTIONS = tuple(f.name for f in dataclasses.fields(Config))  # data, model, loss, optim, train


@dataclass(frozen=True)
class Retired:
    """A key older versions wrote and this one has not. Every config they saved holds it (a checkpoint's, a run's
    config.yaml, a study's best_config.yaml): at `neutral`, the value under which it changed nothing, it is read as
    absent; at another value the config asked for what this version cannot do."""

    neutral: Any
    what: str  # what it asked for, when it went and why: said where another value is refused


RETIRED: dict[str, Retired] = {
    "data.jpeg_prob": Retired(0.0, "training crops saved as JPEG and read back, taken out on 2026-12-07 as they did "
                                   "not buy back what JPEG costs (docs/predict.md)"),
}
# Keys added after configs were first saved whose default is not what the versions before them did: a saved config
# without one is read with this value
BEFORE_ADDED: dict[str, Any] = {"data.person": PERSON_NONE}


def _section(values: Any, dotted: str) -> tuple[dict[str, Any] | None, str]:
    """The mapping that holds dotted key `dotted` in plain config values (None if there is none), and its leaf."""
    *parents, leaf = dotted.split(".")
    node = values
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), leaf


def without_retired(values: Any, source: str, refuse: str | None) -> Any:
    """`values` less the keys this version retired (RETIRED), the caller's dict left as it was. A retired key at
    another value than its neutral one is a ConfigError ending with `refuse`, or, with `refuse` None (a saved config
    read only for its generator, whose training is done), is dropped too."""
    if not isinstance(values, dict):
        return values
    values = copy.deepcopy(values)
    for dotted, retired in RETIRED.items():
        node, leaf = _section(values, dotted)
        if node is None or leaf not in node:
            continue
        value = node.pop(leaf)
        if refuse is not None and value != retired.neutral:
            raise ConfigError(f"{source}: '{dotted}' is {value!r}, which this version cannot do: it asked for "
                              f"{retired.what}; {refuse}")
    return values


def with_before_added(values: Any) -> Any:
    """A saved config's values with each key added since (BEFORE_ADDED) it lacks set to what it was trained with."""
    if not isinstance(values, dict):
        return values
    values = copy.deepcopy(values)
    for dotted, before in BEFORE_ADDED.items():
        node, leaf = _section(values, dotted)
        if node is not None and leaf not in node:
            node[leaf] = before
    return values


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


class ValueRefused(ConfigError):
    """A key's value refused (`source: 'key' problem`), the key and the problem kept: a caller that knows where
    the value came from (`--set model.depth=8`) names that instead of `source` (apply_overrides)."""

    def __init__(self, source: str, key: str, problem: str):
        super().__init__(f"{source}: '{key}' {problem}")
        self.key, self.problem = key, problem


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check `value` against the annotation `tp`; return it converted (int -> float, list -> tuple)."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueRefused(source, key, f"must be a mapping, got {type(value).__name__}")
        return from_dict(tp, value, source, prefix=f"{key}.")
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        inner = [t for t in options if t is not type(None)]
        for t in inner[:-1]:  # the first that takes the value (float | str: a number where it reads as one)
            try:
                return _coerce(value, t, key, source)
            except ConfigError:
                pass
        return _coerce(value, inner[-1], key, source)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueRefused(source, key, f"must be a list of {len(args)} numbers, got {value!r}")
        return tuple(_coerce(v, t, key, source) for v, t in zip(value, args, strict=True))
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ValueRefused(source, key, f"must be a list, got {value!r}")
        return [_coerce(v, inner, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValueRefused(source, key, f"must be a mapping of names to values, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueRefused(source, key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueRefused(source, key, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        # YAML reads 1e-4 (no dot) as a string; accept numeric strings like a user would expect.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueRefused(source, key, f"must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueRefused(source, key, f"must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueRefused(source, key, f"must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def from_dict(cls: type, values: dict[str, Any], source: str, prefix: str = "") -> Any:
    """Build dataclass `cls` from plain values, naming the file and dotted key of any problem."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            raise ConfigError(
                f"{source}: unknown key '{prefix}{key}' (known keys in '{prefix.rstrip('.') or 'top level'}': "
                f"{', '.join(sorted(names))})"
            )
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}", source) for k, v in values.items()}
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any] | None, source: str = "<config>",
                     retired_refusal: str | None = "delete the key to train without it") -> Config:
    """Build and validate a `Config` from plain values (missing keys keep their defaults; retired keys at their
    neutral value are dropped, at another refused with `retired_refusal` said, or dropped too where it is None:
    `without_retired`)."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(values).__name__}")
    values = without_retired(values, source, refuse=retired_refusal)
    cfg = from_dict(Config, values, source)
    validate(cfg, source)
    return cfg


def read_yaml(path: Path, what: str = "config file", error: type[ConfigError] = ConfigError) -> Any:
    """`yaml.safe_load` of a file; a missing, unreadable or malformed file raises `error` naming it."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error(f"{path}: malformed YAML: {e}") from None


def load_config(path: str | os.PathLike) -> Config:
    path = Path(path)
    values = read_yaml(path)
    space = [key for key in SEARCH_SPACE_SECTIONS if isinstance(values, dict) and key in values]
    if space:
        raise ConfigError(f"{path}: a search space (its '{space[0]}' section), not a training config: run it with "
                          f"python -m tuner.run --space {path}; one config to train holds only "
                          f"{', '.join(CONFIG_SECTIONS)}")
    cfg = config_from_dict(values, str(path))
    if cfg.data.root is not None:
        # Relative roots mean "relative to the config file", so a config works from any cwd.
        cfg.data.root = str((path.parent / cfg.data.root).resolve())
    return cfg


def apply_overrides(cfg: Config, overrides: dict[str, Any], source: str = "<overrides>",
                    given: Mapping[str, str] | None = None) -> Config:
    """Return a new config with dotted keys (`optim.lr_g`) replaced, validated like a file. `given`: where each
    key's value came from (`--epochs 0`, `--set model.depth=8`), named for a value refused instead of `source`."""
    values = cfg.to_dict()
    for dotted, value in overrides.items():
        if dotted in RETIRED:
            raise ConfigError(f"{given.get(dotted, source) if given else source}: '{dotted}' is no longer a key: it "
                              f"asked for {RETIRED[dotted].what}")
        node = values
        *parents, leaf = dotted.split(".")
        for i, part in enumerate(parents):
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"{source}: unknown key '{dotted}'{known_keys(node, parents[:i])}")
            node = node[part]
        if leaf not in node or isinstance(node[leaf], dict):
            raise ConfigError(f"{source}: unknown key '{dotted}'{known_keys(node, parents)}")
        node[leaf] = value
    try:
        return config_from_dict(values, source)
    except ValueRefused as e:
        flag = (given or {}).get(e.key.split("[")[0])
        if flag is None:  # a value of the file's, or another key's check (data.crop_size for model.depth)
            raise
        raise ConfigError(f"{flag}: '{e.key}' {e.problem}") from None


def known_keys(node: dict[str, Any], parents: list[str]) -> str:
    """What to say after an unknown key: the keys its section holds."""
    section = ".".join(parents)
    keys = ", ".join(f"{section}.{k}" if section else k for k in node)
    return f" (known keys{f' in {section!r}' if section else ''}: {keys})"


def set_flags(items: Sequence[str], source: str = "--set") -> dict[str, str]:
    """Each KEY=VALUE item's key and the item as given (`--set model.depth=8`), for apply_overrides to name."""
    return {item.partition("=")[0].strip(): f"{source} {item}" for item in items}


def parse_sets(items: Sequence[str], source: str = "--set") -> dict[str, Any]:
    """KEY=VALUE items (a dotted key, a YAML value as a config file holds it) as overrides for `apply_overrides`;
    one without '=' or a key, a value YAML cannot read, or a key given twice is a ConfigError naming it."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{source} {item!r}: give KEY=VALUE, a dotted key as in a config file (e.g. "
                              "optim.lr_g=2e-4)")
        if key in overrides:
            raise ConfigError(f"{source}: '{key}' given twice")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"{source} {item!r}: the value is not YAML ({str(e).splitlines()[0]})") from None
        if isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as text; a config file's number should be one
            try:
                value = float(value)
            except ValueError:
                pass
        overrides[key] = value
    return overrides


def config_keys(cls: type = Config, prefix: str = "") -> dict[str, Any]:
    """All dotted leaf keys of the tree with their annotations (for search-space validation)."""
    out: dict[str, Any] = {}
    for name, tp in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(tp):
            out.update(config_keys(tp, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = tp
    return out


def _check(ok: bool, source: str, key: str, problem: str) -> None:
    if not ok:
        raise ValueRefused(source, key, problem)


def person_pattern(text: str) -> re.Pattern[str] | None:
    """data.person's regular expression; None where it is none or has no group to name the person."""
    try:
        pattern = re.compile(text)
    except re.error:
        return None
    return pattern if pattern.groups >= 1 else None


def validate(cfg: Config, source: str = "<config>") -> None:
    d, m, lo, o, t = cfg.data, cfg.model, cfg.loss, cfg.optim, cfg.train
    _check(d.dataset in DATASETS, source, "data.dataset", f"must be one of {', '.join(DATASETS)}, got {d.dataset!r}")
    _check(d.val_count >= 1, source, "data.val_count", "must be at least 1")
    _check(d.folds == 0 or d.folds >= 2, source, "data.folds", "must be 0 (no k-fold) or at least 2")
    _check(0 <= d.fold < max(d.folds, 1), source, "data.fold", f"must be in [0, {max(d.folds, 1) - 1}]")
    _check(0.0 <= d.augment_strength <= 1.0, source, "data.augment_strength", "must be in [0, 1]")
    _check(0.0 <= d.grey_prob <= 1.0, source, "data.grey_prob", "must be in [0, 1]")
    _check(d.person in (PERSON_EYES, PERSON_NONE) or person_pattern(d.person) is not None, source, "data.person",
           f"must be '{PERSON_EYES}', '{PERSON_NONE}' or a regular expression whose first group is the person in an "
           f"image's id (e.g. '^(P[0-9]+)_'), got {d.person!r}")
    fov = d.fov_diameter
    _check(fov is None or fov == FOV_MEDIAN or (isinstance(fov, float) and fov >= MIN_FOV_DIAMETER), source,
           "data.fov_diameter", f"must be at least {MIN_FOV_DIAMETER} pixels, '{FOV_MEDIAN}' (the training "
           f"photographs' median) or null (each photograph at its own size), got {fov!r}")
    s = d.synthetic
    _check(s.num_train >= 2, source, "data.synthetic.num_train", "must be at least 2")
    _check(s.num_test >= 1, source, "data.synthetic.num_test", "must be at least 1")
    _check(s.size >= 32, source, "data.synthetic.size", "must be at least 32")

    _check(m.base_width >= 1, source, "model.base_width", "must be at least 1")
    _check(1 <= m.depth <= 6, source, "model.depth", "must be in [1, 6]")
    _check(m.disc_head in DISC_HEADS, source, "model.disc_head", f"must be one of {', '.join(DISC_HEADS)}")
    _check(m.disc_norm in DISC_NORMS, source, "model.disc_norm", f"must be one of {', '.join(DISC_NORMS)}")
    _check(m.disc_width >= 1, source, "model.disc_width", "must be at least 1")
    _check(m.disc_depth >= 0, source, "model.disc_depth", "must be at least 0")
    if d.crop_size is not None:  # after model.depth's own check: 2**depth of a depth out of range is no number
        _check(d.crop_size >= 2**m.depth, source, "data.crop_size", f"must be at least 2**model.depth = {2**m.depth}")
        _check(
            d.crop_size % 2**m.depth == 0,
            source,
            "data.crop_size",
            f"must be divisible by 2**model.depth = {2**m.depth} (the U-Net's downsampling), got {d.crop_size}",
        )

    _check(lo.adversarial in ADVERSARIAL, source, "loss.adversarial", f"must be one of {', '.join(ADVERSARIAL)}")
    _check(
        not (lo.adversarial == "wgan-gp" and m.disc_norm == "batch"),
        source,
        "model.disc_norm",
        "must not be 'batch' with loss.adversarial 'wgan-gp' (BatchNorm breaks the per-sample gradient penalty)",
    )
    for key in ("bce_weight", "adv_weight", "gp_weight", "cldice_weight"):
        _check(getattr(lo, key) >= 0, source, f"loss.{key}", "must be >= 0")
    _check(lo.bce_weight > 0 or lo.cldice_weight > 0 or cfg.adversarial_on, source, "loss.bce_weight",
           "and loss.cldice_weight are 0 and the adversarial loss is off: nothing to train on")
    _check(lo.cldice_iters >= 1, source, "loss.cldice_iters", "must be at least 1")
    _check(lo.thin_weight > 0, source, "loss.thin_weight", "must be > 0 (1: thin vessels weigh as any pixel)")
    _check(lo.n_critic >= 1, source, "loss.n_critic", "must be at least 1")

    for key in ("lr_g", "lr_d"):
        _check(getattr(o, key) > 0, source, f"optim.{key}", "must be > 0")
    for key in ("betas_g", "betas_d"):
        _check(all(0 <= b < 1 for b in getattr(o, key)), source, f"optim.{key}", "must be two numbers in [0, 1)")
    _check(o.weight_decay >= 0, source, "optim.weight_decay", "must be >= 0")
    _check(o.lr_schedule in LR_SCHEDULES, source, "optim.lr_schedule", f"must be one of {', '.join(LR_SCHEDULES)}")

    _check(t.epochs >= 1, source, "train.epochs", "must be at least 1")
    _check(t.batch_size >= 1, source, "train.batch_size", "must be at least 1")
    _check(t.steps_per_epoch is None or t.steps_per_epoch >= 1, source, "train.steps_per_epoch", "must be at least 1")
    _check(t.eval_batch_size >= 1, source, "train.eval_batch_size", "must be at least 1")
    _check(t.device in DEVICES, source, "train.device", f"must be one of {', '.join(DEVICES)}")
    _check(t.preview_every >= 0, source, "train.preview_every", "must be >= 0")
    _check(t.threads is None or t.threads >= 1, source, "train.threads", "must be at least 1")
    _check(t.select_metric in SELECTABLE, source, "train.select_metric",
           f"must be one of {', '.join(SELECTABLE)}")
