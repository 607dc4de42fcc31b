"""`python -m benchmarks.train_speed`: our training step against one written like the reference implementation.

    python -m benchmarks.train_speed --data ROOT [--config CONFIG] [--device cpu|cuda] [--json OUT]
    python -m benchmarks.train_speed --data ROOT --pack 1,2,4,8 [--device cuda]     # concurrent trials on one device

Same model, crop size, batch, loss and number of steps on both sides, in one process:
- ours: `vgan.trainer.Trainer`: the dataset uploaded once, crops, flips and colour jitter as
  batched tensor ops on the device, a fused critic pass, losses summed on the device (one
  host sync per epoch), bf16 autocast and channels_last on CUDA, optional torch.compile;
- baseline, as guyuchao/Vessel-wgan-pytorch trains: a `DataLoader` whose dataset decodes
  each sample from disk, applies PIL colour jitter, a random crop and flips, then ToTensor;
  each batch copied host-to-device in the step; fp32; real and fake critic passes apart.
Images per second count every training image drawn (critic and generator batches alike).
Each figure is the median over `--repeats` timed runs after `--warmup` iterations.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageEnhance

from vgan import augment, losses
from vgan.cli import run_cli
from vgan.config import Config, apply_overrides, load_config
from vgan.data import Item, Split, load_train_val, normalization_stats, train_files
from vgan.errors import ConfigError
from vgan.models import Discriminator, Generator
from vgan.provenance import environment_record
from vgan.trainer import Trainer, resolve_device

REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------- the baseline


class ReferenceStyleDataset(torch.utils.data.Dataset):
    """Per sample: decode from disk, joint random crop and flips, PIL colour jitter, ToTensor."""

    def __init__(self, items: list[Item], crop: int | None, strength: float, flip: bool, length: int):
        self.items, self.crop, self.strength, self.flip, self.length = items, crop, strength, flip, length

    def __len__(self) -> int:
        return self.length  # as many samples as the benchmark draws: one pass, no epoch boundary

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        it = self.items[i % len(self.items)]
        img = Image.open(it.image).convert("RGB")
        label = Image.open(it.label).convert("L")
        if self.crop is not None:
            x, y = random.randint(0, img.width - self.crop), random.randint(0, img.height - self.crop)
            box = (x, y, x + self.crop, y + self.crop)
            img, label = img.crop(box), label.crop(box)
        if self.flip:
            for how in (Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM):
                if random.random() < 0.5:
                    img, label = img.transpose(how), label.transpose(how)
        if self.strength > 0:
            img = pil_color_jitter(img, self.strength)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
        y = torch.from_numpy((np.asarray(label) > 127).astype(np.float32))[None]
        return x, y


def pil_color_jitter(img: Image.Image, strength: float) -> Image.Image:
    """Brightness, contrast and hue as torchvision's ColorJitter does them on PIL images."""
    u = [random.uniform(-1, 1) for _ in range(3)]
    img = ImageEnhance.Brightness(img).enhance(1 + augment.BRIGHTNESS * strength * u[0])
    img = ImageEnhance.Contrast(img).enhance(1 + augment.CONTRAST * strength * u[1])
    h, s, v = img.convert("HSV").split()
    shift = int(round(augment.HUE * strength * u[2] * 255))
    h = h.point(lambda p: (p + shift) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


class BaselineStep:
    """One iteration (n_critic critic batches + one generator batch) the reference's way."""

    def __init__(self, cfg: Config, mean: torch.Tensor, std: torch.Tensor, items: list[Item],
                 device: torch.device, workers: int, iterations: int):
        torch.manual_seed(cfg.train.seed)
        self.cfg, self.device = cfg, device
        self.G = Generator(cfg.model).to(device)
        self.G.set_normalization(mean, std)
        self.D = Discriminator(cfg.model).to(device) if cfg.adversarial_on else None
        o = cfg.optim
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=o.lr_g, betas=o.betas_g)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=o.lr_d, betas=o.betas_d) if self.D else None
        per_iteration = 1 + (cfg.loss.n_critic if self.D else 0)
        d = cfg.data
        dataset = ReferenceStyleDataset(items, d.crop_size, d.augment_strength, d.flip,
                                        iterations * per_iteration * cfg.train.batch_size)
        self.loader = iter(torch.utils.data.DataLoader(
            dataset, batch_size=cfg.train.batch_size, shuffle=True, num_workers=workers,
            pin_memory=device.type == "cuda", drop_last=True))
        self.images_per_iteration = per_iteration * cfg.train.batch_size

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = next(self.loader)
        return x.to(self.device), y.to(self.device)

    def __call__(self) -> None:
        lc = self.cfg.loss
        if self.D is not None:
            for _ in range(lc.n_critic):
                x, y = self._batch()
                fake = torch.sigmoid(self.G(x)).detach()
                d_real, d_fake = self.D(x, y), self.D(x, fake)
                if lc.adversarial == "wgan-gp":
                    eps = torch.rand(len(x), device=self.device)
                    loss = losses.wgan_critic_loss(d_real, d_fake) + lc.gp_weight * losses.gradient_penalty(
                        self.D.score, torch.cat([x, y], 1), torch.cat([x, fake], 1), eps)
                else:
                    loss = losses.vanilla_discriminator_loss(d_real, d_fake)
                self.opt_d.zero_grad()
                loss.backward()
                self.opt_d.step()
        x, y = self._batch()
        logits = self.G(x)
        loss = lc.bce_weight * losses.seg_bce(logits, y)
        if self.D is not None:
            d_fake = self.D(x, torch.sigmoid(logits))
            adv = losses.wgan_generator_loss(d_fake) if lc.adversarial == "wgan-gp" else \
                losses.vanilla_generator_loss(d_fake)
            loss = loss + lc.adv_weight * adv
        self.opt_g.zero_grad()
        loss.backward()
        self.opt_g.step()


# ---------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def images_per_s(step: Callable[[], Any], images_per_iteration: int, steps: int, warmup: int, repeats: int,
                 device: torch.device) -> float:
    for _ in range(warmup):
        step()

    def run() -> None:
        for _ in range(steps):
            step()

    return statistics.median(images_per_iteration * steps / timed(run, device) for _ in range(repeats))


def peak_memory_mb(device: torch.device) -> float:
    """GPU: the peak of tensors allocated; CPU: the process's peak resident set (all of it)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_ours(cfg: Config, train: Split, val: Split, device: torch.device, steps: int, warmup: int,
               repeats: int) -> dict[str, float]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer = Trainer(cfg, train, val, device)

    per_iteration = cfg.train.batch_size * (1 + (cfg.loss.n_critic if trainer.D is not None else 0))
    ips = images_per_s(trainer.train_step, per_iteration, steps, warmup, repeats, device)
    epoch_s = statistics.median(timed(trainer.train_one_epoch, device) for _ in range(repeats))
    trainer.validate()  # warm-up at full size (cuDNN picks kernels for the new shape)
    val_s = statistics.median(timed(trainer.validate, device) for _ in range(repeats))
    compiled = getattr(trainer.G_train, "error", None)
    return {"images_per_s": ips, "epoch_s": epoch_s, "val_s": val_s, "peak_mem_mb": peak_memory_mb(device),
            "steps_per_epoch": trainer.steps_per_epoch, "compile_error": compiled}


def bench_baseline(cfg: Config, train: Split, device: torch.device, steps: int, warmup: int, repeats: int,
                   workers: int) -> dict[str, float]:
    """`train` gives the normalisation; the images themselves are read from disk, as the reference does."""
    random.seed(cfg.train.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = BaselineStep(cfg, *normalization_stats(train), train_files(cfg.data), device, workers,
                        warmup + steps * repeats)
    ips = images_per_s(step, step.images_per_iteration, steps, warmup, repeats, device)
    return {"baseline_images_per_s": ips, "baseline_peak_mem_mb": peak_memory_mb(device)}


# ---------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_speed", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--data", required=True, help="DRIVE or STARE root")
    p.add_argument("--dataset", choices=("drive", "stare"), default="drive")
    p.add_argument("--config", help="trainer config YAML (default: the built-in defaults)")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (default)")
    p.add_argument("--steps", type=int, default=20, help="timed iterations per repeat")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline-workers", type=int, default=0, help="DataLoader workers of the baseline")
    p.add_argument("--compile", action="store_true", help="torch.compile our generator (train.compile)")
    p.add_argument("--only-ours", action="store_true", help="skip the baseline (used by --pack)")
    p.add_argument("--pack", help="comma-separated counts of concurrent trials, e.g. 1,2,4,8")
    p.add_argument("--json", type=Path, help="write the figures here")
    return p


def make_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config) if args.config else Config()
    overrides: dict[str, Any] = {"data.dataset": args.dataset, "data.root": str(Path(args.data).resolve()),
                                 "train.device": args.device}
    if args.compile:
        overrides["train.compile"] = True
    return apply_overrides(cfg, overrides, "benchmarks.train_speed")


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def run_pack(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """N copies of `--only-ours` at once, as Ray runs packed trials: separate processes."""
    counts = [int(c) for c in args.pack.split(",")]
    if not counts or min(counts) < 1:
        raise ConfigError(f"--pack {args.pack}: give counts of at least 1, e.g. 1,2,4,8")
    skip = {"--pack", "--json"}
    child = [a for i, a in enumerate(argv) if a not in skip and (i == 0 or argv[i - 1] not in skip)]
    rows = []
    for n in counts:
        with tempfile.TemporaryDirectory() as d:
            outs = [Path(d) / f"{i}.json" for i in range(n)]
            procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.train_speed", *child, "--only-ours", "--json",
                                      str(o)], cwd=REPO)
                     for o in outs]
            if any(p.wait() != 0 for p in procs):
                raise RuntimeError(f"--pack {n}: a trial process failed")
            results = [json.loads(o.read_text()) for o in outs]
        total = sum(r["images_per_s"] for r in results)
        rows.append({"trials": n, "aggregate_images_per_s": total,
                     "per_trial_images_per_s": total / n,
                     "peak_mem_mb_per_trial": max(r["peak_mem_mb"] for r in results)})
        print(f"{n} concurrent: {total:8.1f} images/s in all, {total / n:8.1f} per trial, "
              f"peak {rows[-1]['peak_mem_mb_per_trial']:.0f} MB per trial", flush=True)
    base = rows[0]["aggregate_images_per_s"] / rows[0]["trials"]
    for r in rows:
        r["gain_vs_one"] = r["aggregate_images_per_s"] / base
    return {"pack": rows, "device": results[0]["device"]}


def _main(argv: Sequence[str] | None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    for name in ("steps", "repeats"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name} must be at least 1")
    if args.pack:
        out = run_pack(args, argv)
    else:
        cfg = make_config(args)
        device = resolve_device(cfg.train.device)
        out = {"device": describe(device), "torch": torch.__version__, "config": args.config or "built-in defaults",
               "steps": args.steps, "repeats": args.repeats}
        train, val = load_train_val(cfg.data)
        out.update(bench_ours(cfg, train, val, device, args.steps, args.warmup, args.repeats))
        out["environment"] = environment_record(device)  # after: the trainer set its threads
        if not args.only_ours:
            out.update(bench_baseline(cfg, train, device, args.steps, args.warmup, args.repeats,
                                      args.baseline_workers))
            out["speedup"] = out["images_per_s"] / out["baseline_images_per_s"]
            print_table(out, cfg)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


def print_table(out: dict[str, Any], cfg: Config) -> None:
    m, d = cfg.model, cfg.data
    print(f"benchmarks.train_speed on {out['device']}, torch {out['torch']}: U-Net {m.base_width}x{m.depth}, "
          f"crop {d.crop_size}, "
          f"batch {cfg.train.batch_size}, {cfg.loss.adversarial} (n_critic {cfg.loss.n_critic})")
    print(f"  {'':22s}{'ours':>12s}{'baseline':>12s}")
    print(f"  {'training images/s':22s}{out['images_per_s']:12.1f}{out['baseline_images_per_s']:12.1f}"
          f"   speedup {out['speedup']:.2f}x")
    print(f"  {'peak memory (MB)':22s}{out['peak_mem_mb']:12.0f}{out['baseline_peak_mem_mb']:12.0f}")
    print(f"  {'epoch (s)':22s}{out['epoch_s']:12.2f}   ({out['steps_per_epoch']} iterations)")
    print(f"  {'validation (s)':22s}{out['val_s']:12.2f}   (full-size validation images)")
    if out.get("compile_error"):
        print(f"  torch.compile fell back to eager: {out['compile_error']}")


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run_cli(_main, argv, "benchmarks.train_speed")


if __name__ == "__main__":
    sys.exit(main())
