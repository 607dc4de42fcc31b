"""What `tuner.run` shows a person: one live table of the trials, one line per trial end.

Ray's own console output (config and result boxes per trial, a checkpoint line per epoch,
hints) is for `--verbose`. Without it, Ray's status table goes to `<study>.log` in the storage
folder (the working directory for an object store) every 30 s, each trial's own output to
`stdout`/`stderr` in its trial folder, and the terminal gets `Progress`: the table redrawn in place
(a terminal) or nothing but the trial-end lines (a log file, CI), whose wording comes from
`tuner.outcome`, as everywhere.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, TextIO

from ray.tune import Callback, CLIReporter

from tuner.outcome import INTERRUPTED, Outcome, trial_outcome

REDRAW_S = 0.5


@dataclass
class Row:
    trial_id: str
    params: dict[str, Any]
    status: str = "running"
    epoch: int = 0
    value: float = math.nan  # this epoch's validation metric
    score: float = math.nan  # the trial's score (best so far)


def short_name(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def fmt_value(v: Any) -> str:
    """A sampled value as the console prints it: in the table, the trial-end lines and the summary."""
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def fmt_score(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.4f}"


@dataclass
class Progress(Callback):
    """A Tune callback that keeps one row per trial and prints it as a table."""

    metric: str  # e.g. auc_roc: `val_<metric>` is shown for the epoch
    score: str  # the trial's score key (tuner.outcome.score_key)
    max_epochs: int
    live: bool | None = None  # redraw in place; None: when stdout is a terminal
    rows: dict[str, Row] = field(default_factory=dict)
    _drawn: int = 0  # lines of the table on screen
    _last: float = 0.0

    def __post_init__(self):
        if self.live is None:
            self.live = sys.stdout.isatty()

    @property
    def out(self) -> TextIO:
        # the table is drawn on the terminal only: the study's log (tee) gets the lines
        return getattr(sys.stdout, "terminal", sys.stdout)

    def __getstate__(self) -> dict[str, Any]:
        # Tune keeps callbacks in its experiment state: a resumed study starts a fresh table, on
        # whatever its stdout is then
        return {**self.__dict__, "rows": {}, "_drawn": 0, "live": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def _row(self, trial) -> Row:
        return self.rows.setdefault(trial.trial_id, Row(trial.trial_id, dict(trial.config)))

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self._row(trial)
        self._draw()

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        row = self._row(trial)
        row.params = dict(trial.config)  # PBT changes them
        row.epoch = int(result.get("epoch", row.epoch))
        row.value = float(result.get(f"val_{self.metric}", math.nan))
        row.score = float(result.get(self.score, row.score))
        self._draw()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._end(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._end(trial, failed=True)

    def on_experiment_end(self, trials: list, **info) -> None:
        # Trials the fit's end stopped end without Tune's on_trial_complete: a spent time budget's, or Ctrl-C's,
        # which Ray saved still to run before it stopped them, as the driver tells them apart (its summary too)
        untold = [t for t in trials if t.trial_id in self.rows and self.rows[t.trial_id].status == "running"
                  and t.last_result]
        waiting = left_to_resume(untold[0]) if untold else {}
        for t in untold:
            if t.trial_id in waiting:
                self._end(t, failed=False, outcome=Outcome(INTERRUPTED, waiting[t.trial_id]))
            else:
                self._end(t, failed=False, stopped=True)
        self._draw(force=True)

    def _end(self, trial, failed: bool, stopped: bool = False, outcome: Outcome | None = None) -> None:
        outcome = outcome or trial_outcome(trial, failed, self.max_epochs, stopped)
        row = self._row(trial)
        row.status = outcome.label
        best = f"{self.score} {fmt_score(row.score)}" if math.isfinite(row.score) else "no score"
        self._say(f"trial {trial.trial_id} {outcome}: {best} ({self._params(row)})")

    def _params(self, row: Row) -> str:
        return ", ".join(f"{short_name(k)}={fmt_value(v)}" for k, v in row.params.items())

    def _say(self, line: str) -> None:
        """A line above the table (the table is drawn again below it)."""
        self._erase()
        print(line, flush=True)
        self._draw(force=True)

    def table(self) -> list[str]:
        keys = list(dict.fromkeys(k for r in self.rows.values() for k in r.params))
        head = ["trial", "status", "epoch", f"val {self.metric}", "best", *map(short_name, keys)]
        body = [[r.trial_id, r.status, f"{r.epoch}/{self.max_epochs}", fmt_score(r.value), fmt_score(r.score),
                 *(fmt_value(r.params.get(k, "")) for k in keys)] for r in self.rows.values()]
        widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
        lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in [head, *body]]
        cols = shutil.get_terminal_size((120, 40)).columns
        return [ln[: cols - 1] for ln in lines]

    def _erase(self) -> None:
        if self.live and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")  # up to the table's first line, clear to the end
            self._drawn = 0

    def _draw(self, force: bool = False) -> None:
        if not self.live or not self.rows or (not force and time.monotonic() - self._last < REDRAW_S):
            return
        self._erase()
        lines = self.table()
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self._drawn, self._last = len(lines), time.monotonic()


def left_to_resume(trial) -> dict[str, int]:
    """{trial id: epoch} of the trials the study's saved state leaves to a resume (tuner.resume.unfinished_trials),
    read from the storage of `trial`'s study; Ray saved it before it ends the experiment's callbacks."""
    from tuner.resume import unfinished_trials

    storage = trial.storage
    try:
        return unfinished_trials(storage.storage_filesystem, storage.experiment_fs_path)
    except (OSError, ValueError, KeyError) as e:  # the console's word only: the driver's summary reads it again
        logging.getLogger(__name__).warning("could not read the study's saved state: %s", e)
        return {}


def quiet() -> None:
    """What else would print to the terminal during a study, off: set before Ray and Tune start."""
    import optuna

    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's legacy output engine honours our reporter and callbacks
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created ..." per study
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow database tables"


class LogFileReporter(CLIReporter):
    """Ray's status table (trials, their state, the chosen columns), appended to a file."""

    def __init__(self, path: Path, metric: str, score: str, params: list):
        # Ray looks each column up in the best trial's config: a conditional key can be absent there
        columns = {p.key: short_name(p.key) for p in params if not p.when}
        super().__init__(metric_columns={"epoch": "epoch", f"val_{metric}": f"val {metric}", score: "best"},
                         parameter_columns=columns, max_report_frequency=30,
                         print_intermediate_tables=True, sort_by_metric=False)
        self.path = path

    def report(self, trials: list, done: bool, *sys_info: dict) -> None:
        # Ray's own sort_by_metric compares the scores as they are and raises on two trials that ended
        # before their first epoch (a time budget stops them; a study crashed at its end on it): the
        # trials are ranked here instead, best first (every score is higher-is-better), unscored last.
        def rank(trial) -> tuple[bool, float]:
            value = trial.last_result.get(self._metric) if self._metric else None
            return value is None, -value if value is not None else 0.0

        with self.path.open("a") as f:
            f.write(self._progress_str(sorted(trials, key=rank), done, *sys_info) + "\n")


@dataclass
class Teed:
    reader_gone: bool = False  # the reader of the study's output closed the pipe: the study was stopped for it


@contextmanager
def tee(path: Path) -> Iterator[Teed]:
    """What the study prints goes to the terminal and is appended to `path` (the study's log)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    teed = Teed()
    with path.open("a") as log:
        streams = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = (Tee(s, log, teed) for s in streams)
        try:
            yield teed
        finally:
            sys.stdout, sys.stderr = streams


class Tee:
    def __init__(self, terminal, log, teed: Teed | None = None):
        self.terminal, self.log, self.teed = terminal, log, teed or Teed()

    def write(self, text: str) -> int:
        self.log.write(text)
        try:
            return self.terminal.write(text)
        except BrokenPipeError:
            self._reader_gone()
            return len(text)

    def flush(self) -> None:
        self.log.flush()
        try:
            self.terminal.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        """The reader of the output went (`| head`, a pager quit). The error met inside a Tune callback was Ray's to
        log (a traceback for each trial that ended after) and ended no trial in order; now the study stops as Ctrl-C
        stops it, its trials left to a resume, and what it says from then on goes to its log alone (the terminal's
        descriptor at /dev/null, for whatever else writes to it)."""
        os.dup2(os.open(os.devnull, os.O_WRONLY), self.terminal.fileno())
        if not self.teed.reader_gone:
            self.teed.reader_gone = True
            if callable(signal.getsignal(signal.SIGINT)):  # Tune's in a fit (it stops in order), Python's outside
                signal.raise_signal(signal.SIGINT)
            else:  # ignored (a job started in the background) or the OS's: the stop is ours, not a Ctrl-C's
                raise KeyboardInterrupt

    def isatty(self) -> bool:
        return self.terminal.isatty()

    def __getattr__(self, name: str):
        return getattr(self.terminal, name)
