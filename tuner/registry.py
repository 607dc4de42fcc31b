"""Model Registry: the best trial's generator becomes a version, and the gate decides the champion.

The candidate was chosen on validation; here the test split is scored for the first time (tuner.run's
pre-flight only checked that its files read), to score exactly the logged model users will load, each
photograph brought to the scale the model was trained at as `tuner.predict` brings it (`vgan.scale`). The new
version is aliased `challenger`. It becomes `champion` when there is none, or when, scored now on the same
test images as the champion (same dataset, same test-split fingerprint), it beats the champion's pooled test
score by `promote_margin` and a paired bootstrap over the test images (per-image gains, seeded) puts the mean
gain above 0 at `promote_confidence`. The score is the metric the study chose its trials on
(`train.select_metric`: AUC-ROC by default, clDice for a study after the vessels' topology, thin-vessel AUC-ROC
for one after the capillaries). A champion
scored on other images is never compared with: the version stays challenger, with the reason tagged.

The gate's evidence stays with the version: each model's test scores as `vgan.evaluate` writes them
(pooled and per image), on the version's run under `registry/NAME/vN/` (`test.json`, and
`champion-vM-test.json` for the champion the gate scored), named by the version's tags `test_evaluation`
and `champion_test_evaluation`, so `python -m vgan.compare` of the two gives the gate's interval again
(or any other metric's, or one with a margin).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tuner.tracking import UNKNOWN, code_tags, split_dataset, use_tracking_uri
from vgan.cli import json_text
from vgan.config import Config
from vgan.data import FOV_ESTIMATED, Split, fov_source, load_split, load_train_val, split_fingerprint
from vgan.metrics import CLDICE, DISPLAY_NAMES, INTERVALS, POOLED_BY_IMAGE, SELECTABLE, bootstrap_interval
from vgan.scale import AUTO, recorded_fov, scaled_predictions

CHALLENGER, CHAMPION = "challenger", "champion"
AUC_ROC = "auc_roc"  # the gate's metric unless a study selects on another
DECISION = "decision"  # a registration's last write: a version without it was left unfinished, and a resume ends it
HINT_NAMES = 10  # registered models an error names at most


@dataclass(frozen=True)
class Gate:
    margin: float = 0.0  # of the pooled test `metric`, which the challenger must gain
    confidence: float = 0.95  # of the bootstrap interval of the mean per-image gain, which must lie above 0
    seed: int = 0
    metric: str = AUC_ROC  # one that may select (vgan.metrics.SELECTABLE): the study's train.select_metric

    def __post_init__(self):
        if self.metric not in SELECTABLE:
            raise ValueError(f"Gate.metric {self.metric!r}: one of {', '.join(SELECTABLE)}")


@dataclass
class Scores:
    """A model on a test split, scored once as `vgan.evaluate` scores maps: its pooled metrics, read from `record`
    (vgan.evaluate's metrics.json of the maps, each image's row in it: the evidence the registry keeps, from which
    vgan.compare gives the gate's interval again)."""

    metrics: dict[str, float]
    record: dict[str, Any]

    def per_image(self, metric: str) -> np.ndarray:
        """Each image's `metric` in the split's order (the gate's pairs); NaN where an image has none: AUCs where its
        FOV holds one class only, clDice where it has no labelled vessel. Its labels decide, so the same images
        lack it for any model, and vgan.compare leaves them out as the gate does."""
        return np.array([np.nan if row[metric] is None else row[metric] for row in self.record["per_image"]], float)


def gate_tags(metric: str) -> tuple[str, str, str]:
    """The version tags of a gate's figures on `metric`: (champion's pooled score, pooled gain, per-image gain;
    the last also with `_interval`). AUC-ROC's keep the names they had before the gate took other metrics."""
    per_image = "per_image_auc" if metric == AUC_ROC else f"per_image_{metric}"
    return f"champion_test_{metric}", f"test_{metric}_gain", f"{per_image}_gain"


@dataclass
class Comparison:
    champion_version: str
    champion_score: float  # pooled test `metric`, scored now
    challenger_score: float
    gain: float  # pooled challenger - champion
    mean_gain: float  # of the per-image gains
    interval: tuple[float, float]  # bootstrap interval of mean_gain at the gate's confidence
    images: int = 0  # the pairs: the test images with a per-image `metric`
    metric: str = AUC_ROC

    @property
    def tags(self) -> dict[str, str]:
        champion, gain, per_image = gate_tags(self.metric)
        return {"champion_version": self.champion_version, "gate_metric": self.metric,
                champion: repr(self.champion_score), gain: repr(self.gain), per_image: repr(self.mean_gain),
                f"{per_image}_interval": f"[{self.interval[0]:.6f}, {self.interval[1]:.6f}]"}


@dataclass
class Registration:
    name: str
    version: str
    test_metrics: dict[str, float]
    promoted: bool
    reason: str
    comparison: Comparison | None = None
    test_fov: str = "masks"  # where the test split's FOV masks came from (vgan.data.fov_source)
    evidence: dict[str, str] = field(default_factory=dict)  # the gate's evaluations: version tag -> runs:/ URI
    test_intervals: dict[str, list[float]] = field(default_factory=dict)  # vgan.evaluate's, over the test images

    def test_figure(self, metric: str) -> str:
        """A test figure as the registration says it: with its interval over the test images, where it has one."""
        lo_hi = self.test_intervals.get(metric)
        return f"{self.test_metrics[metric]:.4f}" + (f" [{lo_hi[0]:.4f}, {lo_hi[1]:.4f}]" if lo_hi else "")


def interval_metrics(intervals: dict[str, list[float]], confidence: float | None) -> dict[str, float]:
    """The test figures' intervals over the test images as MLflow metrics: test_auc_roc_ci95_low and _high..."""
    if not intervals or confidence is None:
        return {}
    level = f"ci{round(confidence * 100)}"
    return {f"test_{k}_{level}_{end}": v
            for k, lo_hi in intervals.items() for end, v in zip(("low", "high"), lo_hi, strict=True)}


def estimated_note(fov: str) -> str:
    """What a test score says of its FOV masks: only estimated ones (not the literature's protocol) are said."""
    return f" ({FOV_ESTIMATED})" if fov == "estimated" else ""


def scores_of(probs: torch.Tensor, split: Split, threshold: float = 0.5) -> Scores:
    """`scores_of_maps` of probabilities (N, 1, H, W) of a split's images."""
    return scores_of_maps([split.own(i, p[0]).numpy() for i, p in enumerate(probs)], split, threshold)


@torch.no_grad()
def score_model(model, split: Split, threshold: float = 0.5, trained_fov: float | None = None) -> Scores:
    """A loaded model (RGB [0,1] in, probabilities out), one image at a time, on a whole split, each image
    scored at its own size. `trained_fov`: the FOV diameter the model was trained at, which each image is
    resized to first as `tuner.predict` does (`vgan.scale`; within the tolerance it is used as it is, the
    literature's protocol); None: every image as it is."""
    maps, _ = scaled_predictions(model, trained_fov, split, 1, AUTO)
    return scores_of_maps(maps, split, threshold)


def scores_of_maps(maps: list[np.ndarray], split: Split, threshold: float = 0.5) -> Scores:
    """Each image's map (H, W) at its own size, scored as `vgan.evaluate` scores it (pooled, and each image's)."""
    from vgan.evaluate import pooled_metrics, score_maps

    record, _, _ = score_maps(maps, split, threshold, each=True)
    return Scores(pooled_metrics(record), record)


def evaluation_record(scores: Scores, dataset: str, fov: str, model_uri: str) -> dict[str, Any]:
    """A model's test scores as `vgan.evaluate` writes its metrics.json (pooled, and `per_image`): what
    `vgan.compare` pairs."""
    return {**scores.record, "dataset": dataset, "fov": fov, "source": model_uri, "threshold_source": "fixed"}


def score_logged(model_uri: str, split: Split) -> Scores:
    """`score_model` of a logged generator, at the scale it records (none for one logged before it did)."""
    from tuner.flavor import load_program

    model = load_program(model_uri)
    return score_model(model, split, trained_fov=recorded_fov(model))


def compare(champion_version: str, champion: Scores, challenger: Scores, gate: Gate) -> tuple[bool, str, Comparison]:
    """The gate on two models scored on the same test images: (promote?, reason, comparison)."""
    m, name = gate.metric, DISPLAY_NAMES[gate.metric]
    gains = challenger.per_image(m) - champion.per_image(m)
    gains = gains[~np.isnan(gains)]
    if not gains.size:
        raise ValueError(f"no test image has a per-image {name} (AUCs need vessel and background pixels inside an "
                         "image's FOV, clDice a labelled vessel): the gate has no pair to compare")
    c = Comparison(champion_version, champion.metrics[m], challenger.metrics[m],
                   challenger.metrics[m] - champion.metrics[m], float(gains.mean()),
                   bootstrap_interval(gains, gate.confidence, gate.seed), len(gains), m)
    total = len(challenger.record["per_image"])
    over = f"{len(gains)} images" if len(gains) == total else \
        f"{len(gains)} of the {total} images, {total - len(gains)} without a per-image {name}"
    figures = (f"test {name} {c.challenger_score:.4f} vs champion v{champion_version}'s {c.champion_score:.4f} "
               f"(gain {c.gain:+.4f}; per-image gain {c.mean_gain:+.4f}, {gate.confidence:.0%} interval "
               f"[{c.interval[0]:+.4f}, {c.interval[1]:+.4f}] over {over})")
    if c.gain <= gate.margin:
        return False, f"kept champion v{champion_version}: {figures}; the gain is not above the margin {gate.margin}", c
    if c.interval[0] <= 0:
        return False, f"kept champion v{champion_version}: {figures}; the interval reaches 0: could be noise", c
    return True, f"promoted over v{champion_version}: {figures}", c


def versions_of(client: MlflowClient, name: str) -> list:
    """The registered model's versions (MLflow's ModelVersion), as many as one search returns (10,000)."""
    return client.search_model_versions(f"name = '{name}'")


def registered_version(client: MlflowClient, name: str, model_uri: str):
    """The version already made from this logged model (MLflow's ModelVersion), None if none: a resumed study must
    not register it twice. One whose registration ended (DECISION tagged) first; else the newest, which a driver
    stopped after making it (killed, Ctrl-C, or an error scoring the champion) left for the resume to end."""
    try:
        made = [v for v in versions_of(client, name) if v.source == model_uri]
    except MlflowException:
        return None
    ended = [v for v in made if DECISION in v.tags]
    return ended[0] if ended else max(made, key=lambda v: int(v.version), default=None)


def register_candidate(uri: str, name: str, model_uri: str, run_id: str, cfg: Config,
                       val_metrics: dict[str, float], gate: Gate, study: str, what: str | None = None,
                       tags: dict[str, str] | None = None, unfinished: str | None = None) -> Registration:
    """`what`: the candidate, for the version's description (default: the study's best trial); `tags`: more
    tags of the version; `unfinished`: the version of this model a stopped driver made and did not end
    (`registered_version`), ended now in place of a new one."""
    # MLflow resolves a models:/ URI through its global store, in load_model and also inside
    # the registry's create_model_version: scope the whole registration to this study's store.
    with use_tracking_uri(uri):
        return _register(MlflowClient(uri), name, model_uri, run_id, cfg, val_metrics, gate, study,
                         what or f"Best trial of study {study}", tags or {}, unfinished)


def _register(client: MlflowClient, name: str, model_uri: str, run_id: str, cfg: Config,
              val_metrics: dict[str, float], gate: Gate, study: str, what: str,
              more_tags: dict[str, str], unfinished: str | None) -> Registration:
    import mlflow
    import mlflow.pytorch

    train, val = load_train_val(cfg.data)
    test = load_split(cfg.data, "test")
    test_hash, test_fov = split_fingerprint(test), fov_source(cfg.data, "test")
    challenger = score_logged(model_uri, test)

    try:
        client.create_registered_model(name, description=(
            f"V-GAN retinal-vessel segmenters trained on {cfg.data.dataset} by vgan-tune. Load the serving "
            f"one with mlflow.pytorch.load_model('models:/{name}@champion'): RGB float32 (N, 3, H, W) in [0, 1], "
            "H and W of at least 2**model.depth (smallest_side_px in the MLmodel metadata) -> vessel "
            "probabilities (N, 1, H, W); mlflow.pyfunc and `mlflow models serve` also take "
            "(H, W, C) and 8-bit arrays, and segment each photograph at the training scale (params "
            "{\"scale\": \"auto\"}, or a factor). Aliases: champion (what users load), challenger (the "
            "newest candidate)."))
    except MlflowException:
        pass  # exists already
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    given = challenger.record.get(INTERVALS, {})
    intervals = {k: given[k] for k in POOLED_BY_IMAGE if k in given}
    if unfinished is None:
        # the test metrics go on the logged model, linked to the test split: the version page shows them, and
        # the runs' table sorts by them, their intervals' ends too (how low a figure may be is a column to sort)
        mlflow.log_metrics({**{f"test_{k}": v for k, v in challenger.metrics.items()},
                            **interval_metrics(intervals, given.get("confidence"))},
                           run_id=run_id, model_id=model_id, dataset=split_dataset(cfg, test, "test"))
        # A tracking server wants the logged model's id with a models:/<model_id> source (SQLite does not check).
        mv = client.create_model_version(name, model_uri, run_id=run_id, model_id=model_id)
    else:  # made, its test metrics logged before it, by a driver that stopped before the decision
        mv = client.get_model_version(name, unfinished)
    if model_id is not None:
        link_version(client, model_id, name, mv.version)
    tags: dict[str, Any] = {
        "study": study, "git_commit": UNKNOWN, **code_tags(), "dataset": cfg.data.dataset,
        "data_split_hash": split_fingerprint(train, val, test), "test_split_hash": test_hash,
        "test_fov": test_fov, **more_tags,
    }  # metrics are on the logged model (validation at the trial's end, test here), not in tags
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    champion = None
    if unfinished is not None and alias_version(client, name, CHAMPION) == str(mv.version):
        # the gate promoted it, and its figures were tagged before the alias was set
        promoted, reason, comparison = True, mv.tags.get("promotion", "promoted before its driver stopped"), None
    else:
        promoted, reason, comparison, champion = _gate(client, name, str(mv.version), cfg.data.dataset, test_hash,
                                                       test, challenger, gate)
    tags.update(promotion=reason, **(comparison.tags if comparison else {}))
    # the gate's evidence, as vgan.evaluate writes it: `vgan.compare` of the two gives its interval again
    def kept(scores: Scores, uri: str, path: str) -> str:
        client.log_text(run_id, json_text(evaluation_record(scores, cfg.data.dataset, test_fov, uri)), path)
        return f"runs:/{run_id}/{path}"

    folder = f"registry/{name}/v{mv.version}"
    evidence = {"test_evaluation": kept(challenger, model_uri, f"{folder}/test.json")}
    if champion is not None:
        was = comparison.champion_version
        evidence["champion_test_evaluation"] = kept(champion, f"models:/{name}/{was}",
                                                    f"{folder}/champion-v{was}-test.json")
    tags.update(evidence)
    for k, v in tags.items():
        client.set_model_version_tag(name, mv.version, k, str(v))
    reg = Registration(name, str(mv.version), challenger.metrics, promoted, reason, comparison, test_fov, evidence,
                       intervals)
    chosen_on = cfg.train.select_metric
    client.update_model_version(name, mv.version, description=(
        f"{what} on {cfg.data.dataset} (chosen on validation {DISPLAY_NAMES[chosen_on]} "
        f"{val_metrics.get(chosen_on, float('nan')):.4f}). Test{estimated_note(test_fov)}: AUC-ROC "
        f"{reg.test_figure('auc_roc')}, AUC-PR {reg.test_figure('auc_pr')}, F1 {reg.test_figure('f1')}"
        f", clDice {reg.test_figure(CLDICE)} at 0.5"
        f"{' (95 % intervals over the test images)' if intervals else ''}. {reason[0].upper() + reason[1:]}. "
        "Trainer config (an ensemble's: each member's): config.yaml in the model."))
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, mv.version)
    # last: a driver stopped before it (killed, Ctrl-C, an error) leaves a version its resume ends
    client.set_model_version_tag(name, mv.version, DECISION, "promoted" if promoted else "not promoted")
    return reg


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def link_version(client: MlflowClient, model_id: str, name: str, version: str) -> None:
    """List the version on its logged model (tag mlflow.modelVersions), as `mlflow.register_model` and a tracking
    server's create_model_version do and a local store's does not: the model's page in the UI reads its versions
    there, and without them said "Not registered" beside a "Register model" button that would make the champion
    a second version. A server has listed it already, its number as an integer."""
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    linked = json.loads(client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS) or "[]")
    if (name, str(version)) not in {(v.get("name"), str(v.get("version"))) for v in linked}:
        entry = {"name": name, "version": int(version)}
        client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps([*linked, entry])})


def _gate(client: MlflowClient, name: str, version: str, dataset: str, test_hash: str, test: Split,
          challenger: Scores, gate: Gate) -> tuple[bool, str, Comparison | None, Scores | None]:
    """(promote?, reason, comparison, the champion's scores) where there is a champion to compare with."""
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return True, "first champion", None, None
    theirs = (champion.tags.get("dataset"), champion.tags.get("test_split_hash"))
    if theirs != (dataset, test_hash):
        return False, (f"not compared with champion v{champion.version}: it was scored on {theirs[0]} test images "
                       f"{theirs[1]}, this version on {dataset} {test_hash}; promote by hand "
                       f"(python -m tuner.promote --name {name} --version {version}) if it should serve "
                       "instead"), None, None
    scores = score_logged(f"models:/{name}/{champion.version}", test)
    return *compare(str(champion.version), scores, challenger, gate), scores


def promote(client: MlflowClient, name: str, version: str) -> str:
    """Make `version` the champion by hand (`python -m tuner.promote`); returns what it overrode."""
    mv = client.get_model_version(name, version)  # raises if it does not exist
    try:
        before = client.get_model_version_by_alias(name, CHAMPION)
        was = f"champion was v{before.version}"
    except MlflowException:
        was = "there was no champion"
    gate = mv.tags.get("promotion", "no gate decision recorded")
    overrode = f"{was}; the gate had said: {gate}"
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promotion", f"promoted by hand ({overrode})")
    client.set_model_version_tag(name, version, DECISION, "promoted by hand")
    return overrode


def registry_hint(client: MlflowClient, name: str) -> str:
    """What the store holds, for an error about a registered model it lacks, or a version or alias of one: the
    model's versions and aliases, else the models registered there, else that there are none. Best effort: ""
    where the store cannot say (the error it goes with is the news)."""
    try:
        try:
            model = client.get_registered_model(name)
        except MlflowException:
            names = sorted(m.name for m in client.search_registered_models(max_results=100))
            if not names:
                return "nothing is registered there yet (a study registers its best generator: python -m tuner.run)"
            others = " and others" if len(names) > HINT_NAMES else ""
            return f"registered there: {', '.join(names[:HINT_NAMES])}{others}"
        versions = [int(v.version) for v in versions_of(client, name)]
    except Exception:  # noqa: BLE001 - the store could not say; the error this goes with still stands
        return ""
    aliases = ", ".join(f"@{a} (version {v})" for a, v in sorted(model.aliases.items())) or "none"
    held = f"{'version' if len(versions) == 1 else 'versions'} {spans(versions)}" if versions else "no version"
    return f"{name} has {held}; aliases: {aliases}"


def spans(numbers: list[int]) -> str:
    """1, 2, 3, 5 -> '1-3, 5'."""
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs) or "none"
