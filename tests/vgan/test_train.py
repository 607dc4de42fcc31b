import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import write_yaml

from vgan.evaluate import main as evaluate_main
from vgan.provenance import code_record, describe_code, environment_record
from vgan.train import format_record, main
from vgan.trainer import load_checkpoint


def test_trains_writes_run_folder_and_resumes(tiny_config_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--config", str(tiny_config_file), "--out", str(out)]) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2]
    assert "val_auc_roc" in json.loads(lines[0])
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "checkpoints" / "best.pt").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["epochs"] == 2
    assert len(list((out / "previews").glob("epoch0002_*.png"))) == 2  # one per validation image
    assert "epoch 2/2" in capsys.readouterr().out

    # --resume continues in the same folder up to the new epoch count
    assert main(["--resume", str(out / "checkpoints" / "last.pt"), "--epochs", "3"]) == 0
    epochs = [json.loads(ln)["epoch"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_a_run_resumed_by_other_code_says_so_and_its_checkpoints_keep_what_came_before(tiny_config_file, tmp_path,
                                                                                      capsys):
    out = tmp_path / "run"
    assert main(["--config", str(tiny_config_file), "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    last = out / "checkpoints" / "last.pt"
    assert main(["--resume", str(last), "--epochs", "2", "--quiet"]) == 0  # the same code: nothing to say
    assert "code changed" not in capsys.readouterr().out
    assert load_checkpoint(last)["earlier_code"] == []

    state = load_checkpoint(last)
    other = {"commit": "0123456789abcdef" * 2 + "01234567", "dirty": True}
    torch.save({**state, "code": other}, last)  # as if an earlier commit, edited, had written it
    assert main(["--resume", str(last), "--epochs", "3", "--quiet"]) == 0
    said = capsys.readouterr().out
    now = describe_code(code_record())
    assert f"note: the code changed since {last} was written (commit 0123456789ab (edited) to {now}): " \
           "epochs from here train with it" in said
    resumed = load_checkpoint(last)
    assert resumed["code"] == code_record() and resumed["earlier_code"] == [{"code": other, "until_epoch": 2}]

    assert main(["--resume", str(last), "--epochs", "4", "--quiet"]) == 0  # kept through later resumes
    assert load_checkpoint(last)["earlier_code"] == [{"code": other, "until_epoch": 2}]
    assert evaluate_main(["--checkpoint", str(last), "--out", str(tmp_path / "eval")]) == 0
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert scored["code"] == code_record() and scored["earlier_code"] == [{"code": other, "until_epoch": 2}]


def test_a_run_resumed_on_another_environment_says_what_differs_and_keeps_the_earlier_one(tiny_config_file, tmp_path,
                                                                                         capsys):
    """One commit can train a seed differently on two machines: a checkpoint says what its epochs trained on."""
    out = tmp_path / "run"
    assert main(["--config", str(tiny_config_file), "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    last = out / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    now = environment_record(torch.device("cpu"))
    assert state["environment"] == now and state["earlier_environments"] == []
    assert main(["--resume", str(last), "--epochs", "2", "--quiet"]) == 0  # here again: nothing to say
    assert "another environment" not in capsys.readouterr().out

    elsewhere = {**now, "torch": "2.9.1+cu128", "cpu_capability": "AVX2", "os": "Linux-5.15"}
    torch.save({**load_checkpoint(last), "environment": elsewhere}, last)
    assert main(["--resume", str(last), "--epochs", "3", "--quiet"]) == 0
    assert (f"note: {last} was written on another environment (torch 2.9.1+cu128 to {now['torch']}, cpu_capability "
            f"AVX2 to {now['cpu_capability']}): epochs from here train on this one") in capsys.readouterr().out
    resumed = load_checkpoint(last)
    assert resumed["environment"] == now and resumed["earlier_environments"] == [{"environment": elsewhere,
                                                                                  "until_epoch": 2}]
    assert evaluate_main(["--checkpoint", str(last), "--out", str(tmp_path / "eval")]) == 0
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert scored["environment"] == now and scored["earlier_environments"] == resumed["earlier_environments"]
    assert scored["evaluation_environment"] == now

    del state["environment"], state["earlier_environments"]  # written before environments were recorded
    torch.save(state, last)
    assert evaluate_main(["--checkpoint", str(last), "--out", str(tmp_path / "eval-old")]) == 0
    scored = json.loads((tmp_path / "eval-old" / "metrics.json").read_text())
    assert scored["environment"] is None and scored["earlier_environments"] == []
    assert main(["--resume", str(last), "--epochs", "2", "--quiet"]) == 0
    assert "another environment" not in capsys.readouterr().out
    assert load_checkpoint(last)["earlier_environments"] == []


def test_its_output_read_by_head_stops_it_saying_how_to_go_on(tiny_config_file, tmp_path):
    """`python -m vgan.train ... | head`: head leaves, and the next epoch's line met a closed pipe: a traceback, exit 1,
    no word of the epochs saved. It stops as Ctrl-C stops it, saying how to go on, with SIGPIPE's status."""
    out = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "vgan.train", "--config", str(tiny_config_file), "--out", str(out),
                             "--epochs", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while not proc.stdout.readline().startswith(b"epoch 1/8"):
        assert proc.poll() is None, proc.stderr.read().decode()
    proc.stdout.close()  # as head does after its lines: epochs 2 to 8 are still to be printed
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141, err
    assert "Traceback" not in err
    assert err.splitlines()[-2:] == [
        f"go on from the last epoch saved with: python -m vgan.train --resume {out / 'checkpoints' / 'last.pt'}",
        "vgan.train: stopped: the reader of its output closed the pipe"]
    assert 1 <= len((out / "metrics.jsonl").read_text().splitlines()) < 8


def ctrl_c() -> None:
    raise KeyboardInterrupt


def sigterm() -> None:  # a scheduler's stop (Slurm's time limit, a preemption): it ended the run at once before
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize(("stop", "status", "said"), [(ctrl_c, 130, "interrupted"),
                                                      (sigterm, 143, "stopped by SIGTERM")])
def test_ctrl_c_says_how_to_go_on_and_that_command_finishes_the_run(stop, status, said, tiny_config_file, tmp_path,
                                                                     capsys, monkeypatch):
    import shlex

    from vgan.trainer import Trainer

    run_epoch = Trainer.run_epoch

    def stopped_in_epoch_3(self, progress=False):
        if self.epoch == 2:
            stop()
        return run_epoch(self, progress)

    out = tmp_path / "my runs" / "r"
    monkeypatch.setattr(Trainer, "run_epoch", stopped_in_epoch_3)
    assert main(["--config", str(tiny_config_file), "--out", str(out), "--epochs", "4", "--quiet"]) == status
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"vgan.train: {said}"
    (line,) = [ln for ln in err if ln.startswith("go on from the last epoch saved with: ")]
    monkeypatch.setattr(Trainer, "run_epoch", run_epoch)
    command = shlex.split(line.split(": ", 1)[1])
    assert command[:3] == ["python", "-m", "vgan.train"] and main(command[3:] + ["--quiet"]) == 0
    epochs = [json.loads(ln)["epoch"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]  # the --epochs it was given, in the same folder

    # interrupted in its first epoch, in a folder an earlier run left its last.pt in: that is not this run's
    early = tmp_path / "early" / "checkpoints"
    early.mkdir(parents=True)
    shutil.copy(out / "checkpoints" / "last.pt", early)
    os.utime(early / "last.pt", (time.time() - 60, time.time() - 60))
    monkeypatch.setattr(Trainer, "run_epoch", lambda self, progress=False: stop())
    assert main(["--config", str(tiny_config_file), "--out", str(early.parent), "--quiet"]) == status
    assert "no epoch was finished: nothing to resume" in capsys.readouterr().err
    # ... and where it was resumed (--epochs 9: more than the checkpoint's config says), the same command again
    assert main(["--resume", str(early / "last.pt"), "--epochs", "9", "--quiet"]) == status
    assert capsys.readouterr().err.splitlines()[-2] == \
        f"no epoch was finished: the same command goes on from {early / 'last.pt'} again"



def test_resume_from_an_earlier_checkpoint_drops_later_history(tiny_config_file, tmp_path):
    out = tmp_path / "run"
    assert main(["--config", str(tiny_config_file), "--out", str(out), "--epochs", "1"]) == 0
    (out / "checkpoints" / "last.pt").rename(out / "epoch1.pt")
    assert main(["--config", str(tiny_config_file), "--out", str(out), "--epochs", "2"]) == 0
    assert main(["--resume", str(out / "epoch1.pt"), "--out", str(out), "--epochs", "2"]) == 0
    epochs = [json.loads(ln)["epoch"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]


def bad(argv, capsys, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one message, no traceback
    for f in fragments:
        assert f in err, err


def test_set_changes_keys_over_the_config_and_the_checkpoint(tiny_config_file, tmp_path, capsys):
    """`--set KEY=VALUE` (another seed, learning rate, a loss), where a YAML file had to be written: the run trains
    with it and its config.yaml says so; on --resume it changes the checkpoint's config as --epochs does."""
    out = tmp_path / "run"
    assert main(["--config", str(tiny_config_file), "--out", str(out), "--quiet", "--set", "train.seed=7",
                 "--set", "optim.lr_g=3e-4", "--set", "train.epochs=1", "--set", "loss.adversarial=none"]) == 0
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["train"]["seed"] == 7 and written["optim"]["lr_g"] == 3e-4 and written["train"]["epochs"] == 1
    assert written["loss"]["adversarial"] == "none" and ", D " not in capsys.readouterr().out  # no critic built
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["config"]["train"]["seed"] == 7 and state["epoch"] == 1
    assert main(["--resume", str(out / "checkpoints" / "last.pt"), "--set", "train.epochs=2", "--quiet"]) == 0
    assert [json.loads(ln)["epoch"] for ln in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["seed"] == 7


def test_the_epoch_line_shows_the_cldice_term_where_it_is_on():
    r = {"epoch": 3, "loss_g": 0.9, "loss_bce": 0.3, "loss_d": 0.2, "val_auc_roc": 0.9, "val_auc_pr": 0.7,
         "val_f1": 0.6, "epoch_s": 9.0, "val_s": 1.0}
    assert "bce 0.3000  cldice 0.2500  loss_d 0.2000" in format_record({**r, "loss_cldice": 0.25}, 60, False)
    # off (0), or a record written before the term existed
    assert "cldice" not in format_record({**r, "loss_cldice": 0.0}, 60, False) + format_record(r, 60, False)


def test_the_epoch_line_shows_validation_cldice_or_thin_vessel_auc_where_it_is_scored():
    r = {"epoch": 3, "loss_g": 0.9, "loss_bce": 0.3, "loss_d": 0.2, "val_auc_roc": 0.9, "val_auc_pr": 0.7,
         "val_f1": 0.6, "epoch_s": 9.0, "val_s": 1.0}
    assert "F1 0.6000  clDice 0.5500  9.0s (+1.0s val)" in format_record({**r, "val_cldice": 0.55}, 60, True)
    assert "F1 0.6000  clDice 0.0000  9.0s" in format_record({**r, "val_cldice": 0.0}, 60, True)  # no vessel kept
    assert "clDice" not in format_record(r, 60, False)  # a run selected on another metric does not score it
    assert "F1 0.6000  thin AUC-ROC 0.9123  9.0s" in format_record({**r, "val_thin_auc_roc": 0.9123}, 60, True)
    assert "thin" not in format_record(r, 60, False)


@pytest.mark.parametrize("argv, fragments", [
    (["--set", "train.epochz=3"], ["unknown key 'train.epochz' (known keys in 'train': train.epochs,"]),
    (["--set", "train.epochs=abc"], ["vgan.train: error: --set train.epochs=abc: 'train.epochs' must be an integer, "
                                     "got 'abc'"]),
    (["--set", "epochs"], ["--set 'epochs': give KEY=VALUE"]),
    (["--set", "train.epochs=3", "--epochs", "2"], ["--set train.epochs=... and --epochs: give one"]),
    (["--set", "optim.lr_g=-1e-3"], ["error: --set optim.lr_g=-1e-3: 'optim.lr_g' must be > 0"]),
    (["--set", "optim.betas_g=[1]"], ["error: --set optim.betas_g=[1]: 'optim.betas_g' must be a list of 2 numbers"]),
    (["--epochs", "0"], ["error: --epochs 0: 'train.epochs' must be at least 1"]),
    # a check of two keys, one set and one not: the key checked, the command line named
    (["--set", "model.depth=6"], ["error: command line: 'data.crop_size' must be at least 2**model.depth = 64"]),
])
def test_a_bad_set_exits_2_naming_it(tiny_config_file, tmp_path, capsys, argv, fragments):
    bad(["--config", str(tiny_config_file), "--out", str(tmp_path / "o"), *argv], capsys, *fragments)
    assert not (tmp_path / "o").exists()  # nothing started


@pytest.mark.parametrize("argv, said", [
    (["--help"], "usage: python -m vgan.train"),
    (["--set", "train.epochz=3"], "unknown key 'train.epochz'"),
    (["--config", "missing.yaml"], "missing.yaml"),
    (["--device", "tpu"], "invalid choice: 'tpu'"),
])
def test_help_and_a_refused_command_answer_without_importing_torch(tmp_path, argv, said):
    """torch takes 1.3-1.7 s to import on a 2-core machine: --help and a command refused for its options or config
    answer before it (no timing here: whether it was imported is the behaviour)."""
    code = ("import sys\nfrom vgan.train import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('torch imported:', 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert said in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "torch imported: False" in proc.stdout, proc.stdout + proc.stderr


def test_bad_config_exits_2(tmp_path, capsys, tiny_values):
    tiny_values["loss"]["n_crtic"] = 3
    path = write_yaml(tmp_path / "typo.yaml", tiny_values)
    bad(["--config", str(path), "--out", str(tmp_path / "o")], capsys, "typo.yaml", "'loss.n_crtic'")
    assert not (tmp_path / "o").exists()  # nothing started


def test_an_output_folder_that_cannot_be_made_exits_2(tiny_config_file, tmp_path, capsys):
    (tmp_path / "taken").write_text("a file where the run folder would go")
    bad(["--config", str(tiny_config_file), "--out", str(tmp_path / "taken")], capsys,
        "--out", "is a file, not a folder")
    bad(["--config", str(tiny_config_file), "--out", str(tmp_path / "taken" / "run")], capsys,
        f"--out {tmp_path / 'taken' / 'run'}: cannot write there (Not a directory)")


def test_crop_not_divisible_exits_2(tmp_path, capsys, tiny_values):
    tiny_values["data"]["crop_size"] = 30
    path = write_yaml(tmp_path / "c.yaml", tiny_values)
    bad(["--config", str(path)], capsys, "'data.crop_size'", "divisible")


def test_missing_data_root_exits_2(tmp_path, capsys, tiny_values):
    tiny_values["data"] = {"dataset": "drive", "crop_size": 32}
    path = write_yaml(tmp_path / "d.yaml", tiny_values)
    bad(["--config", str(path), "--data", str(tmp_path / "DRIVE")], capsys, "DRIVE: dataset root missing")
    bad(["--config", str(path)], capsys, "data.root is required")


def test_missing_file_exits_2(tmp_path, capsys, tiny_values, drive_copy):
    (drive_copy / "training" / "mask" / "30_training_mask.gif").unlink()
    tiny_values["data"] = {"dataset": "drive", "crop_size": 32}
    path = write_yaml(tmp_path / "d.yaml", tiny_values)
    bad(["--config", str(path), "--data", str(drive_copy)], capsys, "30_training_mask.gif: file missing")


def test_crop_larger_than_images_exits_2(tmp_path, capsys, tiny_values):
    tiny_values["data"]["crop_size"] = 64  # synthetic images are 48 px
    path = write_yaml(tmp_path / "c.yaml", tiny_values)
    bad(["--config", str(path)], capsys, "crop_size = 64 is larger than the training images (48x48)")


def test_data_for_synthetic_exits_2(tiny_config_file, tmp_path, capsys, stare_root):
    bad(["--config", str(tiny_config_file), "--data", str(tmp_path)], capsys,
        f"--data {tmp_path}: {tiny_config_file} trains on the synthetic dataset, which is generated and takes no data "
        "root\n")
    # a root in a dataset's layout: the config that trains on it is named
    bad(["--data", str(stare_root)], capsys, f"--data {stare_root}: the built-in defaults train on the synthetic "
        f"dataset, which is generated and takes no data root; {stare_root} is in STARE's layout: train on it with a "
        "config of data.dataset: stare (configs/stare.yaml)\n")
    run = tmp_path / "run"
    assert main(["--config", str(tiny_config_file), "--out", str(run), "--quiet"]) == 0
    last = run / "checkpoints" / "last.pt"
    bad(["--resume", str(last), "--data", str(stare_root)], capsys,
        f"--data {stare_root}: {last}'s config trains on the synthetic dataset")


def test_checkpoint_of_another_shape_exits_2(tiny_config_file, tiny_values, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--config", str(tiny_config_file), "--out", str(out), "--epochs", "1"]) == 0
    capsys.readouterr()
    tiny_values["model"]["depth"] = 3
    tiny_values["data"]["crop_size"] = 40
    other = write_yaml(tmp_path / "deeper.yaml", tiny_values)
    bad(["--config", str(other), "--resume", str(out / "checkpoints" / "last.pt")], capsys,
        "checkpoint of another model shape", "model.depth: checkpoint 2, config 3")


def test_a_checkpoint_of_a_version_with_a_retired_key_resumes_where_it_asked_for_nothing(tiny_config_file, tmp_path,
                                                                                           capsys):
    """A checkpoint saved by a version that had data.jpeg_prob holds it: at 0 (what every run but a JPEG one saved)
    it resumes; at 0.3 resuming would train on without what it asked for, so it is refused, the checkpoint kept,
    while evaluating it, which needs only its generator, gives the figures of the same weights saved without it."""
    out = tmp_path / "run"
    assert main(["--config", str(tiny_config_file), "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    last = out / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    assert evaluate_main(["--checkpoint", str(last), "--out", str(tmp_path / "now")]) == 0
    for value, name in ((0.0, "old.pt"), (0.3, "jpeg.pt")):
        torch.save({**state, "config": {**state["config"], "data": {**state["config"]["data"], "jpeg_prob": value}}},
                   out / "checkpoints" / name)
    assert evaluate_main(["--checkpoint", str(out / "checkpoints" / "jpeg.pt"), "--out", str(tmp_path / "old")]) == 0
    now, old = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("now", "old"))
    assert [old[k] for k in ("auc_roc", "f1", "per_image", "pair_counts")] == \
        [now[k] for k in ("auc_roc", "f1", "per_image", "pair_counts")]

    capsys.readouterr()
    jpeg = out / "checkpoints" / "jpeg.pt"
    kept = jpeg.read_bytes()
    bad(["--resume", str(jpeg), "--epochs", "2"], capsys,
        f"{jpeg} (saved config): 'data.jpeg_prob' is 0.3, which this version cannot do: it asked for training crops "
        "saved as JPEG", "resuming would train the epochs left without it")
    assert jpeg.read_bytes() == kept
    assert main(["--resume", str(out / "checkpoints" / "old.pt"), "--epochs", "2", "--quiet"]) == 0
    assert load_checkpoint(last)["epoch"] == 2 and "jpeg_prob" not in load_checkpoint(last)["config"]["data"]


def test_unknown_argument_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--epoch", "3"])
    assert e.value.code == 2


def test_divergence_exits_1(tmp_path, capsys, tiny_values):
    tiny_values["optim"] = {"lr_d": 1e30}
    tiny_values["model"]["disc_norm"] = "none"
    path = write_yaml(tmp_path / "div.yaml", tiny_values)
    assert main(["--config", str(path), "--out", str(tmp_path / "o")]) == 1
    assert "diverged at epoch 1" in capsys.readouterr().err
