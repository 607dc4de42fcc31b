import dataclasses
import math

import pytest
import torch

from vgan.config import apply_overrides, config_from_dict
from vgan.data import Split, load_train_val
from vgan.errors import CheckpointError, ConfigError, DivergenceError
from vgan.inputs import unit_float
from vgan.provenance import code_record, environment_record
from vgan.trainer import Trainer, evaluate, load_checkpoint, predict

CPU = torch.device("cpu")


def make(values, **overrides):
    cfg = config_from_dict(values)
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    train, val = load_train_val(cfg.data)
    return Trainer(cfg, train, val, CPU)


def same_state(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, dict):
            if not same_state(x, y):
                return False
        elif isinstance(x, torch.Tensor):
            if not torch.equal(x, y):
                return False
        elif x != y:
            return False
    return True


@pytest.mark.parametrize("adversarial", ["wgan-gp", "vanilla", "none"])
def test_epoch_reports_losses_and_validation_metrics(tiny_values, adversarial):
    t = make(tiny_values, **{"loss.adversarial": adversarial})
    r = t.run_epoch()
    assert r.record["epoch"] == 1 and r.is_best
    for key in ("loss_g", "loss_bce", "loss_adv", "loss_cldice", "loss_d", "val_auc_roc", "val_auc_pr", "val_f1",
                "epoch_s"):
        assert math.isfinite(r.record[key]), key
    assert r.probs.shape == t.val.labels.shape
    assert (t.D is None) == (adversarial == "none")
    assert r.record["loss_cldice"] == 0  # off by default, not computed
    assert "val_cldice" not in r.record  # selected on AUC-ROC: the validation maps are not thinned


@pytest.mark.parametrize("adversarial", ["vanilla", "none"])
def test_the_cldice_term_joins_the_generators_loss(tiny_values, adversarial):
    lc = {"loss.adversarial": adversarial, "loss.bce_weight": 0.7, "loss.adv_weight": 0.1, "loss.cldice_weight": 0.5}
    r = make(tiny_values, **lc).run_epoch().record
    assert 0 < r["loss_cldice"] < 1
    # loss_g is the weighted sum of the epoch's terms (means of its steps: the sum holds for the means)
    adv = r["loss_adv"] if adversarial != "none" else 0
    assert r["loss_g"] == pytest.approx(0.7 * r["loss_bce"] + 0.1 * adv + 0.5 * r["loss_cldice"], rel=1e-5)


def test_the_cldice_term_alone_trains_every_generator_weight(tiny_values):
    t = make(tiny_values, **{"loss.adversarial": "none", "loss.bce_weight": 0.0, "loss.cldice_weight": 1.0})
    g0 = {k: v.clone() for k, v in t.G.state_dict().items()}
    r = t.run_epoch().record
    assert r["loss_bce"] > 0 and r["loss_g"] == pytest.approx(r["loss_cldice"], rel=1e-6)
    assert [k for k, v in t.G.named_parameters() if torch.equal(g0[k], v)] == []


@pytest.mark.parametrize("adversarial", ["wgan-gp", "vanilla"])
def test_every_parameter_learns(tiny_values, adversarial):
    t = make(tiny_values, **{"loss.adversarial": adversarial})
    g0 = {k: v.clone() for k, v in t.G.state_dict().items()}
    d0 = {k: v.clone() for k, v in t.D.state_dict().items()}
    t.run_epoch()
    assert [k for k, v in t.G.named_parameters() if torch.equal(g0[k], v)] == []
    frozen = [k for k, v in t.D.named_parameters() if torch.equal(d0[k], v)]
    # D(fake) - D(real) and the gradient penalty are blind to a constant offset of the critic.
    assert frozen == (["out.bias"] if adversarial == "wgan-gp" else [])


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_values, tmp_path, schedule):
    values = {**tiny_values, "optim": {**tiny_values.get("optim", {}), "lr_schedule": schedule}}
    straight = make(values)
    straight.run_epoch()
    straight.run_epoch()

    first = make(values)
    first.run_epoch()
    first.save_checkpoint(tmp_path / "ckpt.pt")
    resumed = make(values)
    resumed.load_state_dict(load_checkpoint(tmp_path / "ckpt.pt"))
    assert resumed.epoch == 1
    resumed.run_epoch()

    assert same_state(straight.G.state_dict(), resumed.G.state_dict())
    assert same_state(straight.D.state_dict(), resumed.D.state_dict())
    assert same_state(straight.opt_g.state_dict()["state"], resumed.opt_g.state_dict()["state"])
    assert same_state(straight.opt_d.state_dict()["state"], resumed.opt_d.state_dict()["state"])
    assert straight.best_score == resumed.best_score


def test_a_cosine_schedule_lowers_both_learning_rates_epoch_by_epoch(tiny_values):
    t = make(tiny_values, **{"optim.lr_schedule": "cosine", "train.epochs": 4, "optim.lr_g": 1e-3, "optim.lr_d": 2e-4})
    seen = []
    for _ in range(4):
        t.run_epoch()
        seen.append((t.opt_g.param_groups[0]["lr"], t.opt_d.param_groups[0]["lr"]))
    # half a cosine over the 4 epochs, the first at the config's rates, none at 0
    want = [0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert [g for g, _ in seen] == pytest.approx([1e-3 * f for f in want])
    assert [d for _, d in seen] == pytest.approx([2e-4 * f for f in want]) and want[-1] > 0.1
    constant = make(tiny_values, **{"optim.lr_g": 1e-3})
    constant.run_epoch()
    constant.run_epoch()
    assert constant.opt_g.param_groups[0]["lr"] == 1e-3


def test_a_resumed_trainer_takes_its_optimizer_settings_from_its_config(tiny_values, tmp_path):
    """PBT gives a cloned trial a perturbed learning rate; the clone's checkpoint must not undo it."""
    first = make(tiny_values)
    first.run_epoch()
    first.save_checkpoint(tmp_path / "ckpt.pt")
    clone = make(tiny_values, **{"optim.lr_g": 3e-3, "optim.lr_d": 7e-4, "optim.betas_g": [0.0, 0.9]})
    clone.load_state_dict(load_checkpoint(tmp_path / "ckpt.pt"))
    assert [g["lr"] for g in clone.opt_g.param_groups] == [3e-3]
    assert [(g["lr"], g["betas"]) for g in clone.opt_d.param_groups] == [(7e-4, tuple(clone.cfg.optim.betas_d))]
    assert clone.opt_g.param_groups[0]["betas"] == (0.0, 0.9)
    assert same_state(first.opt_g.state_dict()["state"], clone.opt_g.state_dict()["state"]), "Adam's moments kept"


def test_checkpoint_holds_everything_to_resume(tiny_values, tmp_path):
    t = make(tiny_values)
    t.run_epoch()
    t.save_checkpoint(tmp_path / "c.pt")
    state = load_checkpoint(tmp_path / "c.pt")
    assert {"generator", "discriminator", "opt_g", "opt_d", "epoch", "config", "rng", "best_score"} <= set(state)
    assert state["config"] == t.cfg.to_dict()
    assert state["code"] == code_record() and (state["code"] is None or len(state["code"]["commit"]) == 40)
    assert state["environment"] == environment_record(t.device) and state["earlier_environments"] == []


def test_checkpoint_of_another_model_shape(tiny_values, tmp_path):
    t = make(tiny_values)
    t.save_checkpoint(tmp_path / "c.pt")
    wider = make(tiny_values, **{"model.base_width": 8})
    with pytest.raises(CheckpointError, match=r"another model shape \(model.base_width: checkpoint 4, config 8\)"):
        wider.load_state_dict(load_checkpoint(tmp_path / "c.pt"), "c.pt")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="x.pt: not a readable vgan checkpoint") as e:
        load_checkpoint(tmp_path / "x.pt")
    assert "\n" not in str(e.value) and "weights_only=False" not in str(e.value), "one line, no advice to unpickle"
    torch.save({"weights": torch.zeros(1)}, tmp_path / "t.pt")
    (tmp_path / "t.pt").write_bytes((tmp_path / "t.pt").read_bytes()[:300])  # cut short in a copy
    with pytest.raises(CheckpointError, match=r"t.pt: not a readable vgan checkpoint \(RuntimeError: .*zip") as e:
        load_checkpoint(tmp_path / "t.pt")
    assert "\n" not in str(e.value) and len(str(e.value)) < 200, str(e.value)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "y.pt")
    with pytest.raises(CheckpointError, match="y.pt: not a vgan checkpoint"):
        load_checkpoint(tmp_path / "y.pt")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "z.pt")


def test_a_real_divergence_is_named(tiny_values):
    # An absurd critic learning rate without normalisation overflows float32 for real.
    t = make(tiny_values, **{"optim.lr_d": 1e30, "model.disc_norm": "none"})
    with pytest.raises(DivergenceError, match=r"diverged at epoch 1 \(loss_"):
        t.run_epoch()


def test_evaluate_pools_fov_pixels(tiny_values):
    t = make(tiny_values)
    metrics, probs = evaluate(t.G, t.val, CPU)
    assert 0 <= metrics["auc_roc"] <= 1 and probs.shape == t.val.labels.shape
    assert torch.allclose(probs, predict(t.G, t.val.images, CPU, batch_size=1), atol=1e-6)


def test_drive_held_as_uint8_trains_exactly_as_its_floats(drive_root):
    """DRIVE's 8-bit photographs are held as uint8 (a quarter of the memory, on a GPU too); the steps,
    the validation and the weights are those of the same photographs held as float32, bit for bit."""
    cfg = config_from_dict({
        "data": {"dataset": "drive", "root": str(drive_root), "crop_size": 48},
        "model": {"base_width": 4, "depth": 2, "disc_width": 4},
        "loss": {"adversarial": "vanilla", "n_critic": 1},
        "train": {"epochs": 1, "batch_size": 4, "steps_per_epoch": 3, "eval_batch_size": 4},
    })
    train, val = load_train_val(cfg.data)
    assert train.images.dtype == torch.uint8
    floats = [Split(s.name, s.ids, unit_float(s.images), s.labels, s.masks) for s in (train, val)]
    held, plain = Trainer(cfg, train, val, CPU), Trainer(cfg, *floats, CPU)
    assert held.train_data.dtype == torch.uint8 and plain.train_data.dtype == torch.float32
    a, b = held.run_epoch(), plain.run_epoch()
    assert {k: v for k, v in a.record.items() if not k.endswith("_s")} == \
        {k: v for k, v in b.record.items() if not k.endswith("_s")}
    assert torch.equal(a.probs, b.probs) and same_state(held.G.state_dict(), plain.G.state_dict())


@pytest.mark.parametrize("metric", ["cldice", "thin_auc_roc"])
def test_a_run_selected_on_cldice_or_the_thin_vessels_keeps_the_epoch_they_rank_first(drive_root, metric):
    """`train.select_metric: cldice` (or `thin_auc_roc`): each epoch's validation clDice (thin-vessel AUC-ROC) is
    the figure vgan.evaluate gives the same maps (centreline counts, or the thin vessels' pixels against the
    background, pooled over DRIVE's validation photographs, each at its own size), and the best epoch is the one
    it ranks first, whatever AUC-ROC says."""
    from vgan.evaluate import score_maps

    cfg = config_from_dict({
        "data": {"dataset": "drive", "root": str(drive_root), "crop_size": 64},
        "model": {"base_width": 8, "depth": 3},
        "loss": {"adversarial": "none", "cldice_weight": 1.0},
        "optim": {"lr_g": 1e-2},
        "train": {"epochs": 4, "batch_size": 8, "steps_per_epoch": 8, "eval_batch_size": 4, "select_metric": metric},
    })
    t = Trainer(cfg, *load_train_val(cfg.data), CPU)
    records = []
    for _ in range(cfg.train.epochs):
        r = t.run_epoch()
        reported = score_maps([t.val.own(i, p[0]).numpy() for i, p in enumerate(r.probs)], t.val, 0.5)[0]
        assert r.record[f"val_{metric}"] == pytest.approx(reported[metric], abs=1e-12)
        assert {f"val_{m}" for m in ("cldice", "thin_auc_roc") if m != metric}.isdisjoint(r.record)  # not taken
        records.append(r.record)
    scores = [r[f"val_{metric}"] for r in records]
    assert len(set(scores)) == len(scores) and 0 < min(scores)  # epochs told apart: a real choice
    assert (t.best_epoch, t.best_score) == (1 + scores.index(max(scores)), max(scores))


def test_a_run_selected_on_the_thin_vessels_needs_a_validation_label_that_has_some(tiny_values):
    train, val = load_train_val(config_from_dict(tiny_values).data)
    blank = dataclasses.replace(val, labels=torch.zeros_like(val.labels))
    cfg = config_from_dict({**tiny_values, "train": {**tiny_values["train"], "select_metric": "thin_auc_roc"}})
    Trainer(cfg, train, val, CPU)  # the synthetic labels' vessels: some thin
    with pytest.raises(ConfigError, match=r"train.select_metric: thin_auc_roc, but no validation label holds a thin "
                                          r"vessel \(under 3 px across at its centreline\), so no epoch would have a "
                                          r"score; select on auc_roc"):
        Trainer(cfg, train, blank, CPU)


def test_thin_vessels_weighed_up_are_learnt_sooner_and_weight_one_trains_as_before(drive_root):
    """`loss.thin_weight`: the training labels' thin vessels (`label_thin_vessels` of each whole DRIVE label) ride
    with the crops; weighed 10 times, a few BCE steps raise the generator's probability on them more than on
    the same crops unweighed, from the same start and draws. At 1 no channel is held, and the weights trained
    are those of a run without the key."""
    import numpy as np

    from vgan.metrics import label_thin_vessels

    values = {
        "data": {"dataset": "drive", "root": str(drive_root), "crop_size": 64},
        "model": {"base_width": 8, "depth": 3},
        "loss": {"adversarial": "none"},
        "optim": {"lr_g": 2e-3},
        "train": {"epochs": 1, "batch_size": 8, "steps_per_epoch": 12, "eval_batch_size": 4},
    }
    weighed, plain = make(values, **{"loss.thin_weight": 10.0}), make(values)
    one = make(values, **{"loss.thin_weight": 1.0})
    train = weighed.train_data
    assert train.shape[1] == 6 and plain.train_data.shape[1] == 5 == one.train_data.shape[1]
    thin = np.stack(label_thin_vessels(train[:, 3].numpy(), train[:, 4].numpy()))
    assert np.array_equal(train[:, 5].numpy() > 0, thin) and 0.2 < thin.sum() / (train[:, 3] > 0).sum() < 0.5

    probe = torch.Generator().manual_seed(7)
    crops = weighed.transform(train, torch.arange(len(train)), probe)
    for _ in range(12):
        weighed.g_step(), plain.g_step(), one.g_step()
    assert same_state(one.G.state_dict(), plain.G.state_dict())
    with torch.no_grad():  # in training mode, as the steps saw the crops (batch statistics)
        on_thin = [torch.sigmoid(t.G(crops.images))[crops.thin > 0].mean().item() for t in (weighed, plain)]
    assert on_thin[0] > on_thin[1] + 0.03, on_thin  # 0.436 against 0.369 here


@pytest.mark.slow
def test_short_real_training_on_drive_beats_the_untrained_model(drive_root):
    cfg = config_from_dict({
        "data": {"dataset": "drive", "root": str(drive_root), "crop_size": 64},
        "model": {"base_width": 8, "depth": 3, "disc_width": 8},
        "loss": {"adversarial": "vanilla", "n_critic": 1},
        "optim": {"lr_g": 2e-3, "lr_d": 2e-4, "betas_g": [0.5, 0.999], "betas_d": [0.5, 0.999]},
        "train": {"epochs": 8, "batch_size": 8, "steps_per_epoch": 15, "eval_batch_size": 4},
    })
    train, val = load_train_val(cfg.data)
    t = Trainer(cfg, train, val, CPU)
    untrained = evaluate(t.G, t.val, CPU)[0]["auc_roc"]
    for _ in range(cfg.train.epochs):
        t.run_epoch()
    assert t.best_score >= 0.85 and t.best_score >= untrained + 0.25, (untrained, t.best_score)


def test_fused_critic_pass_equals_two_passes(tiny_values):
    a, b = make(tiny_values), make(tiny_values)
    assert a.fuse_critic
    b.fuse_critic = False
    for _ in range(3):
        la, lb = a.d_step(), b.d_step()
        assert torch.allclose(la, lb, rtol=1e-4, atol=1e-5), (la, lb)
    assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(a.D.parameters(), b.D.parameters(), strict=True))


def test_batch_norm_critic_is_not_fused(tiny_values):
    assert not make(tiny_values, **{"model.disc_norm": "batch", "loss.adversarial": "vanilla"}).fuse_critic


def test_channels_last_is_a_layout_not_a_model_change(tiny_values):
    nhwc, plain = make(tiny_values), make(tiny_values, **{"train.channels_last": False})
    assert nhwc.next_batch().images.is_contiguous(memory_format=torch.channels_last)
    assert plain.next_batch().images.is_contiguous()
    nhwc.run_epoch(), plain.run_epoch()
    assert nhwc.best_score == pytest.approx(plain.best_score, abs=2e-3)


def test_compiled_generator_trains_like_eager(tiny_values):
    compiled, eager = make(tiny_values, **{"train.compile": True}), make(tiny_values)
    for _ in range(2):
        assert torch.allclose(compiled.g_step(), eager.g_step(), rtol=1e-3, atol=1e-4)
    assert compiled.G_train.error is None  # it really compiled here; elsewhere it may fall back


@pytest.mark.slow
def test_optimised_step_keeps_validation_auc_on_drive(drive_root):
    """Everything `Trainer` does for speed (fused critic, channels_last, bf16 on CUDA) against
    the plain fp32 step, same seed, short training on DRIVE: same validation AUC-ROC (exact).
    Short, because GAN trajectories part chaotically later on (another seed moves this
    configuration's AUC by 0.07 after 30 steps, and float reordering alone by 0.006), whatever the arithmetic."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    values = {
        "data": {"dataset": "drive", "root": str(drive_root), "crop_size": 64},
        "model": {"base_width": 8, "depth": 3, "disc_width": 8},
        "loss": {"adversarial": "vanilla", "n_critic": 1},
        "optim": {"lr_g": 1e-3, "lr_d": 2e-4, "betas_g": [0.5, 0.999], "betas_d": [0.5, 0.999]},
        "train": {"epochs": 1, "batch_size": 8, "steps_per_epoch": 5, "eval_batch_size": 4},
    }
    aucs = []
    for fast in (True, False):
        cfg = config_from_dict(values)
        cfg = apply_overrides(cfg, {"train.amp": fast, "train.channels_last": fast})
        train, val = load_train_val(cfg.data)
        t = Trainer(cfg, train, val, device)
        t.fuse_critic = fast
        for _ in range(cfg.train.epochs):
            t.train_one_epoch()
        aucs.append(evaluate(t.G, t.val, device, amp=False)[0]["auc_roc"])
    print("optimised vs plain val AUC-ROC", aucs)
    assert abs(aucs[0] - aucs[1]) <= 0.005, aucs


def test_a_mixed_size_split_is_predicted_at_each_images_own_size(drive_root, stare_root, tmp_path):
    from conftest import two_camera_dataset

    from vgan.config import DataConfig
    from vgan.data import load_split
    from vgan.trainer import predict_split

    root = two_camera_dataset(drive_root, stare_root, tmp_path / "own", {"training": (1, 1), "test": (1, 1)})
    test = load_split(DataConfig(dataset="folder", root=str(root), crop_size=None), "test")
    assert test.sizes == [(584, 565), (605, 700)]
    t = make({"data": {"dataset": "folder", "root": str(root), "val_count": 1, "crop_size": 32},
              "model": {"base_width": 4, "depth": 2}, "loss": {"adversarial": "none"}})
    probs = predict_split(t.G, test, CPU, batch_size=2)
    assert probs.shape == (2, 1, 605, 700) and not probs[0, :, 584:].any() and not probs[0, :, :, 565:].any()
    for i in (0, 1):
        alone = predict(t.G, test.own(i, test.images[i : i + 1]), CPU)
        assert torch.equal(test.own(i, probs[i : i + 1]), alone)
    metrics, _ = evaluate(t.G, test, CPU)
    assert 0 < metrics["auc_roc"] < 1


def test_a_checkpoint_saved_before_people_were_told_apart_keeps_its_validation_split():
    """A checkpoint's config without data.person was trained on a split drawn image by image: resumed or scored
    on its validation split (--val-threshold), it reads that split, not one of whole people."""
    from vgan.config import Config
    from vgan.trainer import checkpoint_config

    old = Config().to_dict()
    del old["data"]["person"]
    assert checkpoint_config({"config": old}, "old.pt").data.person == "none"
    assert checkpoint_config({"config": Config().to_dict()}, "new.pt").data.person == "eyes"
