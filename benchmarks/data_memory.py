"""`python -m benchmarks.data_memory` (from the repository root): what a dataset costs a training process in memory.

    python -m benchmarks.data_memory --config configs/drive.yaml --data ../shared/data/DRIVE [--json OUT]

Reads the training pool as a trial does (`load_train_val`), then builds the `Trainer` on the CPU, which
adds the stacked training tensor its augmentation crops from, and prints the process's resident memory
(VmRSS) and its peak (VmHWM) after each step, with the pixels held. The data's share is what grows with
the images: a trial packed on a GPU holds it once in host memory and once more on the device.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from vgan.config import Config, apply_overrides, load_config
from vgan.data import load_train_val
from vgan.trainer import Trainer

MB = 2**20


def memory() -> dict[str, float]:
    """The process's resident and peak resident memory, in MiB (Linux)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {"rss_mib": int(fields["VmRSS"].split()[0]) / 1024, "peak_mib": int(fields["VmHWM"].split()[0]) / 1024}


def tensor_mib(*tensors: torch.Tensor) -> float:
    return sum(t.nbytes for t in tensors) / MB


def measure(config: str | None, data: str | None) -> dict:
    cfg = load_config(config) if config else Config()
    cfg = apply_overrides(cfg, {"data.root": str(Path(data).resolve())} if data else {})
    stages = {"imports": memory()}
    t0 = time.perf_counter()
    train, val = load_train_val(cfg.data)
    read_s = time.perf_counter() - t0
    stages["train and val read"] = memory()
    trainer = Trainer(cfg, train, val, torch.device("cpu"))
    stages["trainer built"] = memory()
    own = [s.image_size(i) for s in (train, val) for i in range(len(s))]
    held = sum(len(s) * s.size[0] * s.size[1] for s in (train, val))  # a mixed-size split's padding included
    return {
        "dataset": cfg.data.dataset, "root": cfg.data.root, "images": len(train) + len(val),
        "size": list(train.size), "sizes": [list(hw) for hw in sorted(set(own))],
        "megapixels": sum(h * w for h, w in own) / 1e6, "held_megapixels": held / 1e6, "read_s": read_s,
        "dtypes": {"images": str(train.images.dtype), "labels": str(train.labels.dtype),
                   "masks": str(train.masks.dtype), "stacked": str(trainer.train_data.dtype)},
        "splits_mib": tensor_mib(*(t for s in (train, val) for t in (s.images, s.labels, s.masks))),
        "stacked_mib": tensor_mib(trainer.train_data),
        "stages": stages, "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.data_memory", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML config (default: the built-in synthetic one)")
    p.add_argument("--data", help="dataset root (overrides data.root)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    r = measure(args.config, args.data)
    sizes = ", ".join(f"{h}x{w}" for h, w in r["sizes"])
    padded = f", held padded to {r['size'][0]}x{r['size'][1]}: {r['held_megapixels']:.1f} Mpx" \
        if len(r["sizes"]) > 1 else ""
    print(f"{r['dataset']} {r['root'] or ''}: {r['images']} images of {sizes} ({r['megapixels']:.1f} Mpx{padded}), "
          f"read in {r['read_s']:.1f} s")
    print(f"  held: splits {r['splits_mib']:.0f} MiB ({r['dtypes']['images']} images, {r['dtypes']['labels']} labels "
          f"and masks), stacked training tensor {r['stacked_mib']:.0f} MiB ({r['dtypes']['stacked']}); "
          f"{(r['splits_mib'] + r['stacked_mib']) * MB / (r['megapixels'] * 1e6):.1f} bytes per image pixel")
    for stage, m in r["stages"].items():
        print(f"  {stage:<20} RSS {m['rss_mib']:7.0f} MiB   peak {m['peak_mib']:7.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
