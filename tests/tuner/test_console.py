"""The console of a study: one table, redrawn in place on a terminal, and one line per trial end."""

import os
import signal
import sys
from types import SimpleNamespace

import pytest
from ray_trials import ray_trial, state_saved

from tuner.console import Progress, tee


def trial(trial_id, last=None, **config):
    return SimpleNamespace(trial_id=trial_id, config=config or {"optim.lr_g": 0.001}, last_result=last,
                           error_file=None, get_error=lambda: "RuntimeError: boom\n")


def feed(p, t, epochs, score=0.9):
    for e in range(1, epochs + 1):
        p.on_trial_result(0, [], t, {"epoch": e, "val_auc_roc": score - 0.01 * (epochs - e),
                                     "best_val_auc_roc": score})


def test_each_trial_end_is_one_line_with_its_outcome(capsys):
    p = Progress("auc_roc", "best_val_auc_roc", max_epochs=6, live=False)
    done, stopped, broken = trial("a1"), trial("b2"), trial("c3", **{"optim.lr_g": 0.01, "loss.adversarial": "none"})
    for t, epochs in ((done, 6), (stopped, 2), (broken, 1)):
        p.on_trial_start(0, [], t)
        feed(p, t, epochs)
    done.last_result, stopped.last_result, broken.last_result = ({"epoch": 6}, {"epoch": 2}, {"epoch": 1})
    p.on_trial_complete(0, [], done)
    p.on_trial_complete(0, [], stopped)
    p.on_trial_error(0, [], broken)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["trial a1 completed: best_val_auc_roc 0.9000 (lr_g=0.001)",
                     "trial b2 pruned at epoch 2: best_val_auc_roc 0.9000 (lr_g=0.001)",
                     "trial c3 failed: RuntimeError: boom: best_val_auc_roc 0.9000 (lr_g=0.01, adversarial=none)"]


def test_trials_the_fits_end_stopped_end_as_the_saved_state_tells(tmp_path, capsys):
    """Ctrl-C: Ray saves the study's state with the trials still to run, then stops them; a spent time budget
    stops them first (saved TERMINATED). Neither is told to the callbacks: the line says which it was."""
    waiting, stopped, done = (ray_trial(tmp_path, "waiting"), ray_trial(tmp_path, "stopped", "TERMINATED"),
                              ray_trial(tmp_path, "done", "TERMINATED"))
    p = Progress("auc_roc", "best_val_auc_roc", max_epochs=6, live=False)
    for t, epochs in ((waiting, 2), (stopped, 3), (done, 6)):
        p.on_trial_start(0, [], t)
        feed(p, t, epochs)
        t.update_last_result({"epoch": epochs})
    p.on_trial_complete(0, [], done)
    state_saved(tmp_path, waiting, stopped, done)
    p.on_experiment_end([waiting, stopped, done])
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(":")[0] for ln in lines] == [f"trial {done.trial_id} completed",
                                                 f"trial {waiting.trial_id} interrupted at epoch 2",
                                                 f"trial {stopped.trial_id} stopped at epoch 3"]
    assert [p.rows[t.trial_id].status for t in (waiting, stopped, done)] == [
        "interrupted at epoch 2", "stopped at epoch 3", "completed"]


def test_without_a_saved_state_the_fits_end_stopped_them(tmp_path, capsys):
    """A study stopped before Ray saved its state leaves nothing to a resume."""
    t = ray_trial(tmp_path, "early")
    p = Progress("auc_roc", "best_val_auc_roc", max_epochs=6, live=False)
    p.on_trial_start(0, [], t)
    feed(p, t, 1)
    t.update_last_result({"epoch": 1})
    p.on_experiment_end([t])
    assert capsys.readouterr().out.startswith(f"trial {t.trial_id} stopped at epoch 1: ")


def test_the_table_has_a_row_per_trial_and_is_redrawn_in_place(capsys):
    p = Progress("auc_roc", "best_val_auc_roc", max_epochs=6, live=True)
    a, b = trial("a1"), trial("b2", **{"optim.lr_g": 0.02})
    for t in (a, b):
        p.on_trial_start(0, [], t)
        feed(p, t, 3, 0.95)
    p.on_experiment_end([])
    head, *rows = p.table()
    assert head.split() == ["trial", "status", "epoch", "val", "auc_roc", "best", "lr_g"]
    assert rows[0].split() == ["a1", "running", "3/6", "0.9500", "0.9500", "0.001"]
    assert rows[1].split()[0] == "b2" and rows[1].split()[-1] == "0.02"
    frames = capsys.readouterr().out.split("\x1b[J")
    # each new frame first moves up over the previous one (as many lines as it had) and clears it
    assert len(frames) >= 2 and all(f.endswith(f"\x1b[{f.count(chr(10))}F") for f in frames[:-1])
    assert frames[-1].splitlines() == [head, *rows]


def test_tee_keeps_what_was_printed_in_the_study_log(tmp_path, capsys):
    log = tmp_path / "study.log"
    with tee(log):
        print("study s1: 8 trials")
    assert capsys.readouterr().out == "study s1: 8 trials\n" and log.read_text() == "study s1: 8 trials\n"


@pytest.mark.parametrize("handler", [signal.default_int_handler, signal.SIG_IGN], ids=["python's", "ignored"])
def test_a_reader_gone_stops_the_study_once_as_ctrl_c_and_the_log_keeps_the_rest(tmp_path, handler):
    """The terminal a closed pipe (`| head` done): the first print that meets it raises SIGINT (KeyboardInterrupt
    here, as Python's own handler does it; Tune's in a fit), no BrokenPipeError, once; what follows is still logged,
    and the pipe's descriptor now writes to /dev/null. Where SIGINT is ignored (a job started in the background;
    pytest-xdist's workers) the stop is raised all the same."""
    before = signal.signal(signal.SIGINT, handler)
    try:
        reader_gone(tmp_path)
    finally:
        signal.signal(signal.SIGINT, before)


def reader_gone(tmp_path):
    read, write = os.pipe()
    os.close(read)
    terminal = os.fdopen(write, "w")
    log = tmp_path / "study.log"
    with tee(log) as teed:
        sys.stdout.terminal = terminal  # the study's stdout is the pipe: no pytest capture between
        with pytest.raises(KeyboardInterrupt):
            print("trial t1 completed", flush=True)
        assert teed.reader_gone
        print("study s1 interrupted: ... with: python -m tuner.run ... --resume", flush=True)  # no second SIGINT
    terminal.close()  # its descriptor holds /dev/null: closing it raises nothing
    assert log.read_text().splitlines() == ["trial t1 completed",
                                            "study s1 interrupted: ... with: python -m tuner.run ... --resume"]


def test_the_log_file_table_takes_trials_without_a_conditional_key(tmp_path):
    """Ray's reporter looks each column up in the best trial's config: a plain U-Net has no critic
    learning rate, so the search's conditional keys must not be columns (a study crashed on it)."""
    import time

    from conftest import REPO
    from ray.tune.experiment import Trial

    from tuner.console import LogFileReporter
    from tuner.space import load_space

    space = load_space(REPO / "search_spaces" / "drive_cpu.yaml", str(tmp_path))  # lr_d only when a GAN
    unet = {"loss.adversarial": "none", "optim.lr_g": 1e-3, "data.crop_size": 96, "data.augment_strength": 1.0,
            "loss.cldice_weight": 0.0, "loss.thin_weight": 1.0}
    gan = {**unet, "loss.adversarial": "vanilla", "optim.lr_d": 2e-4, "loss.adv_weight": 0.1}
    trials = []
    for i, (config, score) in enumerate(((unet, 0.97), (gan, 0.95))):
        t = Trial("train_vgan", config=config, stub=True, trial_id=f"t{i}")
        t.run_metadata.last_result = {"epoch": 3, "val_auc_roc": score, "best_val_auc_roc_mean3": score,
                                      "training_iteration": 3, "config": config}
        t.set_status(Trial.TERMINATED)
        t.storage = SimpleNamespace(experiment_driver_staging_path=str(tmp_path),
                                    trial_driver_staging_path=str(tmp_path))
        trials.append(t)
    reporter = LogFileReporter(tmp_path / "study.log", "auc_roc", space.score, space.params)
    reporter.setup(start_time=time.time(), total_samples=2, metric=space.score, mode="max")
    reporter.report(trials, True)
    text = (tmp_path / "study.log").read_text()
    assert "Current best trial: t0" in text and "lr_g" in text and "lr_d" not in text


def test_the_log_table_ranks_trials_that_ended_before_their_first_epoch_last(tmp_path):
    """A time budget stops trials that have not reported yet: Ray's own sort compared their missing scores
    and raised TypeError at the study's end, losing its summary and registration."""
    import time

    from conftest import REPO
    from ray.tune.experiment import Trial

    from tuner.console import LogFileReporter
    from tuner.space import load_space

    space = load_space(REPO / "search_spaces" / "smoke.yaml")
    trials = []
    for i, score in enumerate((None, 0.91, None, 0.97)):
        t = Trial("train_vgan", config={}, stub=True, trial_id=f"t{i}")
        if score is not None:
            t.run_metadata.last_result = {"epoch": 2, "val_auc_roc": score, space.score: score,
                                          "training_iteration": 2, "config": {}}
        t.set_status(Trial.TERMINATED)
        t.storage = SimpleNamespace(experiment_driver_staging_path=str(tmp_path),
                                    trial_driver_staging_path=str(tmp_path))
        trials.append(t)
    reporter = LogFileReporter(tmp_path / "study.log", "auc_roc", space.score, [])
    reporter.setup(start_time=time.time(), total_samples=4, metric=space.score, mode="max")
    reporter.report(trials, True)
    rows = [ln.split()[1] for ln in (tmp_path / "study.log").read_text().splitlines() if ln.startswith("| train_vgan_")]
    assert [r.rsplit("_", 1)[-1] for r in rows] == ["t3", "t1", "t0", "t2"], rows
