"""Training and evaluation of V-GAN: `d_step`, `g_step`, `train_one_epoch`, `evaluate`,
full checkpoints. Knows nothing of CLIs, Ray or MLflow: callers drive `run_epoch`.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from vgan import losses
from vgan.augment import Batch, get_transform, stack
from vgan.config import Config, config_from_dict, with_before_added
from vgan.data import Split, normalization_stats
from vgan.errors import CheckpointError, ConfigError, DivergenceError
from vgan.inputs import unit_float
from vgan.metrics import (
    CLDICE,
    THIN_AUC,
    THIN_BELOW,
    calibre_aucs,
    compute_metrics,
    histogram_metrics,
    image_centrelines,
    label_centrelines,
    label_thin_vessels,
    pooled_cldice,
)
from vgan.models import Discriminator, Generator
from vgan.provenance import code_changed, code_record, environment_changed, environment_record
from vgan.scale import median_fov_diameter

CHECKPOINT_FORMAT = 1
LOSS_NAMES = ("loss_g", "loss_bce", "loss_adv", "loss_cldice", "loss_d")
# An epoch's mean loss beyond this counts as diverged: a critic whose scores run off to
# millions has lost its Lipschitz constraint (collapsed) even while the numbers stay finite.
DIVERGENCE_LIMIT = 1e6


def resolve_device(name: str, option: str = "train.device") -> torch.device:
    """`option`: what the user set it with, for the message (a config key, or a CLI's --device)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{option}: 'cuda' asked for, but torch sees no CUDA GPU on this machine")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"{option}: 'mps' asked for, but this machine has no MPS device")
    return torch.device(name)


class CompiledOrEager:
    """`torch.compile(module)`, falling back to the eager module if compiling fails (no
    compiler toolchain, an unsupported op): a trial must never die of an optimisation."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.compiled: Any = torch.compile(module)
        self.error: str | None = None

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as e:  # noqa: BLE001 - any compile failure means: run eager
                self.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                warnings.warn(f"torch.compile failed, training eager instead ({self.error})", stacklevel=2)
                self.compiled = None
        return self.module(*args)


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict(generator: Generator, images: torch.Tensor, device: torch.device, batch_size: int = 2,
            amp: bool = False) -> torch.Tensor:
    """Vessel probabilities (N,1,H,W) for full-size images (uint8 or float in [0, 1]), on `device`."""
    was_training = generator.training
    generator.eval()
    out = []
    for i in range(0, len(images), batch_size):
        with _autocast(device, amp):
            out.append(torch.sigmoid(generator(unit_float(images[i : i + batch_size].to(device))).float()))
    generator.train(was_training)
    return torch.cat(out)


def predict_split(generator: Generator, split: Split, device: torch.device, batch_size: int = 2,
                  amp: bool = False) -> torch.Tensor:
    """Probabilities (N,1,H,W) of a split's images, on `device`; each image of a mixed-size split is given to
    the generator at its own size (as vgan.predict gives it), its padding left at 0."""
    if split.sizes is None:
        return predict(generator, split.images, device, batch_size, amp)
    out = torch.zeros((len(split), 1, *split.size), device=device)
    for (h, w), idx in split.size_groups():
        out[idx, :, :h, :w] = predict(generator, split.images[idx, :, :h, :w], device, batch_size, amp)
    return out


def evaluate(generator: Generator, split: Split, device: torch.device, batch_size: int = 2,
             threshold: float = 0.5, amp: bool = False, exact: bool = True) -> tuple[dict[str, float], torch.Tensor]:
    """FOV-pooled metrics of the generator on a whole split; returns (metrics, probabilities)."""
    probs = predict_split(generator, split, device, batch_size, amp)
    return split_metrics(probs, split, threshold, exact), probs


def split_metrics(probs: torch.Tensor, split: Split, threshold: float = 0.5, exact: bool = True) -> dict[str, float]:
    """Metrics of probabilities (N,1,H,W) for a split, pooled over the FOV pixels of all its images.
    exact: exact curves on the host (reported results; `vgan.metrics.curves`); else histograms on the
    probabilities' device (per-epoch validation: equal to 1e-4, no transfer of the pixels)."""
    inside = split.masks.to(probs.device) > 0.5
    scores = probs[inside]
    targets = split.labels.to(probs.device)[inside] > 0.5
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("the generator produced non-finite probabilities")
    if not exact:
        return histogram_metrics(scores, targets, threshold)
    return compute_metrics(scores.cpu().numpy(), targets.cpu().numpy(), threshold)


def host_targets(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """A split's labels and FOV masks (N, H, W) on the host, for the metrics taken there (`split_cldice`,
    `split_thin_auc`): a run takes them once, not every epoch from the device."""
    return split.labels[:, 0].cpu().numpy(), split.masks[:, 0].cpu().numpy()


def split_cldice(probs: torch.Tensor, targets: tuple[np.ndarray, np.ndarray], threshold: float = 0.5,
                 on_labels: list | None = None) -> float:
    """clDice of probabilities (N,1,H,W) for a split at `threshold`, pooled as `vgan.evaluate` pools it. The maps
    are thinned on the host: only when a run selects on it. `targets`: the split's `host_targets`; `on_labels`: its
    `label_centrelines`."""
    return pooled_cldice(image_centrelines(probs[:, 0].cpu().numpy(), *targets, threshold, on_labels))


def split_thin_auc(probs: torch.Tensor, targets: tuple[np.ndarray, np.ndarray],
                   thin: list[np.ndarray] | None = None) -> float:
    """Thin-vessel AUC-ROC of probabilities (N,1,H,W) for a split, pooled as `vgan.evaluate` pools it (the thick
    vessels' pixels in neither class). `targets`: the split's `host_targets`; `thin`: its `label_thin_vessels`."""
    if thin is None:
        thin = label_thin_vessels(*targets)
    return calibre_aucs(probs[:, 0].cpu().numpy(), *targets, thin)[THIN_AUC]


@dataclass
class EpochResult:
    record: dict[str, float]  # epoch, losses, val_* metrics, timings: one metrics.jsonl line
    probs: torch.Tensor  # validation probabilities, for previews
    is_best: bool


class Trainer:
    """Holds both networks, both optimizers and the RNG; one `run_epoch` = train + validate."""

    def __init__(self, cfg: Config, train: Split, val: Split, device: torch.device):
        self.cfg = cfg
        self.device = device
        t = cfg.train
        if t.threads is not None and device.type == "cpu":
            torch.set_num_threads(t.threads)
        torch.manual_seed(t.seed)  # weight init
        self.gen = torch.Generator().manual_seed(t.seed)  # every random draw of training
        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its fastest kernels
        # NHWC: tensor-core convolutions on CUDA, oneDNN's fast path on CPU (+19 % measured on 2 cores)
        nhwc = t.channels_last and device.type in ("cuda", "cpu")
        self.memory_format = torch.channels_last if nhwc else torch.contiguous_format
        self.G = Generator(cfg.model).to(device, memory_format=self.memory_format)
        self.G.set_normalization(*normalization_stats(train))
        self.G.set_fov_diameter(median_fov_diameter(train.masks))
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.optim.lr_g, betas=cfg.optim.betas_g,
                                      weight_decay=cfg.optim.weight_decay)
        self.D: Discriminator | None = None
        # Real and fake pairs can share one critic pass unless batch statistics would mix them.
        self.fuse_critic = cfg.model.disc_norm != "batch"
        self.opt_d: torch.optim.Optimizer | None = None
        if cfg.adversarial_on:
            self.D = Discriminator(cfg.model).to(device, memory_format=self.memory_format)
            self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.optim.lr_d, betas=cfg.optim.betas_d,
                                          weight_decay=cfg.optim.weight_decay)
        thin = None
        if cfg.loss.thin_weight != 1:  # widths of whole labels: a crop's edge would cut a vessel's
            thin = torch.from_numpy(np.stack(label_thin_vessels(train.labels[:, 0].cpu().numpy(),
                                                                train.masks[:, 0].cpu().numpy())))[:, None]
        self.train_data = stack(train.images, train.labels, train.masks, thin).to(device)
        self.val = val.to(device)
        # what the metrics taken on the host score against, once a run rather than once an epoch: the validation
        # labels and masks, their centrelines (thinned) or their thin vessels
        self.val_targets = host_targets(val) if t.select_metric in (CLDICE, THIN_AUC) else None
        self.val_centrelines = label_centrelines(*self.val_targets) if t.select_metric == CLDICE else None
        self.val_thin = label_thin_vessels(*self.val_targets) if t.select_metric == THIN_AUC else None
        if self.val_thin is not None and not any(thin.any() for thin in self.val_thin):
            raise ConfigError(f"train.select_metric: {THIN_AUC}, but no validation label holds a thin vessel (under "
                              f"{THIN_BELOW} px across at its centreline), so no epoch would have a score; select on "
                              "auc_roc")
        sizes = None if train.sizes is None else torch.tensor(train.sizes, dtype=torch.int64)
        self.transform = get_transform(True, cfg.data.crop_size, cfg.data.augment_strength, cfg.data.flip, sizes,
                                       cfg.data.grey_prob)
        # Training crops have one shape: worth compiling. Validation (full size) stays eager.
        self.G_train = CompiledOrEager(self.G) if t.compile else self.G
        self.epoch = 0
        self.best_score = -math.inf
        self.best_epoch = 0
        self.code = code_record()  # the code writing this trainer's checkpoints (a resumed run: the new code)
        # A run resumed by other code keeps what trained its epochs before: {"code", "until_epoch"} per change.
        self.earlier_code: list[dict[str, Any]] = []
        self.code_change: str | None = None  # loaded from a checkpoint other code wrote: "A to B" (code_changed)
        # and what it runs on; a run resumed elsewhere keeps each environment its epochs trained on before
        self.environment = environment_record(device)
        self.earlier_environments: list[dict[str, Any]] = []
        self.environment_change: str | None = None  # "torch A to B, ..." (environment_changed)

    # ------------------------------------------------------------------ steps

    @property
    def steps_per_epoch(self) -> int:
        t = self.cfg.train
        return t.steps_per_epoch or math.ceil(len(self.train_data) / t.batch_size)

    def _amp(self):
        return _autocast(self.device, self.cfg.train.amp)

    def next_batch(self) -> Batch:
        n, b = len(self.train_data), self.cfg.train.batch_size
        index = torch.randperm(n, generator=self.gen)[:b] if b <= n else torch.randint(0, n, (b,), generator=self.gen)
        batch = self.transform(self.train_data, index, self.gen)
        if self.memory_format is torch.channels_last:
            batch.images = batch.images.contiguous(memory_format=torch.channels_last)
        return batch

    def d_step(self) -> torch.Tensor:
        """One critic/discriminator update on a fresh batch; returns its loss (on device)."""
        assert self.D is not None and self.opt_d is not None
        b = self.next_batch()
        with torch.no_grad(), self._amp():
            fake = torch.sigmoid(self.G_train(b.images)).float()
        with self._amp():
            if self.fuse_critic:  # one critic pass over real and fake pairs: half the launches
                d_real, d_fake = self.D(b.images.repeat(2, 1, 1, 1), torch.cat([b.labels, fake])).chunk(2)
            else:
                d_real, d_fake = self.D(b.images, b.labels), self.D(b.images, fake)
            if self.cfg.loss.adversarial == "wgan-gp":
                loss = losses.wgan_critic_loss(d_real.float(), d_fake.float())
                eps = torch.rand(len(fake), generator=self.gen).to(self.device, non_blocking=True)
                real_x, fake_x = torch.cat([b.images, b.labels], 1), torch.cat([b.images, fake], 1)
                loss = loss + self.cfg.loss.gp_weight * losses.gradient_penalty(self.D.score, real_x, fake_x, eps)
            else:
                loss = losses.vanilla_discriminator_loss(d_real.float(), d_fake.float())
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return loss.detach()

    def g_step(self) -> torch.Tensor:
        """One generator update; returns (loss_g, loss_bce, loss_adv, loss_cldice) stacked (on device)."""
        lc = self.cfg.loss
        b = self.next_batch()
        with self._amp():
            logits = self.G_train(b.images).float()
            weight = None if b.thin is None else losses.thin_vessel_weights(b.thin, lc.thin_weight)
            bce = losses.seg_bce(logits, b.labels, weight)
            adv = torch.zeros((), device=self.device)
            if self.D is not None:
                self.D.requires_grad_(False)  # no wasted D gradients during the G step
                d_fake = self.D(b.images, torch.sigmoid(logits)).float()
                self.D.requires_grad_(True)
                adv = losses.wgan_generator_loss(d_fake) if lc.adversarial == "wgan-gp" else \
                    losses.vanilla_generator_loss(d_fake)
            loss = lc.bce_weight * bce + lc.adv_weight * adv
            cl = torch.zeros((), device=self.device)
            if lc.cldice_weight > 0:
                cl = losses.soft_cldice(torch.sigmoid(logits), b.labels, lc.cldice_iters)
                loss = loss + lc.cldice_weight * cl
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return torch.stack([loss.detach(), bce.detach(), adv.detach(), cl.detach()])

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`loss.n_critic` critic updates, then one generator update: (g losses, summed d loss), on device."""
        d_sum = torch.zeros((), device=self.device)
        if self.D is not None:
            for _ in range(self.cfg.loss.n_critic):
                d_sum += self.d_step()
        return self.g_step(), d_sum

    def train_one_epoch(self, progress: bool = False) -> dict[str, float]:
        """Mean losses of one epoch. Losses stay on the device until the epoch ends."""
        self.G.train()
        if self.D is not None:
            self.D.train()
        steps = self.steps_per_epoch
        g_sum = torch.zeros(len(LOSS_NAMES) - 1, device=self.device)  # all but loss_d
        d_sum = torch.zeros((), device=self.device)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc=f"epoch {self.epoch}", leave=False, unit="step", dynamic_ncols=True)
        for _ in range(steps):
            g, d = self.train_step()
            g_sum += g
            d_sum += d
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        d_steps = steps * self.cfg.loss.n_critic if self.D is not None else 1
        values = (torch.cat([g_sum / steps, (d_sum / d_steps).view(1)])).tolist()
        out = dict(zip(LOSS_NAMES, values, strict=True))
        for name, value in out.items():
            if not math.isfinite(value) or abs(value) > DIVERGENCE_LIMIT:
                raise DivergenceError(self.epoch, name, value)
        return out

    def validate(self) -> tuple[dict[str, float], torch.Tensor]:
        t = self.cfg.train
        try:
            metrics, probs = evaluate(self.G, self.val, self.device, t.eval_batch_size, amp=t.amp, exact=False)
        except ValueError as e:
            if "non-finite" in str(e):
                raise DivergenceError(self.epoch, "val_probability", float("nan")) from None
            raise
        if t.select_metric == CLDICE:
            metrics[CLDICE] = split_cldice(probs, self.val_targets, on_labels=self.val_centrelines)
        elif t.select_metric == THIN_AUC:
            metrics[THIN_AUC] = split_thin_auc(probs, self.val_targets, self.val_thin)
        return metrics, probs

    def lr_factor(self, epoch: int) -> float:
        """The learning rates of epoch `epoch` (1-based) as a share of the config's: a function of the epoch
        alone, so a resumed run, or a PBT trial given a perturbed learning rate, goes on along its schedule."""
        if self.cfg.optim.lr_schedule == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * (epoch - 1) / self.cfg.train.epochs))

    def set_learning_rates(self, epoch: int) -> None:
        factor = self.lr_factor(epoch)
        for opt, lr in ((self.opt_g, self.cfg.optim.lr_g), (self.opt_d, self.cfg.optim.lr_d)):
            for group in opt.param_groups if opt is not None else ():
                group["lr"] = lr * factor

    def run_epoch(self, progress: bool = False) -> EpochResult:
        self.epoch += 1
        self.set_learning_rates(self.epoch)
        t0 = time.perf_counter()
        record: dict[str, float] = {"epoch": self.epoch}
        record.update(self.train_one_epoch(progress))
        t1 = time.perf_counter()
        metrics, probs = self.validate()
        t2 = time.perf_counter()
        record.update({f"val_{k}": v for k, v in metrics.items()})
        record.update(epoch_s=t1 - t0, val_s=t2 - t1)
        score = metrics[self.cfg.train.select_metric]
        is_best = score > self.best_score
        if is_best:
            self.best_score, self.best_epoch = score, self.epoch
        return EpochResult(record, probs, is_best)

    def best_generator(self) -> dict[str, Any]:
        """The generator's weights as a host copy: kept when an epoch is the best so far."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.G.state_dict().items()}

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "gen": self.gen.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "config": self.cfg.to_dict(),
            "generator": self.G.state_dict(),
            "discriminator": self.D.state_dict() if self.D is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else None,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "rng": rng,
            "code": self.code,
            "earlier_code": self.earlier_code,
            "environment": self.environment,
            "earlier_environments": self.earlier_environments,
        }

    def load_state_dict(self, state: dict[str, Any], source: str = "<checkpoint>") -> None:
        check_model_matches(state, self.cfg, source)
        try:
            self.G.load_state_dict(state["generator"])
            self.opt_g.load_state_dict(state["opt_g"])
            if self.D is not None:
                if state.get("discriminator") is None:
                    raise CheckpointError(f"{source}: has no discriminator, but the config trains one")
                self.D.load_state_dict(state["discriminator"])
                self.opt_d.load_state_dict(state["opt_d"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(f"{source}: does not fit this model ({e})") from None
        # The config's hyperparameters win over the ones saved with the optimizer state: a run resumed
        # with another learning rate, or a PBT trial given a perturbed one, trains with the new one.
        for opt, lr, betas in ((self.opt_g, self.cfg.optim.lr_g, self.cfg.optim.betas_g),
                               (self.opt_d, self.cfg.optim.lr_d, self.cfg.optim.betas_d)):
            for group in opt.param_groups if opt is not None else ():
                group.update(lr=lr, betas=tuple(betas), weight_decay=self.cfg.optim.weight_decay)
        self.epoch = int(state["epoch"])
        self.earlier_code = list(state.get("earlier_code", []))
        # a checkpoint from before checkpoints said their code has no "code": no change to tell
        self.code_change = code_changed(state["code"], self.code) if "code" in state else None
        if self.code_change is not None:
            self.earlier_code.append({"code": state["code"], "until_epoch": self.epoch})
        self.earlier_environments = list(state.get("earlier_environments", []))
        self.environment_change = environment_changed(state.get("environment"), self.environment)
        if self.environment_change is not None:
            self.earlier_environments.append({"environment": state["environment"], "until_epoch": self.epoch})
        self.best_score = float(state["best_score"])
        self.best_epoch = int(state["best_epoch"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        self.gen.set_state(rng["gen"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)  # a crash mid-write never leaves a half checkpoint behind


def fit(trainer: Trainer, on_epoch: Callable[[EpochResult], None], progress: bool = False) -> None:
    """The epoch loop, up to `train.epochs` from wherever the trainer stands (a resumed one goes on).
    `python -m vgan.train` and the Tune trainable differ only in what `on_epoch` does with an epoch."""
    while trainer.epoch < trainer.cfg.train.epochs:
        on_epoch(trainer.run_epoch(progress))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True` and check it is one of ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own text is a page that ends advising weights_only=False, which is what must not be done
        raise CheckpointError(f"{path}: not a readable vgan checkpoint (not a PyTorch file, or one holding more "
                              "than tensors and plain values, which weights_only=True refuses)") from None
    except Exception as e:
        first = str(e).split(". ")[0].splitlines()[0] if str(e) else ""
        raise CheckpointError(f"{path}: not a readable vgan checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "generator" not in state:
        raise CheckpointError(f"{path}: not a vgan checkpoint (format {CHECKPOINT_FORMAT} expected)")
    return state


def checkpoint_config(state: dict[str, Any], source: str, training: bool = True) -> Config:
    """A checkpoint's saved config, read as the version that saved it meant it (`vgan.config.BEFORE_ADDED`,
    `RETIRED`). `training`: it is to train on (a resumed run), so a retired key at a value this version cannot
    train with is refused; else it only says how the generator was trained, and is dropped."""
    refusal = ("resuming would train the epochs left without it (the version that saved it can resume it; this one "
               "evaluates and predicts with it)") if training else None
    try:
        return config_from_dict(with_before_added(state["config"]), f"{source} (saved config)", refusal)
    except ConfigError as e:
        raise CheckpointError(str(e)) from None


def check_model_matches(state: dict[str, Any], cfg: Config, source: str) -> None:
    saved = state.get("config", {}).get("model", {})
    wanted = cfg.to_dict()["model"]
    diff = [f"model.{k}: checkpoint {saved.get(k)!r}, config {v!r}" for k, v in wanted.items() if saved.get(k) != v]
    if diff:
        raise CheckpointError(f"{source}: checkpoint of another model shape ({'; '.join(diff)})")


def generator_from_checkpoint(state: dict[str, Any], source: str, device: torch.device) -> tuple[Generator, Config]:
    cfg = checkpoint_config(state, source, training=False)
    g = Generator(cfg.model)
    try:
        g.load_state_dict(state["generator"])
    except RuntimeError as e:
        raise CheckpointError(f"{source}: generator weights do not fit its saved config ({e})") from None
    return g.to(device).eval(), cfg


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
