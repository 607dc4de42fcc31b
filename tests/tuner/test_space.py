import json

import optuna
import pytest
import yaml
from conftest import REPO, write_yaml

from tuner.cluster import check_gpus
from tuner.space import SpaceError, define_by_run, load_space, recipe_changes
from vgan.errors import ConfigError

SMOKE = REPO / "search_spaces" / "smoke.yaml"


@pytest.mark.parametrize("name", ["smoke", "gp", "gp_cpu", "paper", "drive_cpu"])
def test_shipped_spaces_load(name, drive_root):
    space = load_space(REPO / "search_spaces" / f"{name}.yaml", None if name == "smoke" else str(drive_root))
    assert space.params and space.score.startswith("best_val_auc_roc")
    dataset = space.trainer_config().data.dataset
    assert dataset == ("synthetic" if name == "smoke" else "drive")
    # each dataset's champions in a registered model of their own
    assert space.mlflow.registered_model == ("vgan-generator-synthetic" if name == "smoke" else "vgan-generator")


def smoke_values():
    return yaml.safe_load(SMOKE.read_text())


def test_each_of_ones_own_datasets_has_its_own_champion(tmp_path, stare_root):
    """A folder dataset's champion stands in a registered model named after its root (two clinics' datasets in one
    store were one lineage, vgan-generator-folder, whose gate refused the second's every model); STARE's in its
    dataset's; a name the space gives is kept."""
    values = smoke_values()
    values["data"] = {"dataset": "folder", "val_count": 1, "crop_size": 48}

    def name(root, **mlflow):
        space = load_space(write_yaml(tmp_path / "own.yaml", {**values, "mlflow": mlflow}), str(root))
        return space.mlflow.registered_model

    assert name(tmp_path / "CHASE_DB1") == "vgan-generator-chase_db1"
    assert name(tmp_path / "Clinic photos (2026)") == "vgan-generator-clinic-photos-2026"
    assert name(tmp_path / "HRF", registered_model="hrf-vessels") == "hrf-vessels"
    with pytest.raises(SpaceError, match=r"mlflow\.registered_model.*must hold neither '/' nor ':'"):
        name(tmp_path / "HRF", registered_model="clinic/hrf")
    values["data"]["dataset"] = "stare"
    assert name(stare_root) == "vgan-generator-stare"


@pytest.mark.parametrize("mutate, fragments", [
    (lambda v: v.update(tuning={}), ["unknown section 'tuning'"]),
    (lambda v: v["tune"].update(num_sample=3), ["unknown key 'tune.num_sample'"]),
    (lambda v: v["search"].update({"optim.learning_rate": {"type": "uniform", "low": 0, "high": 1}}),
     ["'search.optim.learning_rate' is not a trainer config key"]),
    (lambda v: v["search"].update({"optim.lr_d": {"type": "gaussian", "low": 0, "high": 1}}),
     ["'search.optim.lr_d.type' unknown distribution 'gaussian'"]),
    (lambda v: v["search"].update({"optim.lr_d": {"type": "uniform", "low": 0.1, "high": 0.1}}),
     ["'search.optim.lr_d' needs low < high"]),
    (lambda v: v["search"].update({"optim.lr_d": {"type": "loguniform", "low": 0, "high": 0.1}}),
     ["'search.optim.lr_d.low' must be > 0 on a log scale"]),
    (lambda v: v["search"].update({"loss.n_critic": {"type": "int", "low": 0, "high": 3, "log": True}}),
     ["'search.loss.n_critic.low' must be > 0 on a log scale"]),
    (lambda v: v["search"].update({"model.disc_head": {"type": "categorical", "choices": []}}),
     ["'search.model.disc_head.choices' must be a non-empty list"]),
    (lambda v: v["search"].update({"data.crop_size": {"type": "categorical", "choices": [32, 30]}}),
     ["'search.data.crop_size' value 30 is not valid", "divisible"]),
    (lambda v: v["search"].update({"loss.n_critic": {"type": "uniform", "low": 1, "high": 3}}),
     ["'search.loss.n_critic.type' uniform draws floats", "use type int"]),
    (lambda v: v["search"].update({"optim.lr_d": {"type": "uniform", "low": 0.1, "high": 0.2, "sigma": 1}}),
     ["'search.optim.lr_d.sigma' is not a field of a uniform distribution"]),
    (lambda v: v.update(search={"loss.gp_weight": {"type": "uniform", "low": 1, "high": 2,
                                                  "when": {"loss.adversarial": "wgan-gp"}},
                                "loss.adversarial": {"type": "categorical", "choices": ["wgan-gp", "vanilla"]}}),
     ["refers to a searched key listed later"]),
    (lambda v: v["model"].update(widht=3), ["unknown key 'model.widht'"]),
    (lambda v: v["tune"].update(mode="min"), ["'tune.mode' is gone", "'train.select_metric'"]),
    (lambda v: v["tune"].update(metric="val_f1"), ["'tune.metric' is gone"]),
    (lambda v: v["tune"].update(grace_period=7), ["'tune.grace_period' is 7 epochs, more than the trials' "
                                                  "train.epochs (6)"]),
    (lambda v: v["search"].update({"train.epochs": {"type": "int", "low": 2, "high": 8}}),
     ["'search.train.epochs' cannot be searched"]),
    # what trials are ranked on is the base config's: a search would pick the validation split that flatters
    (lambda v: v["search"].update({"data.split_seed": {"type": "int", "low": 0, "high": 9}}),
     ["'search.data.split_seed' cannot be searched: trials scored on other validation images are not comparable"]),
    (lambda v: v["search"].update({"data.val_count": {"type": "int", "low": 2, "high": 4}}),
     ["'search.data.val_count' cannot be searched: trials scored on other validation images"]),
    (lambda v: v["search"].update({"data.synthetic.seed": {"type": "int", "low": 0, "high": 9}}),
     ["'search.data.synthetic.seed' cannot be searched: a study is of one dataset"]),
    (lambda v: v["resources"].update(gpu=-1), ["'resources.gpu'"]),
    (lambda v: v["resources"].update(gpu=float("inf")), ["'resources.gpu' must be >= 0"]),
    (lambda v: v["resources"].update(cpu=float("inf")), ["'resources.cpu' must be a finite number > 0"]),
    (lambda v: v["tune"].update(time_budget_s=float("inf")),
     ["'tune.time_budget_s' must be a finite number of seconds > 0"]),
    (lambda v: v["tune"].update(start_from=[{"optim.lr_d": 0.001}]),
     ["'tune.start_from[0].optim.lr_d' is not a searched key"]),
    (lambda v: v["tune"].update(start_from=[{"optim.lr_g": 0.5}]),
     ["'search.optim.lr_g' does not hold tune.start_from[0]'s value 0.5"]),
    (lambda v: v["tune"].update(start_from={"optim.lr_g": 0.01}), ["'tune.start_from' must be a list"]),
    (lambda v: v["optim"].update(lr_g=0.5) if "optim" in v else v.update(optim={"lr_g": 0.5}),
     ["'search.optim.lr_g' does not hold the base config (the study's first trial)'s value 0.5"]),
    (lambda v: v["tune"].update(scheduler="hyperband"), ["'tune.scheduler' must be one of asha, pbt, none"]),
    (lambda v: v["tune"].update(searcher="cmaes"), ["'tune.searcher' must be one of tpe, random"]),
    (lambda v: v["tune"].update(scheduler="pbt", searcher="tpe"), ["'tune.searcher' cannot be tpe with scheduler pbt"]),
    (lambda v: v["tune"].update(signal_window=0), ["'tune.signal_window' must be at least 1"]),
    (lambda v: v["mlflow"].update(ensemble_top=0),
     ["'mlflow.ensemble_top' must be at least 1 (1: the best trial alone)"]),
    (lambda v: v["mlflow"].update(ensemble_top=2.5), ["mlflow.ensemble_top"]),
    (lambda v: v["tune"].update(time_budget_s=0), ["'tune.time_budget_s' must be a finite number of seconds > 0"]),
    (lambda v: v["tune"].update(scheduler="pbt", checkpoint_keep=2),
     ["'tune.checkpoint_keep' must be at least 3 with scheduler pbt"]),
    (lambda v: v["tune"].update(scheduler="pbt", pbt_interval=3, checkpoint_every=2),
     ["'tune.pbt_interval' is 3 epochs, not a multiple of tune.checkpoint_every (2)"]),
    (lambda v: v["tune"].update(scheduler="pbt", max_concurrent_trials=2),  # Tune ignored it (a warning, unseen)
     ["'tune.max_concurrent_trials' does not apply with scheduler pbt: its whole population (tune.num_samples) "
      "trains side by side"]),
    (lambda v: v["tune"].update(max_concurrent_trials=0), ["'tune.max_concurrent_trials' must be at least 1"]),
    (lambda v: v.update(search={}), ["'search' names no trainer key to search"]),
    (lambda v: v.pop("search"), ["'search' names no trainer key to search"]),
])
def test_bad_space_names_file_and_key(tmp_path, mutate, fragments):
    values = smoke_values()
    mutate(values)
    path = write_yaml(tmp_path / "space.yaml", values)
    with pytest.raises(SpaceError) as e:
        load_space(path)
    assert str(path) in str(e.value)
    for f in fragments:
        assert f in str(e.value)


def test_malformed_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("search: {optim.lr_g: [1, 2\n")
    with pytest.raises(SpaceError, match="broken.yaml: malformed YAML"):
        load_space(path)


def test_gpu_asked_where_none(tmp_path):
    values = smoke_values()
    values["resources"]["gpu"] = 0.25
    space = load_space(write_yaml(tmp_path / "gpu.yaml", values))
    with pytest.raises(SpaceError, match="'resources.gpu' asks for 0.25 GPU per trial, but this machine has none"):
        check_gpus(space, 0, "this machine")
    check_gpus(space, 1, "this machine")  # a fraction fits on one GPU
    space.resources.gpu = 2
    with pytest.raises(SpaceError, match="has 1"):
        check_gpus(space, 1, "this machine")


def test_conditional_parameter_only_when_its_condition_holds():
    space = load_space(SMOKE)
    vanilla = optuna.trial.FixedTrial({"optim.lr_g": 1e-3, "loss.adversarial": "vanilla", "loss.adv_weight": 0.1})
    define_by_run(vanilla, space.params, space.base)
    assert "loss.gp_weight" not in vanilla.params
    gp = optuna.trial.FixedTrial({"optim.lr_g": 1e-3, "loss.adversarial": "wgan-gp", "loss.gp_weight": 5.0,
                                  "loss.adv_weight": 0.1})
    define_by_run(gp, space.params, space.base)
    assert gp.params["loss.gp_weight"] == 5.0


def test_sampled_values_make_trainer_configs():
    space = load_space(SMOKE)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        define_by_run(trial, space.params, space.base)
        cfg = space.trainer_config(trial.params)
        assert cfg.optim.lr_g == trial.params["optim.lr_g"]
        assert 1e-4 <= cfg.optim.lr_g <= 3e-2
        study.tell(trial, 0.5)


def test_data_root_is_absolute(tmp_path, drive_root):
    space = load_space(REPO / "search_spaces" / "gp.yaml", str(drive_root))
    assert space.base["data"]["root"] == str(drive_root.resolve())
    # a synthetic space trained on generated images whatever --data said
    with pytest.raises(ConfigError, match=r"--data .*DRIVE: .*smoke.yaml trains on the synthetic dataset .*: set "
                                          r"data.dataset to drive in it \(.*DRIVE is in DRIVE's layout\)$"):
        load_space(SMOKE, str(drive_root))
    with pytest.raises(ConfigError, match=r"set data.dataset to drive, stare or folder in it$"):
        load_space(SMOKE, str(tmp_path))


def test_pbt_keeps_enough_checkpoints_to_clone_by_default(tmp_path):
    values = smoke_values()
    assert load_space(write_yaml(tmp_path / "asha.yaml", values)).tune.checkpoint_keep == 2
    values["tune"].update(scheduler="pbt", max_concurrent_trials=None)
    assert load_space(write_yaml(tmp_path / "pbt.yaml", values)).tune.checkpoint_keep == 3


def test_recipe_changes_are_the_users_not_the_releases():
    """A config field added or dropped by a newer vgan-tune must not block resuming an older study; a searched
    key added or dropped is the user's change."""
    before = {"optim.lr_d": 0.001, "train.old_field": 1, "search.optim.lr_g": {"low": 0.1}}
    assert recipe_changes(before, {"optim.lr_d": 0.001, "train.new_field": 2, "search.optim.lr_g": {"low": 0.1}}) == []
    assert recipe_changes(before, {"optim.lr_d": 0.002, "search.loss.adv_weight": {"low": 0}}) == [
        "optim.lr_d: 0.001 -> 0.002", "search.loss.adv_weight: absent -> {'low': 0}",
        "search.optim.lr_g: {'low': 0.1} -> absent"]


def test_a_resume_may_change_how_long_and_how_wide_a_study_searches_and_nothing_else_of_how(tmp_path):
    """Ray restores a study's searcher, scheduler and settings from its own state whatever the space says now:
    a space that says otherwise is refused, naming the change, where before the console said the space's and
    Ray ran the study's. num_samples, max_concurrent_trials and time_budget_s apply (tuner.search.restore_tuner),
    but for PBT, whose population is its search."""
    from tuner.space import check_same_recipe, trial_recipe

    def recipe(**tune) -> str:
        values = smoke_values()
        values["tune"].update(tune)
        return json.dumps(trial_recipe(load_space(write_yaml(tmp_path / "kept.yaml", values))))

    def resumed(kept: str, **tune) -> None:
        values = smoke_values()
        values["tune"].update(tune)
        check_same_recipe(load_space(write_yaml(tmp_path / "now.yaml", values)), kept, "s", "--resume", "remedy")

    kept = recipe()
    resumed(kept, num_samples=40, max_concurrent_trials=4, time_budget_s=60, searcher="tpe")  # tpe: the default
    with pytest.raises(ConfigError, match=r"now.yaml is not what study 's' began with \(tune.scheduler: asha -> none; "
                                          r"tune.seed: 0 -> 3\): remedy"):
        resumed(kept, scheduler="none", seed=3)
    with pytest.raises(ConfigError, match=r"tune.grace_period: 2 -> 1\)"):
        resumed(kept, grace_period=1)
    pbt = {"scheduler": "pbt", "searcher": "random", "max_concurrent_trials": None}
    resumed(recipe(**pbt), **pbt, time_budget_s=60)
    with pytest.raises(ConfigError, match=r"\(tune.num_samples: 8 -> 12\)"):
        resumed(recipe(**pbt), **pbt, num_samples=12)
