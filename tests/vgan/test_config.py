
import re

import pytest
import yaml
from conftest import REPO, write_yaml

from vgan.config import Config, apply_overrides, config_from_dict, config_keys, load_config, parse_sets
from vgan.errors import ConfigError


def test_defaults_are_valid_and_spelled_out_in_synthetic_yaml():
    cfg = config_from_dict({})
    assert cfg.data.dataset == "synthetic"
    assert load_config(REPO / "configs" / "synthetic.yaml").to_dict() == Config().to_dict()


@pytest.mark.parametrize("name", ["synthetic", "drive", "stare", "drive_cpu", "folder"])
def test_shipped_configs_load(name):
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.data.dataset == name.split("_")[0]


def test_ones_own_dataset_gets_drives_recipe():
    own, drive = (load_config(REPO / "configs" / f"{n}.yaml").to_dict() for n in ("folder", "drive"))
    own["data"]["dataset"] = "drive"
    assert own == drive


def test_unknown_key_is_named(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", {"optim": {"lr_gen": 1e-3}})
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'optim\.lr_gen'"):
        load_config(path)


def test_a_config_an_older_version_saved_loads_where_its_retired_keys_asked_for_nothing(tmp_path):
    """Every config.yaml and best_config.yaml an older version wrote holds all its keys, the retired ones too:
    at their neutral value they load as this version's config; at another they asked for what is gone, and are
    refused naming the file, the key, the value and why."""
    old = Config().to_dict()
    old["data"]["jpeg_prob"] = 0.0  # as every config the versions from f11c085 to 621cb8f saved
    assert load_config(write_yaml(tmp_path / "old.yaml", old)).to_dict() == Config().to_dict()
    assert "jpeg_prob" in old["data"]  # the caller's values are left as they were

    old["data"]["jpeg_prob"] = 0.3
    with pytest.raises(ConfigError, match=r"asked\.yaml: 'data\.jpeg_prob' is 0\.3, which this version cannot do: "
                                          r"it asked for training crops saved as JPEG .*; delete the key"):
        load_config(write_yaml(tmp_path / "asked.yaml", old))
    with pytest.raises(ConfigError, match=r"--set data\.jpeg_prob=0: 'data\.jpeg_prob' is no longer a key: it asked "
                                          r"for training crops saved as JPEG"):
        apply_overrides(Config(), {"data.jpeg_prob": 0}, "command line", {"data.jpeg_prob": "--set data.jpeg_prob=0"})


def test_retired_keys_are_not_keys_and_keys_read_as_before_they_were_added_are():
    """A key taken out and added again under its old name must leave RETIRED, or configs asking for it at another
    value than the neutral one would be refused; BEFORE_ADDED names keys the tree has."""
    from vgan.config import BEFORE_ADDED, RETIRED

    keys = config_keys()
    assert RETIRED and not set(RETIRED) & set(keys)
    assert set(BEFORE_ADDED) <= set(keys)
    for dotted, retired in RETIRED.items():  # the neutral value is one a saved config held: plain YAML
        assert yaml.safe_load(yaml.safe_dump(retired.neutral)) == retired.neutral, dotted


@pytest.mark.parametrize("space", ["smoke", "gp"])
def test_a_search_space_given_as_a_config_says_how_to_run_it(space):
    """A shipped search space passed to vgan.train's --config is named as a space, with the command that runs it
    (before: "unknown key 'search'", which a newcomer could take for a typo)."""
    path = REPO / "search_spaces" / f"{space}.yaml"
    with pytest.raises(ConfigError, match=rf"{space}\.yaml: a search space \(its 'search' section\), not a training "
                                          rf"config: run it with python -m tuner.run --space .*{space}\.yaml; one "
                                          r"config to train holds only data, model, loss, optim, train$"):
        load_config(path)


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match="unknown key 'trainer'"):
        config_from_dict({"trainer": {}})


@pytest.mark.parametrize(
    "values, key",
    [
        ({"train": {"epochs": "ten"}}, "train.epochs"),
        ({"train": {"epochs": 2.5}}, "train.epochs"),
        ({"optim": {"lr_g": "fast"}}, "optim.lr_g"),
        ({"optim": {"betas_g": [0.5]}}, "optim.betas_g"),
        ({"data": {"flip": "yes"}}, "data.flip"),
        ({"data": {"fov_diameter": True}}, "data.fov_diameter"),
        ({"data": "drive"}, "data"),
    ],
)
def test_wrong_types_name_the_key(values, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        config_from_dict(values)


@pytest.mark.parametrize(
    "values, key",
    [
        ({"data": {"dataset": "chase"}}, "data.dataset"),
        ({"data": {"crop_size": 60}, "model": {"depth": 3}}, "data.crop_size"),  # 60 % 8 != 0
        ({"data": {"augment_strength": 1.5}}, "data.augment_strength"),
        ({"data": {"grey_prob": -0.1}}, "data.grey_prob"),
        ({"data": {"fov_diameter": 20}}, "data.fov_diameter"),
        ({"data": {"fov_diameter": "mean"}}, "data.fov_diameter"),
        ({"model": {"disc_norm": "batch"}, "loss": {"adversarial": "wgan-gp"}}, "model.disc_norm"),
        ({"optim": {"lr_d": 0}}, "optim.lr_d"),
        ({"optim": {"lr_schedule": "linear"}}, "optim.lr_schedule"),
        ({"loss": {"n_critic": 0}}, "loss.n_critic"),
        ({"loss": {"cldice_weight": -0.5}}, "loss.cldice_weight"),
        ({"loss": {"cldice_iters": 0}}, "loss.cldice_iters"),
        ({"loss": {"thin_weight": 0}}, "loss.thin_weight"),
        ({"loss": {"adversarial": "none", "bce_weight": 0}}, "loss.bce_weight"),
        ({"train": {"select_metric": "loss"}}, "train.select_metric"),
        ({"data": {"folds": 5, "fold": 5}}, "data.fold"),
        # a depth out of range is named, not taken for the crop's checks (found by tests/tuner/test_space_fuzz.py)
        ({"model": {"depth": -1075}}, "model.depth"),
        ({"model": {"depth": 14285}}, "model.depth"),
    ],
)
def test_inconsistent_values_name_the_key(values, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        config_from_dict(values)


@pytest.mark.parametrize("given, taken", [(540, 540.0), ("6.5e2", 650.0), ("median", "median"), (None, None)])
def test_the_fov_diameter_is_pixels_or_the_median(given, taken):
    assert config_from_dict({"data": {"fov_diameter": given}}).data.fov_diameter == taken
    with pytest.raises(ConfigError, match=r"'data.fov_diameter' must be at least 32 pixels, 'median' \(the training "
                                          r"photographs' median\) or null .*got 'mean'"):
        config_from_dict({"data": {"fov_diameter": "mean"}})


def test_the_cldice_term_alone_is_something_to_train_on():
    cfg = config_from_dict({"loss": {"adversarial": "none", "bce_weight": 0, "cldice_weight": 1}})
    assert (cfg.loss.bce_weight, cfg.loss.cldice_weight, cfg.adversarial_on) == (0, 1, False)


def test_a_checkpoint_may_be_selected_on_any_scored_metric_cldice_and_the_thin_vessels_too():
    from vgan.metrics import DISPLAY_NAMES, SCORED, SELECTABLE

    assert {"cldice", "thin_auc_roc"} < set(SELECTABLE) < set(SCORED) and len(set(SCORED)) == len(SCORED)
    for metric in SCORED:  # each one the registry and vgan.compare can name
        assert DISPLAY_NAMES[metric]
    for metric in SELECTABLE:
        assert config_from_dict({"train": {"select_metric": metric}}).train.select_metric == metric
    with pytest.raises(ConfigError, match=r"'train.select_metric' must be one of auc_roc, .*, specificity, cldice, "
                                          r"thin_auc_roc$"):
        config_from_dict({"train": {"select_metric": "dice"}})
    # scored at evaluation only: no epoch's validation gives a thin vessel's sensitivity to select on
    with pytest.raises(ConfigError, match=r"'train.select_metric' must be one of .*thin_auc_roc$"):
        config_from_dict({"train": {"select_metric": "thin_sensitivity"}})


def test_batchnorm_allowed_for_vanilla_gan():
    cfg = config_from_dict({"model": {"disc_norm": "batch"}, "loss": {"adversarial": "vanilla"}})
    assert cfg.model.disc_norm == "batch"


def test_yaml_numbers_without_dot_and_lists(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr_g: 1e-4\n  betas_g: [0, 0.9]\n")
    cfg = load_config(path)
    assert cfg.optim.lr_g == 1e-4 and cfg.optim.betas_g == (0.0, 0.9)


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: {epochs: 3\n")
    with pytest.raises(ConfigError, match="bad.yaml: malformed YAML"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_relative_root_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write_yaml(tmp_path / "sub" / "c.yaml", {"data": {"dataset": "drive", "root": "../DRIVE"}})
    assert load_config(path).data.root == str((tmp_path / "DRIVE").resolve())


def test_apply_overrides_by_dotted_key():
    cfg = apply_overrides(Config(), {"optim.lr_g": 0.01, "loss.n_critic": 3})
    assert cfg.optim.lr_g == 0.01 and cfg.loss.n_critic == 3
    with pytest.raises(ConfigError, match="unknown key 'optim.lr'"):
        apply_overrides(Config(), {"optim.lr": 0.01})
    with pytest.raises(ConfigError, match="'loss.n_critic'"):
        apply_overrides(Config(), {"loss.n_critic": -1})


def test_an_unknown_overridden_key_is_named_with_its_sections_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'optim\.lr' \(known keys in 'optim': optim\.lr_g, optim\.lr_d"):
        apply_overrides(Config(), {"optim.lr": 0.01})
    with pytest.raises(ConfigError, match=r"unknown key 'optm\.lr_g' \(known keys: data, model, loss, optim, train\)"):
        apply_overrides(Config(), {"optm.lr_g": 0.01})
    for key in ("optim", "optim.lr_g.x"):  # a section, or a key's value, is no key to set
        with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
            apply_overrides(Config(), {key: 0.01})


def test_set_items_read_as_a_config_file_reads_them():
    """YAML values, as in a config file: numbers, booleans, lists, null; 2e-4 is a number (YAML 1.1 reads text)."""
    got = parse_sets(["optim.lr_g=2e-4", "train.seed=3", "train.amp=true", "data.dataset=drive",
                      "optim.betas_g=[0.5, 0.999]", "data.fov_diameter=", " train.device = cpu"])
    assert got == {"optim.lr_g": 2e-4, "train.seed": 3, "train.amp": True, "data.dataset": "drive",
                   "optim.betas_g": [0.5, 0.999], "data.fov_diameter": None, "train.device": "cpu"}
    assert apply_overrides(Config(), parse_sets(["optim.lr_g=2e-4", "train.seed=3"])).optim.lr_g == 2e-4
    for items, message in ((["epochs"], "--set 'epochs': give KEY=VALUE"), (["=3"], "--set '=3': give KEY=VALUE"),
                           (["train.seed=1", "train.seed=2"], "--set: 'train.seed' given twice"),
                           (["optim.lr_g=[1"], "--set 'optim.lr_g=[1': the value is not YAML")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_sets(items)


def test_config_keys_lists_leaves():
    keys = config_keys()
    assert "optim.lr_g" in keys and "data.synthetic.size" in keys and "data" not in keys


def test_a_refused_override_names_where_its_value_was_given():
    """`given` names the flag a refused value came from (`--set model.depth=8`), where `source` alone said
    "command line"; a list's element is named by its list's key; a key given nowhere is named by `source`."""
    with pytest.raises(ConfigError, match=re.escape("--set model.depth=8: 'model.depth' must be in [1, 6]")):
        apply_overrides(Config(), {"model.depth": 8}, "command line", {"model.depth": "--set model.depth=8"})
    with pytest.raises(ConfigError, match=re.escape("--betas 1 x: 'optim.betas_g' must be a list of 2 numbers")):
        apply_overrides(Config(), {"optim.betas_g": [1]}, "command line", {"optim.betas_g": "--betas 1 x"})
    with pytest.raises(ConfigError, match=r"^command line: 'model\.depth' must be in \[1, 6\]$"):
        apply_overrides(Config(), {"model.depth": 8}, "command line", {"train.seed": "--set train.seed=1"})


def test_data_person_is_eyes_none_or_a_pattern_with_a_group():
    assert config_from_dict({"data": {"person": "^(P[0-9]+)_"}}).data.person == "^(P[0-9]+)_"
    assert config_from_dict({}).data.person == "eyes"
    for bad in ("(", "P[0-9]+", ""):
        with pytest.raises(ConfigError, match=r"'data.person' must be 'eyes', 'none' or a regular expression whose "
                                              r"first group is the person"):
            config_from_dict({"data": {"person": bad}}, "x.yaml")
