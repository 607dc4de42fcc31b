"""`python -m vgan.train`: train V-GAN from a config, resumable.

    python -m vgan.train [--config CONFIG] [--data ROOT] [--epochs N] [--out DIR]
                         [--resume CKPT] [--device DEV] [--set KEY=VALUE ...]

Without --config the built-in defaults train on the synthetic dataset (no download).
The run folder gets config.yaml, metrics.jsonl (one line per epoch), checkpoints/last.pt
and best.pt (full state: both nets, both optimizers, epoch, config, RNG), previews/.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import yaml

from vgan.cli import exit_program, nonempty, run_cli, writable_folder
from vgan.config import (
    DEVICES,
    FOV_MEDIAN,
    Config,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_sets,
    set_flags,
)
from vgan.errors import ConfigError

if TYPE_CHECKING:  # torch's modules are imported where a run needs them: --help and bad options answer at once
    from vgan.trainer import EpochResult, Trainer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vgan.train", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--config", type=nonempty,
                   help="YAML config (default: built-in synthetic defaults, or the checkpoint's)")
    p.add_argument("--data", type=nonempty, help="dataset root (overrides data.root)")
    p.add_argument("--epochs", type=int, help="total epochs to reach (overrides train.epochs)")
    p.add_argument("--out", type=nonempty,
                   help="run folder (default: runs/<config>-<time>, or the resumed run's folder)")
    p.add_argument("--resume", type=nonempty, metavar="CKPT", help="continue from a checkpoint written by this command")
    p.add_argument("--device", choices=DEVICES, help="overrides train.device")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="a config key changed (dotted, a YAML value: train.seed=3, optim.lr_g=2e-4), over --config's "
                        "or the checkpoint's; repeat it for more")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def resolve_config(args: argparse.Namespace, resume_state: dict[str, Any] | None) -> Config:
    if args.config:
        cfg = load_config(args.config)
    elif resume_state is not None:
        from vgan.trainer import checkpoint_config

        cfg = checkpoint_config(resume_state, args.resume)
    else:
        cfg = config_from_dict({}, "built-in defaults")
    overrides = parse_sets(args.sets)
    flags = {"data.root": "--data", "train.epochs": "--epochs", "train.device": "--device"}
    for key, flag in flags.items():
        if key in overrides and getattr(args, flag[2:]) is not None:
            raise ConfigError(f"--set {key}=... and {flag}: give one")
    if args.data is not None:
        if cfg.data.dataset == "synthetic":
            from vgan.data import held_layout

            layout = held_layout(args.data)
            given = (f"{args.config} trains" if args.config else f"{args.resume}'s config trains"
                     if resume_state is not None else "the built-in defaults train")
            hint = (f"; {layout[1]}: train on it with a config of data.dataset: {layout[0]} "
                    f"(configs/{layout[0]}.yaml)") if layout else ""
            raise ConfigError(f"--data {args.data}: {given} on the synthetic dataset, which is generated and takes no "
                              f"data root{hint}")
        overrides["data.root"] = str(Path(args.data).expanduser().resolve())
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    if args.device is not None:
        overrides["train.device"] = args.device
    given = {**set_flags(args.sets), **{key: f"{flag} {getattr(args, flag[2:])}" for key, flag in flags.items()
                                        if getattr(args, flag[2:]) is not None}}
    return apply_overrides(cfg, overrides, "command line", given) if overrides else cfg


def default_out(args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out)
    if args.resume and Path(args.resume).resolve().parent.name == "checkpoints":
        return Path(args.resume).resolve().parent.parent
    stem = Path(args.config).stem if args.config else "synthetic"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def format_record(r: dict[str, float], epochs: int, best: bool) -> str:
    return (
        f"epoch {int(r['epoch'])}/{epochs}  loss_g {r['loss_g']:.4f}  bce {r['loss_bce']:.4f}  "
        f"{f'cldice {c:.4f}  ' if (c := r.get('loss_cldice')) else ''}"  # where the term is on
        f"loss_d {r['loss_d']:.4f}  val AUC-ROC {r['val_auc_roc']:.4f}  AUC-PR {r['val_auc_pr']:.4f}  "
        f"F1 {r['val_f1']:.4f}  {f'clDice {c:.4f}  ' if (c := r.get('val_cldice')) is not None else ''}"
        f"{f'thin AUC-ROC {c:.4f}  ' if (c := r.get('val_thin_auc_roc')) is not None else ''}"
        f"{r['epoch_s']:.1f}s (+{r['val_s']:.1f}s val){'  *best' if best else ''}"
    )


def _keep_history(path: Path, upto_epoch: int) -> None:
    """On resume, drop metrics lines of epochs after the checkpoint (they will be re-run)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["epoch"] <= upto_epoch]
    path.write_text("".join(ln + "\n" for ln in lines))


def run_folder_sink(trainer: Trainer, out: Path, log: Callable[[str], None] = print) -> Callable[[EpochResult], None]:
    """What `python -m vgan.train` does with each epoch: a metrics.jsonl line, a log line,
    checkpoints/last.pt (and best.pt), previews every `train.preview_every` epochs."""
    from vgan.visualize import save_previews

    cfg = trainer.cfg
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    history = out / "metrics.jsonl"
    _keep_history(history, trainer.epoch)
    every = cfg.train.preview_every

    def on_epoch(result: EpochResult) -> None:
        with history.open("a") as f:
            f.write(json.dumps(result.record) + "\n")
        log(format_record(result.record, cfg.train.epochs, result.is_best))
        trainer.save_checkpoint(out / "checkpoints" / "last.pt")
        if result.is_best:
            trainer.save_checkpoint(out / "checkpoints" / "best.pt")
        if every and (trainer.epoch % every == 0 or trainer.epoch == cfg.train.epochs):
            save_previews(out / "previews", f"epoch{trainer.epoch:04d}", trainer.val, result.probs.cpu(),
                          f"validation, epoch {trainer.epoch}")

    return on_epoch


def train_into(trainer: Trainer, out: Path, progress: bool = True, log: Callable[[str], None] = print) -> None:
    """Run epochs up to train.epochs, writing metrics, checkpoints and previews under `out`."""
    from vgan.trainer import fit

    fit(trainer, run_folder_sink(trainer, out, log), progress)
    log(f"best val {trainer.cfg.train.select_metric} {trainer.best_score:.4f} at epoch {trainer.best_epoch}; "
        f"run folder {out}")


def _main(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    state = None
    if args.resume:
        from vgan.trainer import load_checkpoint

        state = load_checkpoint(args.resume)
    cfg = resolve_config(args, state)
    from vgan.data import converted_note, copies_note, fov_note, fov_source, load_train_val, people_note
    from vgan.scale import mixed_scale_note
    from vgan.trainer import Trainer, count_parameters, resolve_device

    device = resolve_device(cfg.train.device)
    train, val = load_train_val(cfg.data)
    trainer = Trainer(cfg, train, val, device)
    if state is not None:
        trainer.load_state_dict(state, args.resume)
    changed = trainer.code_change and (f"the code changed since {args.resume} was written ({trainer.code_change}): "
                                       "epochs from here train with it")
    moved = trainer.environment_change and (
        f"{args.resume} was written on another environment ({trainer.environment_change}): epochs from here "
        "train on this one, and need not repeat to the digit what the run would have trained there")
    out = writable_folder(default_out(args), "--out" if args.out else "run folder")
    d_params = f", D {count_parameters(trainer.D) / 1e6:.2f}M" if trainer.D is not None else ""
    at = ""
    if cfg.data.fov_diameter == FOV_MEDIAN:  # the median of the training split, as its generator records it
        at = f" at a FOV of {trainer.G.trained_fov:.0f} px (their median)"
    elif cfg.data.fov_diameter is not None:
        at = f" at a FOV of {cfg.data.fov_diameter:g} px"
    print(f"training on {device}: {cfg.data.dataset} ({len(train)} train / {len(val)} val images{at}"
          f"{fov_note(fov_source(cfg.data, 'train'))}), "
          f"G {count_parameters(trainer.G) / 1e6:.2f}M params{d_params}, {trainer.steps_per_epoch} steps per epoch, "
          f"epochs {trainer.epoch + 1}..{cfg.train.epochs}", flush=True)
    note = None if cfg.data.fov_diameter is not None else mixed_scale_note(train.masks)
    copies = copies_note(cfg.data, ("training",))
    for n in (changed, moved, note, people_note(cfg.data, train, val), copies, converted_note(train, val)):
        if n is not None:
            print(f"note: {n}", flush=True)
    began = time.time()
    try:
        train_into(trainer, out, progress=not args.quiet and sys.stderr.isatty())
    except (KeyboardInterrupt, BrokenPipeError):  # Ctrl-C, SIGTERM, or the reader of its output gone (| head)
        last = out / "checkpoints" / "last.pt"
        if last.is_file() and last.stat().st_mtime >= began:  # this run's, not one an earlier run left there
            # its config holds the data root, the epochs and the device, and its run folder is this one
            say = f"go on from the last epoch saved with: python -m vgan.train --resume {shlex.quote(str(last))}"
        elif args.resume:
            say = f"no epoch was finished: the same command goes on from {args.resume} again"
        else:
            say = "no epoch was finished: nothing to resume"
        print(f"\n{say}", file=sys.stderr, flush=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, "vgan.train")


if __name__ == "__main__":
    exit_program(main())
