"""Fault injection for the fault-tolerance tests: nothing of it is in the packages.

    PYTHONPATH=tests/support VGAN_FAULTS=DIR python -m faults --space ...   (tuner.run's arguments)

runs `tuner.run` with every Ray worker patched as it starts (Ray's `worker_process_setup_hook`):
a trial about to run epoch N claims (deletes) a file `raise-at-N.*` in DIR if it can, and then
raises halfway through that epoch, after real optimizer steps. One file, one fault: the files
say how many times, the claim makes each happen once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

FAULTS_ENV = "VGAN_FAULTS"


class Killed(BaseException):
    """A driver's SIGKILL, as far as what it had written is concerned (BaseException: no handler takes it)."""


def kill(*args, **kwargs):
    """In place of the write a driver is killed before."""
    raise Killed


def install() -> None:
    """Ray's worker setup hook: patch the trainer of this worker process."""
    folder = os.environ.get(FAULTS_ENV)
    if not folder:
        return
    from vgan.trainer import Trainer

    train_one_epoch = Trainer.train_one_epoch

    def with_faults(self: Trainer, progress: bool = False) -> dict[str, float]:
        epoch = self.epoch  # run_epoch counted it already
        claimed = None
        for path in sorted(Path(folder).glob(f"raise-at-{epoch}.*")):
            try:
                path.unlink()
            except FileNotFoundError:
                continue  # another trial claimed it first
            claimed = path.name
            break
        if claimed is not None:
            per_step = 1 + (self.cfg.loss.n_critic if self.D is not None else 0)  # critic batches too
            draw, left = self.next_batch, max(1, self.steps_per_epoch * per_step // 2)

            def next_batch_then_fail():
                nonlocal left
                left -= 1
                if left < 0:
                    raise RuntimeError(f"injected fault in epoch {epoch} ({claimed})")
                return draw()

            self.next_batch = next_batch_then_fail  # this attempt's trainer only: a retry builds a new one
        return train_one_epoch(self, progress)

    Trainer.train_one_epoch = with_faults


def main() -> int:
    import ray

    init = ray.init

    def init_with_faults(*args, runtime_env=None, **kwargs):
        env = dict(runtime_env or {})
        env["worker_process_setup_hook"] = f"{__name__ if __name__ != '__main__' else 'faults'}.install"
        env["env_vars"] = {**env.get("env_vars", {}), FAULTS_ENV: os.environ[FAULTS_ENV]}
        return init(*args, runtime_env=env, **kwargs)

    ray.init = init_with_faults
    from tuner.run import main as run

    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
