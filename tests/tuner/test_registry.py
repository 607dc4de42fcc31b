"""The registry and its gate: champions are compared with challengers on the same test images."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY
from faults import Killed
from models import trial_with_best

from tuner.registry import CHALLENGER, CHAMPION, Gate, compare, register_candidate, scores_of
from tuner.tracking import log_best_model, use_tracking_uri
from vgan.config import DataConfig, apply_overrides
from vgan.data import load_split, load_train_val
from vgan.images import read_probability
from vgan.metrics import METRIC_NAMES


@pytest.fixture(scope="module")
def drive_test(drive_root):
    return load_split(DataConfig(dataset="drive", root=str(drive_root), crop_size=None), "test")


def vgan_maps(reference_root, split) -> torch.Tensor:
    """V-GAN's published probability maps of DRIVE's test images, (N, 1, H, W)."""
    maps = [read_probability(reference_root / "DRIVE" / f"{i}.tif") for i in split.ids]
    return torch.from_numpy(np.stack(maps))[:, None]


def test_a_clearly_better_challenger_is_promoted(reference_root, drive_test):
    """Real data: V-GAN's maps against the same maps blurred by noise (AUC-ROC ~0.02 lower)."""
    vgan = vgan_maps(reference_root, drive_test)
    noise = torch.from_numpy(np.random.default_rng(1).normal(0, 0.25, vgan.shape).astype(np.float32))
    worse = (vgan + noise).clamp(0, 1)
    promoted, reason, c = compare("1", scores_of(worse, drive_test), scores_of(vgan, drive_test), Gate(margin=0.002))
    assert promoted and reason.startswith("promoted over v1"), reason
    assert c.gain > 0.01 and c.interval[0] > 0 and c.interval[0] < c.mean_gain < c.interval[1]
    assert c.challenger_score == pytest.approx(0.9803, abs=5e-5)  # the published maps' score
    assert c.metric == "auc_roc" and c.images == 20 and "test AUC-ROC 0.980" in reason


def test_a_same_quality_challenger_is_not_promoted(reference_root, drive_test):
    """Two models of the same quality: V-GAN's maps with two independent draws of the same noise. Whichever
    is the challenger, the gain is noise and the champion stays."""
    vgan = vgan_maps(reference_root, drive_test)
    a, b = ((vgan + torch.from_numpy(np.random.default_rng(seed).normal(0, 0.1, vgan.shape).astype(np.float32)))
            .clamp(0, 1) for seed in (2, 3))
    for champion, challenger in ((a, b), (b, a)):
        promoted, reason, c = compare("1", scores_of(champion, drive_test), scores_of(challenger, drive_test),
                                      Gate(margin=0.0))
        assert not promoted and abs(c.gain) < 1e-3 and "kept champion v1" in reason, reason
        assert c.interval[0] < 0 < c.interval[1] or c.gain <= 0


def test_the_gate_compares_on_the_metric_the_study_selected_on(reference_root, drive_test, tmp_path, capsys):
    """V-GAN's maps against the same maps squared: the same order of pixels (AUC-ROC unchanged), fewer above 0.5
    (thin vessels lost: clDice lower). A study selected on AUC-ROC keeps its champion; one selected on clDice
    promotes the challenger, and vgan.compare of the two evaluations gives the gate's figures again."""
    from tuner.registry import evaluation_record
    from vgan.compare import main as compare_main
    from vgan.metrics import per_image_metrics

    vgan = vgan_maps(reference_root, drive_test)
    champion, challenger = scores_of(vgan ** 2, drive_test), scores_of(vgan, drive_test)

    kept, reason, c = compare("1", champion, challenger, Gate())
    assert not kept and abs(c.gain) < 1e-4 and "not above the margin" in reason, reason
    promoted, reason, c = compare("1", champion, challenger, Gate(metric="cldice"))
    assert promoted and reason.startswith("promoted over v1: test clDice "), reason
    assert c.metric == "cldice" and c.gain > 0.02 and c.interval[0] > 0 and c.images == 20
    assert c.challenger_score == pytest.approx(challenger.metrics["cldice"])
    rows = [per_image_metrics([drive_test.own(i, p[0]).numpy() for i, p in enumerate(maps)],
                              [drive_test.own(i, y[0]).numpy() for i, y in enumerate(drive_test.labels)],
                              [drive_test.own(i, m[0]).numpy() for i, m in enumerate(drive_test.masks)])
            for maps in (vgan ** 2, vgan)]
    gains = [b["cldice"] - a["cldice"] for a, b in zip(*rows, strict=True)]
    assert c.mean_gain == pytest.approx(np.mean(gains), abs=1e-9)
    assert c.tags == {"champion_version": "1", "gate_metric": "cldice", "champion_test_cldice": repr(c.champion_score),
                      "test_cldice_gain": repr(c.gain), "per_image_cldice_gain": repr(c.mean_gain),
                      "per_image_cldice_gain_interval": f"[{c.interval[0]:.6f}, {c.interval[1]:.6f}]"}

    files = []
    for name, scores in (("champion", champion), ("challenger", challenger)):
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(evaluation_record(scores, "drive", "masks", name)))
    capsys.readouterr()
    assert compare_main([*map(str, files), "--metrics", "cldice", "--json", str(tmp_path / "c.json")]) == 0
    again = json.loads((tmp_path / "c.json").read_text())["metrics"]["cldice"]
    assert again["gain"] == pytest.approx(c.gain, abs=1e-9) and again["mean_gain"] == pytest.approx(c.mean_gain)
    assert again["interval"] == pytest.approx(list(c.interval), abs=1e-9)


def test_the_gate_pairs_the_images_that_have_its_metric_and_says_how_many_it_left_out():
    """An image without a labelled vessel has no clDice, for any model: the gate pairs the others, as vgan.compare
    does; with no image to pair it refuses to decide."""
    from tuner.registry import Scores

    def scores(values, pooled):
        return Scores({"cldice": pooled}, {"per_image": [{"cldice": v} for v in values]})

    champion, challenger = scores([0.70, None, 0.60, 0.65], 0.65), scores([0.80, None, 0.75, 0.72], 0.76)
    promoted, reason, c = compare("1", champion, challenger, Gate(metric="cldice"))
    assert c.images == 3 and c.mean_gain == pytest.approx((0.10 + 0.15 + 0.07) / 3)
    assert "over 3 of the 4 images, 1 without a per-image clDice)" in reason, reason
    with pytest.raises(ValueError, match="no test image has a per-image clDice"):
        compare("1", scores([None], 0.0), scores([None], 0.0), Gate(metric="cldice"))


def test_a_gate_on_a_metric_no_evaluation_scores_is_refused():
    with pytest.raises(ValueError, match="Gate.metric 'dice': one of auc_roc, .*cldice, thin_auc_roc"):
        Gate(metric="dice")


@pytest.fixture
def logged_model(tmp_path):
    """The best generator logged the way the projection logs a trial's: (client, run_id, model_uri, cfg, store uri)."""
    cfg, uri, study, run_id = trial_with_best(tmp_path)
    model_uri = log_best_model(uri, run_id, tmp_path / "best", load_train_val(cfg.data)[1], cfg, "t1 completed")
    return study.client, run_id, model_uri, cfg, uri


def linked_versions(client, model_uri: str) -> list[tuple[str, str]]:
    """The registry versions a logged model's page in MLflow's UI lists (its tag mlflow.modelVersions)."""
    import json

    tag = client.get_logged_model(model_uri.removeprefix("models:/")).tags.get("mlflow.modelVersions")
    return [(v["name"], str(v["version"])) for v in json.loads(tag or "[]")]


def test_registration_records_the_decision_and_its_figures(logged_model):
    client, run_id, model_uri, cfg, uri = logged_model
    first = register_candidate(uri, "vgan-generator", model_uri, run_id, cfg, {"auc_roc": 0.9}, Gate(), "s")
    assert first.promoted and first.reason == "first champion"
    assert str(client.get_model_version_by_alias("vgan-generator", CHAMPION).version) == first.version
    mv = client.get_model_version("vgan-generator", first.version)
    assert {"git_commit", "data_split_hash", "test_split_hash", "dataset", "promotion", "decision"} <= set(mv.tags)
    metric_tags = {f"{split}_{m}" for split in ("val", "test") for m in METRIC_NAMES}
    assert "config" not in mv.tags and not metric_tags & set(mv.tags), mv.tags
    assert "Test: AUC-ROC" in mv.description and client.get_registered_model("vgan-generator").description
    # each test figure with its interval over the test images, where one is taken (not AUC-PR)
    lo, hi = first.test_intervals["auc_roc"]
    assert lo < first.test_metrics["auc_roc"] < hi and "auc_pr" not in first.test_intervals
    assert f"AUC-ROC {first.test_metrics['auc_roc']:.4f} [{lo:.4f}, {hi:.4f}], AUC-PR " in mv.description
    assert "at 0.5 (95 % intervals over the test images)." in mv.description
    assert mv.tags["test_fov"] == "generated" and first.test_fov == "generated"
    # metrics live on the logged model, each linked to the split it was measured on
    logged = client.get_logged_model(mv.source.removeprefix("models:/")).metrics
    metrics = {(m.key, m.dataset_name) for m in logged}
    assert {("val_auc_roc", "synthetic-val"), ("test_auc_roc", "synthetic-test")} <= metrics
    # and the intervals' ends, columns to sort by
    ends = {m.key: m.value for m in logged if m.dataset_name == "synthetic-test" and "_ci95_" in m.key}
    assert (ends["test_auc_roc_ci95_low"], ends["test_auc_roc_ci95_high"]) == pytest.approx((lo, hi), abs=1e-12)
    assert {k.removeprefix("test_").rsplit("_ci95_", 1)[0] for k in ends} == set(first.test_intervals)
    assert linked_versions(client, model_uri) == [("vgan-generator", first.version)]  # its UI page lists them

    from tuner.registry import registered_version

    assert str(registered_version(client, "vgan-generator", model_uri).version) == first.version
    assert registered_version(client, "vgan-generator", "models:/m-other") is None

    # the same model again: scored now on the same images, no gain: challenger only, the figures tagged
    second = register_candidate(uri, "vgan-generator", model_uri, run_id, cfg, {"auc_roc": 0.9}, Gate(), "s")
    assert not second.promoted and second.comparison.gain == 0 and "not above the margin" in second.reason
    assert str(client.get_model_version_by_alias("vgan-generator", CHALLENGER).version) == second.version
    assert str(client.get_model_version_by_alias("vgan-generator", CHAMPION).version) == first.version
    tags = client.get_model_version("vgan-generator", second.version).tags
    assert tags["promotion"] == second.reason and tags["decision"] == "not promoted"
    assert float(tags["champion_test_auc_roc"]) == pytest.approx(first.test_metrics["auc_roc"])
    assert tags["per_image_auc_gain_interval"] == "[0.000000, 0.000000]" and tags["gate_metric"] == "auc_roc"
    assert linked_versions(client, model_uri) == [("vgan-generator", first.version),
                                                  ("vgan-generator", second.version)]


def test_a_champion_of_other_test_images_is_not_compared_with(logged_model, drive_root):
    """A model scored on DRIVE's test images never competes with a synthetic-data champion."""
    client, run_id, model_uri, cfg, uri = logged_model
    register_candidate(uri, "vgan-generator", model_uri, run_id, cfg, {}, Gate(), "s")
    on_drive = apply_overrides(cfg, {"data.dataset": "drive", "data.root": str(drive_root), "data.crop_size": None})
    reg = register_candidate(uri, "vgan-generator", model_uri, run_id, on_drive, {}, Gate(), "s")
    assert not reg.promoted and reg.comparison is None
    assert reg.reason.startswith("not compared with champion v1: it was scored on synthetic test images")
    assert "python -m tuner.promote --name vgan-generator --version 2" in reg.reason
    assert client.get_model_version("vgan-generator", reg.version).tags["promotion"] == reg.reason


def test_test_scores_on_estimated_fovs_say_so(logged_model, drive_root, tmp_path):
    """A folder dataset without masks/ has each test photograph's FOV estimated: the version's description, its
    tag test_fov and the registration (which tuner.run prints) say so, as vgan.evaluate does; with masks, not. Its
    metrics are linked to a dataset named after the root (every folder dataset's was "folder-test")."""
    from conftest import folder_dataset

    client, run_id, model_uri, cfg, uri = logged_model
    for masks in (False, True):
        root = folder_dataset(drive_root, tmp_path / f"own-{masks}", {"training": 3, "test": 2}, masks=masks)
        own = apply_overrides(cfg, {"data.dataset": "folder", "data.root": str(root), "data.val_count": 1,
                                    "data.crop_size": None})
        reg = register_candidate(uri, "vgan-generator", model_uri, run_id, own, {"auc_roc": 0.9}, Gate(), "s")
        mv = client.get_model_version("vgan-generator", reg.version)
        said = "estimated" if not masks else "masks"
        assert reg.test_fov == mv.tags["test_fov"] == said
        assert ("Test (FOV estimated from the photographs): AUC-ROC" in mv.description) == (not masks)
        assert ("Test: AUC-ROC" in mv.description) == masks
        # the test metrics linked to the dataset by its root's name, as the registered model is named
        linked = {(m.key, m.dataset_name) for m in client.get_logged_model(mv.source.removeprefix("models:/")).metrics}
        assert ("test_auc_roc", f"own-{str(masks).lower()}-test") in linked


def test_promote_by_hand_says_what_it_overrides(logged_model, capsys, tmp_path):
    from tuner.promote import main

    client, run_id, model_uri, cfg, uri = logged_model
    register_candidate(uri, "vgan-generator", model_uri, run_id, cfg, {}, Gate(), "s")
    v2 = register_candidate(uri, "vgan-generator", model_uri, run_id, cfg, {}, Gate(), "s")
    assert main(["--version", v2.version, "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "version 2 is now @champion, by hand: champion was v1; the gate had said: kept champion v1" in out
    assert str(client.get_model_version_by_alias("vgan-generator", CHAMPION).version) == v2.version
    assert client.get_model_version("vgan-generator", v2.version).tags["decision"] == "promoted by hand"
    assert main(["--version", "99", "--tracking-uri", uri]) == 2
    assert capsys.readouterr().err.endswith(  # and what there is
        "not found); vgan-generator has versions 1-2; aliases: @challenger (version 2), @champion (version 2)\n")
    assert main(["--version", "1", "--name", "vgan-generator-synthetic", "--tracking-uri", uri]) == 2
    assert capsys.readouterr().err.endswith("; registered there: vgan-generator\n")
    # where no store is, it says so (it said 'no such version', and made an empty database)
    none = tmp_path / "none.db"
    assert main(["--version", v2.version, "--tracking-uri", f"sqlite:///{none}"]) == 2
    assert f"--tracking-uri sqlite:///{none}: no MLflow database there" in capsys.readouterr().err
    assert not none.exists()
    assert main(["--version", v2.version, "--tracking-uri", "http://127.0.0.1:1"]) == 2
    assert "http://127.0.0.1:1: the MLflow tracking server is unreachable" in capsys.readouterr().err


def test_logging_and_registering_leave_the_global_tracking_uri_alone(tmp_path):
    """Trials and the registry name their store explicitly; a user's global MLflow setting is theirs."""
    import mlflow

    cfg, uri, study, run_id = trial_with_best(tmp_path)
    elsewhere = f"sqlite:///{tmp_path}/elsewhere.db"
    mlflow.set_tracking_uri(elsewhere)
    try:
        model_uri = log_best_model(uri, run_id, tmp_path / "best", load_train_val(cfg.data)[1], cfg, "t1")
        assert mlflow.get_tracking_uri() == elsewhere
        reg = register_candidate(uri, "scoped-model", model_uri, run_id, cfg, {}, Gate(), "s")
        assert mlflow.get_tracking_uri() == elsewhere
        assert reg.promoted and reg.test_metrics["auc_roc"] > 0
    finally:
        mlflow.set_tracking_uri(None)


def test_the_logged_model_is_named_after_its_trial_and_holds_its_config(logged_model, tmp_path, monkeypatch):
    import yaml

    client, run_id, model_uri, cfg, uri = logged_model
    model = client.get_logged_model(model_uri.removeprefix("models:/"))
    assert model.name == "t1 completed" and model.source_run_id == run_id
    # in its run's experiment, its artifacts beside the store (not in MLflow's Default experiment under ./mlruns)
    assert model.experiment_id == client.get_run(run_id).info.experiment_id != "0"
    assert model.artifact_location.startswith((tmp_path / "mlartifacts").as_uri())
    with use_tracking_uri(uri):
        import mlflow

        folder = mlflow.artifacts.download_artifacts(model_uri)
    assert yaml.safe_load(open(f"{folder}/config.yaml")) == cfg.to_dict()


def test_a_mixed_size_test_split_is_scored_with_each_image_at_its_own_size(drive_root, stare_root, tmp_path):
    from conftest import two_camera_dataset

    from tuner.registry import score_model
    from vgan.inputs import unit_float
    from vgan.metrics import compute_metrics, fov_pixels, per_image_metrics
    from vgan.scale import fov_diameter

    root = two_camera_dataset(drive_root, stare_root, tmp_path / "own", {"test": (1, 1)})
    test = load_split(DataConfig(dataset="folder", root=str(root), crop_size=None), "test")
    shapes = []

    def brightness(x: torch.Tensor) -> torch.Tensor:  # a "model" whose probabilities are 1 - the green channel
        shapes.append(tuple(x.shape))
        return 1 - x[:, 1:2]

    s = score_model(brightness, test)
    assert shapes == [(1, 3, 584, 565), (1, 3, 605, 700)]
    maps = [1 - unit_float(test.own(i, test.images[i]))[1].numpy() for i in range(2)]
    labels = [test.own(i, y[0]).numpy() for i, y in enumerate(test.labels)]
    masks = [test.own(i, m[0]).numpy() for i, m in enumerate(test.masks)]
    assert s.metrics["auc_roc"] == pytest.approx(compute_metrics(*fov_pixels(maps, labels, masks))["auc_roc"], abs=1e-6)
    assert np.allclose(s.per_image("auc_roc"), [r["auc_roc"] for r in per_image_metrics(maps, labels, masks)])

    # a model trained at DRIVE's scale sees STARE's photograph brought to it, and is scored at its own size
    shapes.clear()
    at = score_model(brightness, test, trained_fov=540.0)
    factor = 540.0 / fov_diameter(test.own(1, test.masks[1]))
    assert shapes == [(1, 3, 584, 565), (1, 3, round(605 * factor), round(700 * factor))]
    (a0, a1), (s0, s1) = at.per_image("auc_roc"), s.per_image("auc_roc")
    assert a0 == s0 and a1 != s1


def test_a_version_is_listed_once_on_its_logged_model(tmp_path):
    """A tracking server lists the version itself (its number an integer); the registry adds it only where not."""
    from mlflow.tracking import MlflowClient

    from tuner.registry import link_version

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    model = client.create_logged_model(client.create_experiment("e"), name="t1")
    client.set_logged_model_tags(model.model_id, {"mlflow.modelVersions": '[{"name": "g", "version": 1}]'})
    link_version(client, model.model_id, "g", "1")
    link_version(client, model.model_id, "g", "2")
    link_version(client, model.model_id, "g", "2")
    assert linked_versions(client, f"models:/{model.model_id}") == [("g", "1"), ("g", "2")]


def test_a_store_without_registered_models_says_so(tmp_path):
    from mlflow.tracking import MlflowClient

    from tuner.registry import registry_hint, spans

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri, uri)
    assert registry_hint(client, "vgan-generator").startswith("nothing is registered there yet")
    for i in range(12):  # a store of many models: the first ten by name
        client.create_registered_model(f"m{i:02d}")
    first_ten = ", ".join(f"m{i:02d}" for i in range(10))
    assert registry_hint(client, "vgan-generator") == f"registered there: {first_ten} and others"
    assert registry_hint(client, "m03") == "m03 has no version; aliases: none"
    assert spans([5, 1, 2, 3, 3, 9, 10]) == "1-3, 5, 9-10" and spans([]) == "none"




def registration_of(tmp_path, **overrides):
    """A study whose best trial logged its model, and `tuner.run.register` as a study calls it, for a trial's run
    (the space's registry settings, its trainer config TINY's with `overrides`): (register(run id), study, the
    trial's run id)."""
    from types import SimpleNamespace

    from tuner.run import register

    cfg, uri, study, run_id = trial_with_best(tmp_path, **overrides)
    log_best_model(uri, run_id, tmp_path / "best", load_train_val(cfg.data)[1], cfg, "t1 completed")
    mlflow = SimpleNamespace(registered_model="vgan-generator", promote_margin=0.0, promote_confidence=0.95,
                             ensemble_top=1)
    metric = cfg.train.select_metric
    plan = SimpleNamespace(name="s", space=SimpleNamespace(mlflow=mlflow, trainer_config=lambda params: cfg,
                                                           metric=metric, score=f"best_val_{metric}"))
    return (lambda run, score=0.5: register(plan, study, [{"mlflow_run_id": run, "trial_id": "t1",
                                                           f"best_val_{metric}": score}]), study, run_id)


def test_a_study_whose_best_trial_scored_0_at_the_threshold_registers_nothing(tmp_path, capsys):
    """Selected on clDice (or F1), a trial scores 0 until its generator marks vessels at train.threshold: where the
    best did not, its generator (its first epoch's, the first maximum) would be a champion that finds no vessel."""
    register, study, run_id = registration_of(tmp_path, **{"train.select_metric": "cldice"})
    register(run_id, 0.0)
    assert "best trial t1 scored best_val_cldice 0: no trial's generator found the validation vessels at " \
           "train.threshold, and no such model is registered; train longer (more epochs) or select on auc_roc" \
           in capsys.readouterr().out
    assert study.client.search_registered_models() == []
    register(run_id, 0.01)  # any vessel found: registered as ever
    assert "registered vgan-generator version 1 (challenger, champion)" in capsys.readouterr().out


@pytest.mark.parametrize("before", ["the first tag", "the description", "the champion alias", "the decision"])
def test_a_registration_cut_short_is_ended_by_the_resume_not_called_done(tmp_path, before, monkeypatch, capsys):
    """A driver stopped after making the version, before its last write: the resume (tuner.run's register, as a
    resumed study calls it) ends that version, where it used to say "registered already" of a version that no
    gate had decided, and makes no second one."""
    from mlflow.tracking import MlflowClient

    from tuner.registry import DECISION

    register, study, run_id = registration_of(tmp_path)
    method, hit = {"the first tag": ("set_model_version_tag", lambda *a: True),
                   "the description": ("update_model_version", lambda *a, **k: True),
                   "the champion alias": ("set_registered_model_alias", lambda name, alias, v: alias == CHAMPION),
                   "the decision": ("set_model_version_tag", lambda name, v, key, value: key == DECISION)}[before]
    write = getattr(MlflowClient, method)

    def killed(self, *args, **kwargs):
        if hit(*args, **kwargs):
            raise Killed
        return write(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, method, killed)
    with pytest.raises(Killed):
        register(run_id)
    monkeypatch.undo()
    capsys.readouterr()
    register(run_id)
    out = capsys.readouterr().out
    assert "version 1 was made from it by a driver that stopped before it was compared with the champion" in out, out
    assert "registered vgan-generator version 1 (challenger, champion) from best trial t1" in out
    client = study.client
    (mv,) = client.search_model_versions("name = 'vgan-generator'")
    assert (mv.tags[DECISION], mv.tags["promotion"]) == ("promoted", "first champion")
    assert "First champion" in mv.description
    assert str(client.get_model_version_by_alias("vgan-generator", CHAMPION).version) == "1"
    tags = client.get_run(study.info.parent_run_id).data.tags
    assert (tags["registered_version"], tags["promoted"]) == ("1", "True")
    register(run_id)  # again: done
    assert "best trial t1 is registered already as vgan-generator version 1" in capsys.readouterr().out


def test_a_registration_whose_champion_could_not_be_scored_is_compared_by_the_resume(tmp_path, monkeypatch, capsys):
    """The gate's scoring of the champion failed (out of memory, as a GPU's can): the study printed the resume that
    registers its best; that resume compares the version made with the champion, where it said "registered
    already" of a version left a challenger with no decision."""
    import tuner.registry
    from tuner.registry import DECISION

    register, study, first = registration_of(tmp_path)
    register(first)  # v1, the first champion
    cfg = trial_with_best(tmp_path / "other", **{"train.seed": 1})[0]
    run = study.client.create_run(study.info.experiment_id, tags={"mlflow.parentRunId": study.info.parent_run_id})
    log_best_model(study.info.uri, run.info.run_id, tmp_path / "other" / "best", load_train_val(cfg.data)[1], cfg,
                   "t2 completed")
    score = tuner.registry.score_logged

    def champion_out_of_memory(uri, split):
        if uri.startswith("models:/vgan-generator/"):
            raise RuntimeError("CUDA out of memory")
        return score(uri, split)

    monkeypatch.setattr(tuner.registry, "score_logged", champion_out_of_memory)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        register(run.info.run_id)
    monkeypatch.undo()
    capsys.readouterr()
    register(run.info.run_id)
    out = capsys.readouterr().out
    assert "version 2 was made from it by a driver that stopped before it was compared with the champion" in out, out
    client = study.client
    assert len(client.search_model_versions("name = 'vgan-generator'")) == 2
    tags = client.get_model_version("vgan-generator", "2").tags
    assert tags["champion_version"] == "1" and tags[DECISION] in ("promoted", "not promoted")
    assert tags["promotion"].startswith(("promoted over v1", "kept champion v1")), tags
    champion = str(client.get_model_version_by_alias("vgan-generator", CHAMPION).version)
    assert champion == ("2" if tags[DECISION] == "promoted" else "1")
    assert str(client.get_model_version_by_alias("vgan-generator", CHALLENGER).version) == "2"


@pytest.mark.parametrize("metric", ["auc_roc", "cldice", "thin_auc_roc"])
def test_the_gates_evidence_is_kept_and_vgan_compare_gives_its_interval_again(tmp_path, capsys, metric):
    """Each version's test scores, and the champion's the gate scored, as vgan.evaluate writes them, on the version's
    run: vgan.compare of the two gives the gate's per-image gain and interval again, on the metric the study
    selected on."""
    from mlflow.artifacts import download_artifacts

    from tuner.registry import DECISION, gate_tags
    from vgan.compare import main as compare_main
    from vgan.metrics import DISPLAY_NAMES

    # (TINY's 2 steps leave every pixel above 0.5 and clDice 0: 10 draw some vessels)
    overrides = {"train.select_metric": metric, **({"train.steps_per_epoch": 10} if metric == "cldice" else {})}
    register, study, first = registration_of(tmp_path, **overrides)
    register(first)
    cfg = trial_with_best(tmp_path / "other", **{"train.seed": 1, **overrides})[0]
    run = study.client.create_run(study.info.experiment_id, tags={"mlflow.parentRunId": study.info.parent_run_id})
    log_best_model(study.info.uri, run.info.run_id, tmp_path / "other" / "best", load_train_val(cfg.data)[1], cfg,
                   "t2 completed")
    capsys.readouterr()
    register(run.info.run_id)
    client = study.client
    v1, v2 = (client.get_model_version("vgan-generator", v).tags for v in ("1", "2"))
    assert ("the gate's evaluations, for python -m vgan.compare once fetched (mlflow artifacts download -u URI): "
            f"{v2['champion_test_evaluation']} {v2['test_evaluation']}") in capsys.readouterr().out
    assert "champion_test_evaluation" not in v1 and v2["champion_version"] == "1"
    assert v2["test_evaluation"] == f"runs:/{run.info.run_id}/registry/vgan-generator/v2/test.json"
    got = {k: download_artifacts(artifact_uri=v2[k], dst_path=str(tmp_path / k), tracking_uri=study.info.uri)
           for k in ("champion_test_evaluation", "test_evaluation")}
    challenger = json.loads(Path(got["test_evaluation"]).read_text())
    logged = {m.key: m.value for m in client.get_logged_model(
        client.get_model_version("vgan-generator", "2").source.removeprefix("models:/")).metrics}
    assert challenger["auc_roc"] == pytest.approx(logged["test_auc_roc"], abs=1e-9)
    assert len(challenger["per_image"]) == TINY["data"]["synthetic"]["num_test"]
    assert challenger["source"].startswith("models:/m-") and challenger["fov"] == "generated"
    capsys.readouterr()
    assert compare_main([got["champion_test_evaluation"], got["test_evaluation"], "--metrics", metric, "--json",
                         str(tmp_path / "c.json")]) == 0
    again = json.loads((tmp_path / "c.json").read_text())["metrics"][metric]
    champion_score, gain, per_image = gate_tags(metric)
    assert v2["gate_metric"] == metric and f"test {DISPLAY_NAMES[metric]} " in v2["promotion"]
    assert again["interval"][0] < again["interval"][1], "two generators, two seeds: gains that differ"
    assert again["mean_gain"] == pytest.approx(float(v2[per_image]), abs=1e-9)
    assert again["interval"] == pytest.approx(json.loads(v2[f"{per_image}_interval"]), abs=1e-6)
    assert again["gain"] == pytest.approx(float(v2[gain]), abs=1e-9)
    assert again["baseline"] == pytest.approx(float(v2[champion_score]), abs=1e-9)
    assert (again["verdict"] == "higher" and again["gain"] > 0) == (v2[DECISION] == "promoted")
