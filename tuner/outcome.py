"""What a trial scored and how it ended: decided here, once.

The searcher (what Optuna is told), the MLflow projection (status tags, run state), the
study summary and `tuner.replay` all ask these functions, so every view agrees.

Score: the best validation `train.select_metric` a trial reached so far, reported with every
epoch as `best_val_<metric>` (the epoch whose generator is kept and registered). A GAN's
validation AUC swings by points from epoch to epoch; with `tune.signal_window: k` > 1 the score
is the best so far of the mean over the last k epochs (`best_val_<metric>_mean<k>`), so one
lucky epoch does not decide. Either way it never decreases, so what ASHA compares at a rung is
what the trial can still claim. Ray's scheduler and "best trial", Optuna's trial value and the
MLflow column of that name all carry it. Every metric of `vgan.metrics` is higher-is-better, so
the mode is always "max".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

MODE = "max"
COMPLETED, PRUNED, FAILED = "completed", "pruned", "failed"
# Ended before its last epoch by the study's time budget, not by the scheduler: no judgement of its config
STOPPED = "stopped"
KILLED = "killed"  # a run a killed driver left open and no trial will continue
INTERRUPTED = "interrupted"  # its study was interrupted (Ctrl-C): it goes on from its checkpoint when resumed
ENDED = (COMPLETED, PRUNED, STOPPED, FAILED, KILLED)


def score_key(select_metric: str, window: int = 1) -> str:
    return f"best_val_{select_metric}" + (f"_mean{window}" if window > 1 else "")


@dataclass
class Signal:
    """The score of one trial, fed one validation value per epoch (state saved in its checkpoints)."""

    window: int
    recent: list[float] = field(default_factory=list)
    best: float = -math.inf

    def update(self, value: float) -> float:
        self.recent = (self.recent + [value])[-self.window:]
        if math.isfinite(value):
            self.best = max(self.best, sum(self.recent) / len(self.recent))
        return self.best


@dataclass(frozen=True)
class Outcome:
    status: str  # completed | pruned | stopped | failed
    epoch: int  # the last epoch the trial reported (0: none)
    error: str | None = None  # failed: the error's last line, or "diverged at epoch N (...)"

    @property
    def tags(self) -> dict[str, str]:
        """The child run's tags (DESIGN.md): status, plus pruned_at_epoch, stopped_at_epoch or error."""
        if self.status in (PRUNED, STOPPED):
            return {"status": self.status, f"{self.status}_at_epoch": str(self.epoch)}
        if self.status == FAILED:
            return {"status": FAILED, "error": self.error or "error"}
        return {"status": self.status}

    @property
    def label(self) -> str:
        """Short, for names: completed | pruned at epoch N | stopped at epoch N | interrupted at epoch N | failed."""
        return f"{self.status} at epoch {self.epoch}" if self.status in (PRUNED, STOPPED, INTERRUPTED) else self.status

    def name(self, trial_id: str) -> str:
        """The trial as a person reads it: its MLflow run, its logged model, its trials.csv row."""
        return f"{trial_id} {self.label}"

    def __str__(self) -> str:
        if self.status in (PRUNED, STOPPED, INTERRUPTED):
            return self.label
        if self.status == FAILED:
            return f"failed: {self.error}"
        return self.status


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else text.strip()


def decide(last: Mapping[str, Any] | None, error: str | None, max_epochs: int, stopped: bool = False) -> Outcome:
    """A trial's outcome from its last reported result and its error text (None: it raised nothing).

    A trial that ended before its last epoch without an error was stopped by the scheduler (pruned), or,
    `stopped`, by the study's time budget (tuner.search.StopWitness tells which). A diverged GAN ends its own
    trial with a result that says so (no retry)."""
    last = last or {}
    epoch = int(last.get("epoch", 0) or 0)
    if last.get("diverged"):
        return Outcome(FAILED, epoch, str(last.get("error") or f"diverged at epoch {epoch}"))
    if error:
        return Outcome(FAILED, epoch, last_line(error))
    if epoch >= max_epochs:
        return Outcome(COMPLETED, epoch)
    return Outcome(STOPPED if stopped else PRUNED, epoch)


def trial_error(trial) -> str:
    """The trial's error log as the driver just wrote it (the copy in storage is synced later
    and can still hold an earlier attempt's error)."""
    try:
        path = Path(trial.error_file) if trial.error_file else None
        if path is not None and path.is_file():
            return path.read_text()
    except OSError:
        pass
    return str(trial.get_error() or "unknown error")


def failures(trial, error: str) -> int:
    """How often the trial has failed so far, from its error log `error` (trial_error). Ray heads each
    failure there ("Failure # N (occurred at ...)"), a lost node it takes for a preemption included: that
    one its num_failures leaves out (it costs no retry of max_failures), yet the trial was restarted."""
    return max(trial.num_failures, sum(line.startswith("Failure # ") for line in error.splitlines()))


def trial_outcome(trial, failed: bool, max_epochs: int, stopped: bool = False) -> Outcome:
    """A Tune trial's outcome as Tune's callbacks see it at its end (`failed`: on_trial_error; `stopped`: the
    study's end stopped it)."""
    return decide(trial.last_result, trial_error(trial) if failed else None, max_epochs, stopped)


def result_outcome(result, max_epochs: int, stopped: bool = False) -> Outcome:
    """A trial's outcome from Tune's ResultGrid after the study (a `ray.tune.Result`: its last report, its error)."""
    return decide(result.metrics or {}, str(result.error) if result.error else None, max_epochs, stopped)
