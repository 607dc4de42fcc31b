"""A batch of `tuner.predict` recorded in MLflow (`--log`), beside the studies that made its model: which model
version made which maps, when, with what settings, and what came of it.

One run per batch in an experiment of its own (`vgan-predictions` unless named), tagged `kind: predictions` and
`model_versions` (`vgan-generator/3`: MLflow's search finds every batch a version made), the command's arguments as
params, the counts and the mean vessel fraction as metrics, and the batch's `report.csv` and `index.html` as
artifacts (the maps stay where `--out` put them: a clinic's photographs do not travel to a tracking server). A
batch stopped or broken ends its run KILLED or FAILED with the report's rows so far. One whose process was killed
outright (SIGKILL, the out-of-memory killer) could not: its run, tagged with the machine and the process that made it,
is ended KILLED with the rows it made by the next batch recorded into its folder on that machine.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from vgan.report import INDEX, REPORT

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

EXPERIMENT = "vgan-predictions"
KIND = "predictions"
VIEW = "batches"  # the experiment's runs table as one reads batches: what made them and what came of them
COLUMNS = ["tags.`model_versions`", "metrics.`images_segmented`", "metrics.`images_failed`", "metrics.`images_kept`",
           "metrics.`mean_vessel_fraction`", "metrics.`seconds_per_image`", "params.`threshold`", "params.`tta`",
           "tags.`out`"]


def this_process() -> dict[str, str]:
    """The tags that say which process makes a batch."""
    return {"host": socket.gethostname(), "pid": str(os.getpid())}


def process_gone(tags: dict[str, str]) -> bool:
    """Whether the process a batch run's tags name is gone: on this machine (another's cannot be asked), and no
    process of that id, or this one (which took the id over). A process of another user answers as alive."""
    pid = tags.get("pid", "")
    if tags.get("host") != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class BatchRun:
    def __init__(self, client: MlflowClient, run_id: str, experiment: str, view: str,
                 abandoned: Sequence[str] = ()):
        self.client, self.run_id, self.experiment, self.view = client, run_id, experiment, view
        self.abandoned = list(abandoned)  # runs of this folder's earlier batches, ended here for their dead process

    @classmethod
    def start(cls, uri: str, experiment: str, out: Path, versions: Sequence[str], weights: str | None,
              params: dict[str, Any]) -> BatchRun:
        """`versions`: the registry versions of the models (`NAME/VERSION`), where they came from the registry;
        `weights`: their digest, as report.csv gives it."""
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        from tuner.tracking import experiment_id, share_runs_view, short

        client = MlflowClient(uri)
        tags = {"kind": KIND, "out": str(out.resolve()), **({"weights": weights} if weights else {}),
                **({"model_versions": ", ".join(versions)} if versions else {}), **this_process()}
        exp_id = experiment_id(client, experiment, uri)
        view = share_runs_view(client, exp_id, VIEW, f"tags.kind = '{KIND}'", "attributes.start_time", COLUMNS)
        abandoned = cls.abandoned_in(client, exp_id, experiment, view, out)
        for earlier in abandoned:
            earlier.end(out, "KILLED")
        # The name is the table's first column: what made the batch reads there at a glance (MLflow puts tag
        # columns last, after every metric and param); the version first, as the column is narrow:
        # "maps: v3 vgan-generator 2026-12-04 19:04:12"
        made_by = [f"v{version} {name}" for name, _, version in (v.rpartition("/") for v in versions)]
        when = time.strftime("%Y-%m-%d %H:%M:%S")
        run = client.create_run(exp_id, run_name=f"{out.name}{': ' if made_by else ''}{', '.join(made_by)} {when}",
                                tags=tags)
        client.log_batch(run.info.run_id, params=[Param(k, short(v)) for k, v in params.items()])
        return cls(client, run.info.run_id, experiment, view, [r.run_id for r in abandoned])

    @classmethod
    def abandoned_in(cls, client: MlflowClient, exp_id: str, experiment: str, view: str, out: Path) -> list[BatchRun]:
        """The runs of batches into `out` left RUNNING by a process that is gone: a new batch ends them KILLED with
        the report's rows they made, before it writes a row there."""
        running = client.search_runs([exp_id], f"tags.kind = '{KIND}' and attributes.status = 'RUNNING'",
                                     max_results=1000)
        return [cls(client, r.info.run_id, experiment, view) for r in running
                if r.data.tags.get("out") == str(out.resolve()) and process_gone(r.data.tags)]

    def end(self, out: Path, status: str, summary=None) -> None:
        """Ends the run with `status` (FINISHED, FAILED, KILLED), the `vgan.predict.Summary`'s counts where the
        batch got that far, and the report (and the page, where it was written)."""
        from mlflow.entities import Metric

        if summary is not None:
            n = len(summary.written)
            counts = {"images_segmented": n, "images_failed": len(summary.failed), "images_kept": summary.kept,
                      "seconds": summary.seconds, "seconds_per_image": summary.seconds / max(n, 1)}
            if summary.vessel_fraction:
                counts["mean_vessel_fraction"] = sum(summary.vessel_fraction) / len(summary.vessel_fraction)
            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in counts.items()])
        for name in (REPORT, INDEX):
            if (out / name).is_file():
                self.client.log_artifact(self.run_id, str(out / name))
        self.client.set_terminated(self.run_id, status)
