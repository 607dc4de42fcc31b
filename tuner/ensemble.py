"""`mlflow.ensemble_top: K`: the registry's candidate is the mean map of a study's k best trials, k <= K
chosen on validation.

Trials trained apart err apart, so the mean of their maps is often a better map than the best one's
(`vgan.ensemble`). Each trial's best epoch was chosen on the validation split, and so is the ensemble:
the K best trials by the study's score that logged a model (and were validated on the best trial's
images, at its FOV scale) are each run on the validation split, the mean map of the first k scored there
for k = 1..K, and the k with the best validation `train.select_metric` (ties: the fewer) is the
candidate. The test split is not read here: the registry scores the candidate on it, as it scores a
single trial's generator. An ensemble of k > 1 is logged as one model (`tuner.flavor`: one exported
program, loaded and served as one generator is) on a run of its own in the study, tagged with its
members; a resumed study that chooses the same members reuses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

from tuner.flavor import load_program
from tuner.tracking import split_dataset, use_tracking_uri
from vgan.config import Config
from vgan.data import Split, load_train_val
from vgan.ensemble import check_one_validation_split, running_means
from vgan.errors import ConfigError
from vgan.models import Generator, ModelConfig
from vgan.scale import AUTO, recorded_fov, scaled_predictions

if TYPE_CHECKING:
    from tuner.space import SearchSpace
    from tuner.tracking import Study

MEMBERS_TAG, MODEL_TAG = "ensemble_members", "ensemble_model_uri"  # on the study's run and the ensemble's
PREFIX = "generator."  # the state of a single generator's program (VesselSegmenter.generator)


@dataclass
class Trial:
    """A trial that may be a member: its logged best generator and the trainer config it trained with."""

    trial_id: str
    run_id: str
    model_uri: str
    cfg: Config


@dataclass
class Selection:
    trials: list[Trial]  # the members considered, best score first
    scores: list[dict[str, float]]  # validation metrics of the mean map of the first k, k = 1..len(trials)
    k: int  # how many the candidate takes
    val: Split
    skipped: list[str] = field(default_factory=list)  # why a better-ranked trial is not among them
    programs: list[nn.Module] = field(default_factory=list, repr=False)  # each trial's loaded program

    @property
    def members(self) -> list[Trial]:
        return self.trials[: self.k]

    @property
    def member_ids(self) -> str:
        return ",".join(t.trial_id for t in self.members)


def top_trials(client, rows: list[dict[str, Any]], space: SearchSpace, count: int) -> tuple[list[Trial], list[str]]:
    """Up to `count` trials, best score first (rows as `tuner.run.trials_table` ranks them), each with a logged
    model; the trials passed over, with the reason."""
    from tuner.run import sampled

    trials, skipped = [], []
    for row in rows:
        if len(trials) == count or math.isnan(row[space.score]):
            break
        run_id = row.get("mlflow_run_id")
        uri = client.get_run(run_id).data.tags.get("best_model_uri") if run_id else None
        if uri is None:
            skipped.append(f"trial {row['trial_id']}: logged no model")
            continue
        trials.append(Trial(row["trial_id"], run_id, uri, space.trainer_config(sampled(row))))
    return trials, skipped


def select(uri: str, trials: list[Trial], metric: str, skipped: list[str] | None = None) -> Selection:
    """Each trial's generator on the first one's validation split, and the validation metrics of the mean
    map of the first k; the k with the best `metric`. A trial validated on other images or trained at another
    FOV scale than the first is passed over (and said so)."""
    from vgan.evaluate import pooled_metrics, score_maps

    _, val = load_train_val(trials[0].cfg.data)
    kept, programs, skipped = [], [], list(skipped or [])
    fov = None

    def runs():
        nonlocal fov
        for t in trials:
            try:
                check_one_validation_split([trials[0].cfg.data, t.cfg.data], [f"trial {trials[0].trial_id}",
                                                                              f"trial {t.trial_id}"])
            except ConfigError as e:
                skipped.append(str(e))
                continue
            with use_tracking_uri(uri):
                program = load_program(t.model_uri)
            if kept and recorded_fov(program) != fov:
                skipped.append(f"trial {t.trial_id}: trained at a FOV of {recorded_fov(program)} px where trial "
                               f"{kept[0].trial_id} was at {fov} (an ensemble resizes a photograph once for all)")
                continue
            fov = recorded_fov(program)
            kept.append(t)
            programs.append(program)
            maps, _ = scaled_predictions(program, fov, val, 1, AUTO)
            yield maps

    scores = [pooled_metrics(score_maps(maps, val, 0.5)[0]) for maps in running_means(runs())]
    best = max(range(len(scores)), key=lambda i: (scores[i][metric], -i))
    return Selection(kept, scores, best + 1, val, skipped, programs)


def generator_of(program: nn.Module, cfg: ModelConfig) -> Generator:
    """The generator behind a single generator's loaded program (its weights and buffers)."""
    g = Generator(cfg)
    g.load_state_dict({k.removeprefix(PREFIX): v for k, v in program.state_dict().items() if k.startswith(PREFIX)})
    return g.eval()


def log_ensemble(study: Study, sel: Selection) -> tuple[str, str]:
    """The chosen members as one logged model, on a run of its own under the study's: (run id, model URI).
    A study that logged these members before (a resumed one) gets that model back."""
    import mlflow

    from tuner import flavor

    client, info = study.client, study.info
    # its run's best_model_uri is the logging's marker: a run of these members without one was being logged by
    # a driver that stopped (it is closed KILLED); one with it is the model, whichever later write was cut short
    runs = client.search_runs([info.experiment_id], f"tags.mlflow.parentRunId = '{info.parent_run_id}' and "
                              f"tags.kind = 'ensemble' and tags.{MEMBERS_TAG} = '{sel.member_ids}'")
    logged = next((r for r in runs if "best_model_uri" in r.data.tags), None)
    for r in runs:
        if r.info.status == "RUNNING":
            client.set_terminated(r.info.run_id, "FINISHED" if r is logged else "KILLED")
    if logged is not None:
        model_uri = logged.data.tags["best_model_uri"]
        study.set_tags({MEMBERS_TAG: sel.member_ids, MODEL_TAG: model_uri})
        return logged.info.run_id, model_uri
    name = f"{info.study_name}-ensemble-top{sel.k}"
    run = client.create_run(info.experiment_id, run_name=name, tags={
        "mlflow.parentRunId": info.parent_run_id, "study": info.study_name, "kind": "ensemble",
        MEMBERS_TAG: sel.member_ids, "member_model_uris": ",".join(t.model_uri for t in sel.members)})
    run_id = run.info.run_id
    generators = [generator_of(p, t.cfg.model) for p, t in zip(sel.programs[: sel.k], sel.members, strict=True)]
    config = {"ensemble": [{"trial_id": t.trial_id, "model_uri": t.model_uri, "config": t.cfg.to_dict()}
                           for t in sel.members]}
    metrics = {f"val_{k}": v for k, v in sel.scores[sel.k - 1].items()}
    with use_tracking_uri(info.uri):
        model = flavor.log_model(generators, name, run_id, config, tags={MEMBERS_TAG: sel.member_ids})
        mlflow.log_metrics(metrics, run_id=run_id, model_id=model.model_id,
                           dataset=split_dataset(sel.members[0].cfg, sel.val, "val"))
    client.set_tag(run_id, "best_model_uri", model.model_uri)
    client.set_terminated(run_id)
    study.set_tags({MEMBERS_TAG: sel.member_ids, MODEL_TAG: model.model_uri})
    return run_id, model.model_uri


def describe(sel: Selection, metric: str) -> list[str]:
    """The console's lines: each k's validation score, and what was chosen."""
    lines = [f"ensemble: validation {metric} of the mean map of the best k trials (scored here):"]
    for k, (t, s) in enumerate(zip(sel.trials, sel.scores, strict=True), 1):
        lines.append(f"  k={k}  {s[metric]:.4f}  {'trial' if k == 1 else '+ trial'} {t.trial_id}"
                     + ("  <- the candidate" if k == sel.k else ""))
    lines += [f"  passed over: {why}" for why in sel.skipped]
    if sel.k == 1:
        lines.append("the candidate is the best trial alone: no mean of more scored higher on validation")
    return lines
