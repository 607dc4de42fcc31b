"""The trial's score: a noise-robust signal that ASHA and the searcher act on."""

import math
from types import SimpleNamespace

import pytest

from tuner.outcome import Signal, score_key

# a GAN's validation AUC: one lucky epoch (0.93) in a trial that is worse on average
LUCKY = [0.80, 0.93, 0.81, 0.82]
STEADY = [0.86, 0.87, 0.88, 0.88]


def scores(values, window):
    s = Signal(window)
    return [s.update(v) for v in values]


def test_window_one_is_the_best_epoch_so_far():
    assert scores(LUCKY, 1) == [0.80, 0.93, 0.93, 0.93]
    assert score_key("auc_roc") == "best_val_auc_roc"


def test_a_window_averages_the_last_epochs_and_never_decreases():
    assert scores(LUCKY, 3) == pytest.approx([0.80, 0.865, 0.865, 0.865])  # 0.8467, 0.8533 do not beat 0.865
    assert scores(STEADY, 3) == pytest.approx([0.86, 0.865, 0.87, 0.8766667])
    assert score_key("auc_roc", 3) == "best_val_auc_roc_mean3"


def test_non_finite_values_do_not_count():
    s = Signal(2)
    assert s.update(math.nan) == -math.inf and s.update(0.7) == -math.inf  # mean with a NaN
    assert s.update(0.8) == pytest.approx(0.75)


@pytest.mark.parametrize("window, decision", [(1, "CONTINUE"), (3, "STOP")])
def test_asha_decides_on_the_signal(window, decision):
    """ASHA's rung at epoch 3 (keep 1 of 2), the steady trial recorded there first: on the best single
    epoch the lucky trial (0.93 once) goes on; on the 3-epoch signal (0.865 < 0.87) it is stopped."""
    from ray.tune.schedulers import ASHAScheduler

    key = score_key("auc_roc", window)
    asha = ASHAScheduler(time_attr="epoch", metric=key, mode="max", max_t=9, grace_period=3, reduction_factor=2)
    trials = {name: SimpleNamespace(trial_id=name, status="RUNNING") for name in ("steady", "lucky")}
    for t in trials.values():
        asha.on_trial_add(None, t)
    for name, values in (("steady", STEADY), ("lucky", LUCKY)):
        signal = Signal(window)
        for epoch, value in enumerate(values[:3], 1):
            seen = asha.on_trial_result(None, trials[name], {"epoch": epoch, key: signal.update(value)})
    assert seen == decision  # lucky's, at the rung


def test_a_trial_is_named_after_its_outcome_everywhere_a_person_reads_it():
    from tuner.outcome import decide

    assert decide({"epoch": 6}, None, 6).name("a1") == "a1 completed"
    assert decide({"epoch": 2}, None, 6).name("b2") == "b2 pruned at epoch 2"
    assert decide({"epoch": 1}, "Traceback ...\nRuntimeError: boom\n", 6).name("c3") == "c3 failed"


# Ray's error log of a trial whose node was killed (tests/tuner/test_cluster_faults.py): Ray took the lost
# node for a preemption, so its num_failures stayed 0, though the trial was restarted on the other node
LOST_NODE = """Failure # 0 (occurred at 2026-12-02_03-39-55)
The actor died unexpectedly before finishing this task.
\tclass_name:
\tactor_id: 12e49d87444f52ff1065d72503000000
"""
RAISED_TWICE = "Failure # 1 (occurred at 03-41-43)\nTraceback ...\nRuntimeError: injected\n" \
               "Failure # 2 (occurred at 03-41-50)\nTraceback ...\nRuntimeError: injected\n"


@pytest.mark.parametrize("log, num_failures, expected", [
    (LOST_NODE, 0, 1),
    (RAISED_TWICE, 2, 2),
    ("RuntimeError: boom", 1, 1),  # no log file: Ray's count
])
def test_failures_are_counted_from_the_error_log_and_ray(tmp_path, log, num_failures, expected):
    from tuner.outcome import failures, trial_error

    path = tmp_path / "error.txt"
    path.write_text(log)
    trial = SimpleNamespace(error_file=str(path) if log.startswith("Failure") else None, num_failures=num_failures,
                            get_error=lambda: log)
    assert failures(trial, trial_error(trial)) == expected
