"""The whole search, for real: Ray, Optuna, ASHA, MLflow and the registry on the smoke space."""

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import folder_dataset, frame_white, two_camera_dataset, write_yaml
from studies import ONE_STUDY_AT_A_TIME, SMOKE, quick_smoke, trial_runs
from studies import steps as epoch_steps

from tuner.run import main
from tuner.tracking import use_tracking_uri

pytestmark = ONE_STUDY_AT_A_TIME


def test_a_study_resumes_and_replays_only_with_what_it_began_with(tmp_path, capsys):
    """An edited space would mix trials of two recipes in one ranking: refused before Ray starts, naming
    what changed. How long (num_samples, the time budget) and where (threads, device) may change."""
    from tuner.replay import main as replay_main
    from tuner.space import check_same_recipe, load_space, trial_recipe
    from tuner.storage import RECIPE_FILE, parse_storage

    values = yaml.safe_load(SMOKE.read_text())
    storage = parse_storage(str(tmp_path / "ray"))
    storage.write_text("s", RECIPE_FILE, json.dumps(trial_recipe(load_space(write_yaml(tmp_path / "a.yaml", values)))))
    values["tune"].update(num_samples=30, time_budget_s=600)
    values.setdefault("train", {}).update(threads=1, device="cpu")
    check_same_recipe(load_space(write_yaml(tmp_path / "b.yaml", values)), storage.read_text("s", RECIPE_FILE), "s",
                      "--resume", "")  # allowed changes
    values.setdefault("optim", {})["lr_d"] = 0.0003
    values["search"]["optim.lr_g"]["high"] = 0.05
    edited = write_yaml(tmp_path / "c.yaml", values)
    code = main(["--space", str(edited), "--storage", str(tmp_path / "ray"), "--name", "s", "--resume",
                 "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"--resume: {edited} is not what study 's' began with (optim.lr_d: " in err
    assert "-> 0.0003; search.optim.lr_g: {" in err and "'high': 0.05" in err
    assert [p.name for p in (tmp_path / "ray" / "s").iterdir()] == [RECIPE_FILE]  # nothing started
    # tuner.replay would log the trials' models with configs they were not trained with
    assert replay_main(["--space", str(edited), "--storage", str(tmp_path / "ray"), "--name", "s",
                        "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]) == 2
    assert f"--space: {edited} is not what study 's' began with (optim.lr_d: " in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


def test_a_study_begun_with_a_study_db_is_continued_and_replayed_only_with_it(tmp_path, capsys):
    """Ray's state brings a study's searcher back with its database, but the study's end reads the Optuna
    study from --study-db: one given at the start and not again was a KeyError after the trials (on
    PostgreSQL, where a cluster keeps it). Refused before anything starts, naming the database it began with."""
    import optuna

    from tuner.replay import main as replay_main
    from tuner.space import load_space, trial_recipe
    from tuner.storage import RECIPE_FILE, STUDY_DB_FILE, parse_storage

    storage = parse_storage(str(tmp_path / "ray"))
    storage.write_text("s", RECIPE_FILE, json.dumps(trial_recipe(load_space(SMOKE))))
    storage.write_text("s", "experiment_state-2026-12-04_08-00-00.json", "{}")  # Ray saved its state: it began
    began = f"sqlite:///{tmp_path}/cluster.db"
    storage.write_text("s", STUDY_DB_FILE, began + "\n")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="s", storage=began)
    common = ["--space", str(SMOKE), "--storage", str(tmp_path / "ray"), "--name", "s",
              "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    said = (f"the Optuna database sqlite:///{tmp_path}/ray/optuna.db holds no study 's'; "
            f"it began with --study-db {began}")
    assert main([*common, "--resume"]) == 2
    assert f"--resume: {said}" in capsys.readouterr().err
    assert replay_main(common) == 2
    assert f"--study-db: {said}" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray" / "optuna.db").exists()


@pytest.mark.slow
def test_a_study_whose_driver_stopped_before_ray_saved_it_resumes_anew(ray_tmpdir, tmp_path, capsys):
    """A driver killed between the study's start and Ray's first snapshot leaves a folder Ray cannot restore
    (only our recipe): --resume starts its trials anew under the same name, MLflow run and recipe; a folder
    that holds no study at all is refused."""
    from mlflow.tracking import MlflowClient

    from tuner.storage import RECIPE_FILE, STUDY_DB_FILE, parse_storage

    space = quick_smoke(tmp_path / "space.yaml", train={"epochs": 2})

    def study(name: str) -> list[str]:
        return ["--space", str(space), "--storage", str(tmp_path / "ray"), "--name", name,
                "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]

    common = study("s")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmpdir)}
    killed = ("import os, sys, tuner.run as run, tuner.search as search\n"
              "def kill(*a, **k): os._exit(9)\n"  # the driver dies as Ray's Tuner is being built
              "search.build_tuner = kill\n"
              f"sys.exit(run.main({common!r}))")
    proc = subprocess.run([sys.executable, "-c", killed], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 9, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "ray" / "s").iterdir()) == [RECIPE_FILE, STUDY_DB_FILE]
    assert not parse_storage(str(tmp_path / "ray")).begun("s")
    assert main(common) == 2  # a new study under its name is refused
    assert "(use --resume to continue it)" in capsys.readouterr().err
    # as a driver killed later, before Ray's first snapshot, leaves a trial it had begun
    begun = tmp_path / "ray" / "s" / "train_vgan_0badf00d_1_optim_lr_g=0.0010_2026-12-07_10-31-00"
    (begun / "checkpoint_000000").mkdir(parents=True)
    (begun / "params.json").write_text("{}")

    proc = subprocess.run([sys.executable, "-m", "tuner.run", *common, "--resume", "--num-samples", "2",
                           "--no-register"], cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "study s: its driver stopped before Ray saved any state of it; its trials start anew" in proc.stdout
    assert "study s: removed the folders of 1 trial(s) its dead driver had begun after Ray last saved its state, " \
           "which Ray did not resume (its searcher proposed anew): 0badf00d" in proc.stdout, proc.stdout[-3000:]
    assert not begun.exists() and len(list((tmp_path / "ray" / "s").glob("train_vgan_*"))) == 2
    assert "the code changed" not in proc.stdout  # resumed by the code that began it
    assert parse_storage(str(tmp_path / "ray")).begun("s")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name(yaml.safe_load(space.read_text())["mlflow"]["experiment"])
    runs = client.search_runs([exp.experiment_id], "tags.study = 's'")
    parents = [r for r in runs if r.data.tags.get("kind") == "study"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the killed driver's run, finished
    trials = [r for r in runs if "trial_id" in r.data.tags]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials), [r.info.status for r in trials]

    (tmp_path / "ray" / "other").mkdir()
    assert main([*study("other"), "--resume"]) == 2
    assert f"--resume: {tmp_path / 'ray' / 'other'} holds no study (neither Ray's state nor recipe.json)" in \
        capsys.readouterr().err


@pytest.mark.slow
def test_a_study_interrupted_with_ctrl_c_goes_on_when_resumed_losing_nothing(ray_tmpdir, tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) as the first epoch is reported: Ray saves the study's
    state with the running trials still to run, then stops them. The study ended them as pruned before, and
    deleted their checkpoints, so its resume failed them ("Could not recover from checkpoint as it does not exist
    on storage anymore") and Optuna kept them pruned. Now they wait, and go on with the command it prints; so
    they do after a SIGTERM, and after a Ctrl-C once the trials have ended."""
    import shlex
    import signal

    import optuna

    space = quick_smoke(tmp_path / "space.yaml", "intr", tune={"num_samples": 8})
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmpdir)}
    study_dir = tmp_path / "ray" / "c"
    proc = subprocess.Popen([sys.executable, "-m", "tuner.run", "--space", str(space), "--name", "c",
                             "--storage", str(tmp_path / "ray"), "--tracking-uri", uri, "--num-samples", "4"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while not any(f.stat().st_size for f in study_dir.glob("train_vgan_*/result.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "no epoch was reported"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, out[-3000:]
    assert "registered intr version" not in out and "tuner.run: interrupted" in out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("study c interrupted: ")]
    resume = line.split(" with: ", 1)[1].split(";", 1)[0]
    # the options given (here: 4 of the space's 8 trials) go on with it
    assert resume.endswith(" --num-samples 4 --resume") and f"--name c --storage {tmp_path / 'ray'} " \
        f"--tracking-uri {uri}" in resume

    def optuna_trials():
        return {t.user_attrs["ray_trial_id"]: t for t in
                optuna.load_study(study_name="c", storage=f"sqlite:///{study_dir.parent / 'optuna.db'}").trials}

    waiting = {i for i, t in optuna_trials().items() if t.state == optuna.trial.TrialState.RUNNING}
    # the console's trial-end lines say so too (they said "stopped at epoch N", as for a spent time budget)
    said = {ln.split()[1] for ln in out.splitlines() if ln.startswith("trial ") and " interrupted at epoch " in ln}
    assert said and said <= waiting and " stopped at epoch " not in out, out[-3000:]
    _, runs = trial_runs(uri, "intr")
    interrupted = {r.data.tags["trial_id"] for r in runs if r.data.tags["status"] == "interrupted"}
    # a trial the searcher proposed as another ended, while Ray was stopping, waits too, not started: no run yet
    unstarted = waiting - {r.data.tags["trial_id"] for r in runs}
    assert interrupted and interrupted == waiting - unstarted, (interrupted, waiting)
    assert not [f for i in unstarted for f in study_dir.glob(f"train_vgan_{i}_*/result.json") if f.stat().st_size]
    assert all(r.info.status == "KILLED" for r in runs if r.data.tags["trial_id"] in waiting)
    for trial_id in interrupted:  # their checkpoints are kept for the resume
        (folder,) = study_dir.glob(f"train_vgan_{trial_id}_*")
        assert list(folder.glob("checkpoint_*")), trial_id

    # The printed command, stopped by SIGTERM to the driver alone (a scheduler's stop, Kubernetes deleting its pod,
    # `kill`) as the resumed trials report their next epoch: Ray's handlers ended it at once before (a native stack
    # and an abort), losing the trials begun since Ray last saved the study. It stops in order, as Ctrl-C does.
    reported = {f: f.stat().st_size for f in study_dir.glob("train_vgan_*/result.json")}
    proc = subprocess.Popen([sys.executable, "-m", *shlex.split(resume)[2:]], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while not any(f.stat().st_size > reported.get(f, 0) for f in study_dir.glob("train_vgan_*/result.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "no epoch was reported"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGTERM)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 143 and "tuner.run: stopped by SIGTERM" in out, out[-3000:]
    (line,) = [ln for ln in out.splitlines() if ln.startswith("study c interrupted: ")]
    assert line.split(" with: ", 1)[1].split(";", 1)[0] == resume
    assert "left running by an earlier driver" not in out and "SIGTERM received" not in out

    # The printed command, Ctrl-C'd as it begins to register the champion: Tune's handler, left in place after a
    # fit that ended on its own, took it for a stop of the ended fit, and the Ctrl-C was lost. (Run as a terminal
    # runs a command: a process started in the background of a script inherits SIGINT ignored, and keeps it so.)
    ctrl_c = ("import os, signal, sys, time, tuner.run as run\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "real = run.register\n"
              "def register(*args):\n"
              "    os.kill(os.getpid(), signal.SIGINT)\n"
              "    time.sleep(10)\n"
              "    return real(*args)\n"
              "run.register = register\n"
              f"sys.exit(run.main({shlex.split(resume)[3:]!r}))")
    cut = subprocess.run([sys.executable, "-c", ctrl_c], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=900)
    assert cut.returncode == 130 and "registered intr version" not in cut.stdout, cut.stdout[-3000:] + cut.stderr
    assert "Ray's own logs" not in cut.stderr  # a Ctrl-C is no crash
    (line,) = [ln for ln in cut.stdout.splitlines() if ln.startswith("study c interrupted after its trials ended")]
    finish = line.split(" with: ", 1)[1]
    assert finish.endswith(" --num-samples 4 --resume"), finish
    client, _ = trial_runs(uri, "intr")
    (parent,) = client.search_runs([client.get_experiment_by_name("intr").experiment_id], "tags.kind = 'study'")
    assert parent.info.status == "KILLED"

    done = subprocess.run([sys.executable, "-m", *shlex.split(finish)[2:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " 0 failed;" in done.stdout and "registered intr version 1" in done.stdout
    assert not re.search(r"^trial \w+ ", done.stdout, re.M), done.stdout  # no trial ran again
    trials = optuna_trials()
    assert len(trials) == 4 and all(t.state.is_finished() for t in trials.values())
    assert {t.state for i, t in trials.items() if i in waiting} <= {optuna.trial.TrialState.COMPLETE,
                                                                    optuna.trial.TrialState.PRUNED}
    client, runs = trial_runs(uri, "intr")
    assert len(runs) == 4 and {(r.info.status, r.data.tags["status"]) for r in runs} <= {
        ("FINISHED", "completed"), ("FINISHED", "pruned")}
    epochs = yaml.safe_load(space.read_text())["train"]["epochs"]
    for r in runs:  # every epoch of a trial, across both sessions, is in its run once, and its model logged
        last = int(r.data.tags.get("pruned_at_epoch", epochs))
        assert epoch_steps(client, r) == list(range(1, last + 1)) and "best_model_uri" in r.data.tags, r.data.tags


@pytest.mark.slow
def test_a_study_whose_reader_goes_stops_as_ctrl_c_stops_it(ray_tmpdir, tmp_path):
    """`python -m tuner.run ... | head -2`: the first trial-end line met the closed pipe inside a Tune callback, which
    Ray logged as an error stopping the trial (a 15-line traceback for each trial that ended after) until the
    study died of it. Now the study stops as Ctrl-C stops it, in one line on stderr (exit 141, as a Unix tool
    stopped by SIGPIPE), and its log holds what it said after, how it goes on included; no run is left running."""
    space = quick_smoke(tmp_path / "space.yaml", "reader", tune={"num_samples": 4})
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmpdir)}
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "tuner.run", "--space", str(space), "--name", "r", "--storage",
                                 str(tmp_path / "ray"), "--tracking-uri", uri], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        head = [proc.stdout.readline() for _ in range(2)]  # the study's line and how it goes on, then head exits
        proc.stdout.close()
        proc.wait(timeout=300)
    said = (tmp_path / "stderr.txt").read_text()
    log = tmp_path / "ray" / "r.log"
    assert head[1].startswith("study r: should its driver die before it ends, it goes on with: ")
    assert proc.returncode == 141, said[-3000:]
    assert said.splitlines()[-1] == ("tuner.run: stopped: the reader of its output closed the pipe; the study was "
                                     f"stopped as Ctrl-C stops it, and its log ({log}) says how it goes on")
    assert "Traceback" not in said and "Error stopping trial" not in said, said[-3000:]
    written = log.read_text()
    assert re.search(r"^trial \w+ (completed|pruned|failed)", written, re.M)  # the line that met the closed pipe
    (line,) = [ln for ln in written.splitlines() if ln.startswith("study r interrupted: ")]
    assert line.split(" with: ", 1)[1].startswith(f"python -m tuner.run --space {space} --name r --storage ")
    _, runs = trial_runs(uri, "reader")
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    assert {r.data.tags["status"] for r in runs if r.info.status == "KILLED"} <= {"interrupted"}


@pytest.mark.slow
def test_a_second_ctrl_c_that_cuts_rays_stop_short_still_says_how_to_go_on(ray_tmpdir, tmp_path):
    """Ctrl-C twice: Tune puts the earlier SIGINT handler back at the first press, so the second ends its orderly
    stop at once (skipping its last save) with KeyboardInterrupt out of the fit. The study printed only
    `tuner.run: interrupted`; now it says how to go on, as a killed driver goes on (tried by hand: the resume
    continued the interrupted trial from its checkpoint and closed no run KILLED). Both presses come from the
    driver itself, the second while Tune's stop calls its callbacks' experiment end, so the order is certain."""
    space = quick_smoke(tmp_path / "space.yaml", "twice", tune={"num_samples": 4})
    argv = ["--space", str(space), "--name", "t", "--storage", str(tmp_path / "ray"),
            "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    twice = ("import os, signal, sys, time, tuner.console as console, tuner.run as run, tuner.search as search\n"
             "signal.signal(signal.SIGINT, signal.default_int_handler)\n"  # as a terminal starts a command
             "result, end = console.Progress.on_trial_result, search.StopWitness.on_experiment_end\n"
             "def first(self, *args, **kwargs):\n"
             "    result(self, *args, **kwargs)\n"
             "    os.kill(os.getpid(), signal.SIGINT)\n"
             "def second(self, *args, **kwargs):\n"
             "    end(self, *args, **kwargs)\n"
             "    os.kill(os.getpid(), signal.SIGINT)\n"
             "    time.sleep(30)\n"
             "console.Progress.on_trial_result, search.StopWitness.on_experiment_end = first, second\n"
             f"sys.exit(run.main({argv!r}))")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmpdir)}
    proc = subprocess.run([sys.executable, "-c", twice], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 130 and "tuner.run: interrupted" in proc.stderr, proc.stdout[-3000:] + proc.stderr
    (began,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("study t: should its driver die")]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("study t stopped at once, before Ray had")]
    assert line.split(" with: ", 1)[1] == began.split(" goes on with: ", 1)[1], (line, began)
    client, _ = trial_runs(f"sqlite:///{tmp_path}/mlflow.db", "twice")
    (parent,) = client.search_runs([client.get_experiment_by_name("twice").experiment_id], "tags.kind = 'study'")
    assert parent.info.status == "KILLED"


def test_a_resumed_study_runs_the_trials_and_time_its_command_asks_for(ray_tmpdir, tmp_path):
    """Ray restores a study's size and time budget from its own saved state: a study its budget had stopped,
    resumed with --num-samples 40 --time-budget 15s, ran no trial more (its budget was spent, its search
    saved as finished) while its console said 40. The search goes on where it stood (Optuna's study and MLflow
    grow alike), and the resume's budget, counted from the resume, stops it."""
    import optuna

    space = quick_smoke(tmp_path / "space.yaml", "more", train={"epochs": 2})
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmpdir)}

    def study(*more: str) -> tuple[str, list, list]:
        proc = subprocess.run([sys.executable, "-m", "tuner.run", "--space", str(space), "--name", "m",
                               "--storage", str(tmp_path / "ray"), "--tracking-uri", uri, "--no-register", *more],
                              cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "(spent: the study stopped the trials still running)" in proc.stdout, proc.stdout
        trials = optuna.load_study(study_name="m", storage=f"sqlite:///{tmp_path / 'ray' / 'optuna.db'}").trials
        _, runs = trial_runs(uri, "more", "m")
        assert {r.data.tags["trial_id"] for r in runs} <= {t.user_attrs["ray_trial_id"] for t in trials}
        # what the budget stopped, a trial not yet started too, has a run that says so
        stopped = json.loads((tmp_path / "ray" / "m" / "stopped.json").read_text())
        assert stopped and {r.data.tags["trial_id"]: r.data.tags["stopped_at_epoch"] for r in runs
                            if r.data.tags["status"] == "stopped"} == {k: str(v) for k, v in stopped.items()}
        return proc.stdout, trials, runs

    _, first, first_runs = study("--num-samples", "20", "--time-budget", "5s")
    # 30 s: under CI's load a trial took over 10 s to its first epoch; 100 trials of ~2 s do not fit in them
    out, trials, runs = study("--resume", "--num-samples", "100", "--time-budget", "30s")
    assert "study m: 100 trials of up to 2 epochs" in out and "time budget 30 s" in out
    # the overhead of the resume's wall time, with the compute of the epochs reported since: not all of it
    (line,) = [ln for ln in out.splitlines() if " trials in " in ln and "overhead" in ln]
    here, total = (float(x) for x in re.search(r"trial compute ([\d.]+) s over 2 slots since the resume "
                                                r"\(([\d.]+) s in all\)", line).groups())
    assert 0 < here <= total, line
    assert len(first) < len(trials) < 100 and len(first_runs) < len(runs), (len(first), len(trials), len(runs))


def test_a_study_selected_on_cldice_ranks_and_registers_on_it(ray_tmpdir, tmp_path):
    """`train.select_metric: cldice`, the vessels' connectivity: every epoch reports its validation clDice, each
    trial's score is its best one, the study's best trial, Optuna's and the registered version's description say
    that score, and the registration's line gives the test clDice beside the pixel figures."""
    import optuna

    space = quick_smoke(tmp_path / "space.yaml", "cl", train={"epochs": 3, "select_metric": "cldice"},
                        tune={"num_samples": 3, "grace_period": 1})
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = subprocess.run([sys.executable, "-m", "tuner.run", "--space", str(space), "--name", "c",
                           "--storage", str(tmp_path / "ray"), "--tracking-uri", uri], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmpdir)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client, runs = trial_runs(uri, "cl", "c")
    assert len(runs) == 3
    scores = {}
    for r in runs:
        cl = sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, "val_cldice"))
        assert [s for s, _ in cl] == list(range(1, len(cl) + 1)) and cl, r.data.tags
        scores[r.data.tags["trial_id"]] = r.data.metrics["best_val_cldice"]
        assert scores[r.data.tags["trial_id"]] == pytest.approx(max(v for _, v in cl))
        assert "best_val_auc_roc" not in r.data.metrics  # one score per trial, the one selected on
    (parent,) = client.search_runs([runs[0].info.experiment_id], "tags.kind = 'study'")
    best = max(scores, key=scores.get)
    assert parent.data.tags["best_trial_id"] == best
    assert float(parent.data.tags["best_val_cldice"]) == pytest.approx(scores[best], abs=1e-6)
    optuna_best = optuna.load_study(study_name="c", storage=f"sqlite:///{tmp_path / 'ray' / 'optuna.db'}").best_trial
    assert optuna_best.user_attrs["ray_trial_id"] == best and optuna_best.value == pytest.approx(scores[best])
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("registered cl version 1"))
    assert f"from best trial {best}: test AUC-ROC " in line and ", clDice 0." in line, line
    description = client.get_model_version("cl", "1").description
    assert f"(chosen on validation clDice {scores[best]:.4f})" in description and ", clDice 0." in description


@pytest.mark.slow
def test_a_finished_study_resumed_with_ensemble_top_registers_what_validation_chose(ray_tmpdir, tmp_path):
    """A study registers its best trial; resumed with `mlflow.ensemble_top: 3` (the trials are not re-run), the
    candidate is the mean map of its best k <= 3 trials, k chosen here on validation, and it meets the gate."""
    import mlflow.pytorch
    import torch
    from mlflow.tracking import MlflowClient

    from tuner.registry import score_model
    from tuner.space import load_space
    from vgan.data import load_train_val

    plain = quick_smoke(tmp_path / "plain.yaml", "ens", tune={"num_samples": 4})  # k <= 3 of them
    values = yaml.safe_load(plain.read_text())
    values["mlflow"]["ensemble_top"] = 3
    ensemble = write_yaml(tmp_path / "ensemble.yaml", values)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmpdir)}

    def study(space: Path, *more: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "tuner.run", "--space", str(space), "--name", "e",
                               "--storage", str(tmp_path / "ray"), "--tracking-uri", uri, *more],
                              cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    first = study(plain)
    assert "ensemble" not in first and "registered ens version 1 (challenger, champion) from best trial" in first
    out = study(ensemble, "--resume")
    assert "ensemble: validation auc_roc of the mean map of the best k trials (scored here):" in out

    # what validation says, computed here from MLflow alone: the top three trials' logged models, each k's mean
    client = MlflowClient(uri)
    trials = sorted((r for r in client.search_runs([client.get_experiment_by_name("ens").experiment_id])
                     if "trial_id" in r.data.tags), key=lambda r: -r.data.metrics["best_val_auc_roc"])[:3]
    with use_tracking_uri(uri):
        programs = [mlflow.pytorch.load_model(r.data.tags["best_model_uri"]) for r in trials]
    _, val = load_train_val(load_space(ensemble).trainer_config().data)
    scores = [score_model(lambda x, k=k: sum(p(x) for p in programs[:k]) / k, val).metrics["auc_roc"]
              for k in (1, 2, 3)]
    for i, score in enumerate(scores):
        assert f"  k={i + 1}  {score:.4f}  " in out
    (chosen,) = [line for line in out.splitlines() if line.endswith("<- the candidate")]
    k = int(chosen.split()[0].removeprefix("k="))
    # the best of the three, a tie going to the fewer (here within 1e-5: these means are float32 sums in
    # another order than tuner.ensemble's)
    assert scores[k - 1] >= max(scores) - 1e-5 and all(s < scores[k - 1] + 1e-5 for s in scores[: k - 1])
    ids = ",".join(r.data.tags["trial_id"] for r in trials[:k])
    if k == 1:
        assert f"best trial {ids} is registered already as ens version 1" in out
        return
    version = client.get_model_version("ens", "2")
    assert version.tags["ensemble_members"] == ids and f"from the ensemble of the best {k} trials ({ids})" in out
    assert version.tags["promotion"].startswith(("promoted over v1", "kept champion v1"))
    with use_tracking_uri(uri):
        registered = mlflow.pytorch.load_model("models:/ens/2")
    x = torch.rand(1, 3, 50, 61)
    torch.testing.assert_close(registered(x), sum(p(x) for p in programs[:k]) / k, rtol=0, atol=1e-6)


NO_S3 = "endpoint_override=127.0.0.1:1&scheme=http&region=us-east-1"  # an object store where none answers


@pytest.mark.parametrize("mutate, argv, fragment", [
    (lambda v: v["search"].update({"optim.lr_g": {"type": "loguniform", "low": 0.1, "high": 0.01}}), [],
     "'search.optim.lr_g' needs low < high"),
    (lambda v: v["resources"].update(gpu=1), [], "'resources.gpu' asks for 1 GPU per trial, but this machine has none"),
    (lambda v: v["data"].update(dataset="drive"), ["--data", "/nowhere/DRIVE"], "/nowhere/DRIVE: dataset root missing"),
    (lambda v: None, ["--resume", "--name", "nope"], "--resume: no study 'nope'"),
    # a crop the space draws that the training images (96 px) cannot give: each trial that drew it failed
    (lambda v: v["search"].update({"data.crop_size": {"type": "categorical", "choices": [48, None, 128]}}), [],
     "search.data.crop_size draws 128: data.crop_size = 128 is larger than the training images (96x96) of synthetic"),
    (lambda v: v["search"].update({"data.crop_size": {"type": "int", "low": 48, "high": 152, "step": 36}}), [],
     "search.data.crop_size draws 120: data.crop_size = 120"),  # 48, 84, 120: the step reaches no higher
    (lambda v: v["tune"].update(grace_period=9), [], "'tune.grace_period' is 9 epochs, more than"),
    (lambda v: None, ["--tracking-uri", "./mlruns"], "no file store"),
    # outputs where no folder can be made (Linux's /proc): refused before Ray starts, not after
    (lambda v: None, ["--storage", "/proc/vgan-ray"], "--storage /proc/vgan-ray: cannot write there"),
    (lambda v: None, ["--tracking-uri", "sqlite:////proc/vgan/m.db"], "the database's folder /proc/vgan: cannot write"),
    (lambda v: None, ["--study-db", "sqlite:////proc/vgan/o.db"],
     "--study-db sqlite:////proc/vgan/o.db: the database's folder"),
    (lambda v: None, ["--study-db", "postgresql://nobody@127.0.0.1:1/vgan"], "--study-db postgresql://nobody@"),
    (lambda v: None, ["--name", "../escape"], "--name '../escape': use letters, digits"),
    # the storage is first looked at for the study's folder: a traceback there before
    (lambda v: None, ["--storage", "foo://x", "--study-db", "sqlite:///unused/o.db"],
     "--storage foo://x: cannot be read (Unrecognized filesystem type"),
    (lambda v: None, ["--storage", f"s3://vgan/ray?{NO_S3}", "--study-db", "sqlite:///unused/o.db"],
     f"--storage s3://vgan/ray?{NO_S3}: cannot be read ("),
    # Ray's client would retry an address where nothing listens for minutes
    (lambda v: None, ["--address", "127.0.0.1:1"], "--address 127.0.0.1:1: no Ray cluster answers there"),
    (lambda v: None, ["--address", "headnode"], "--address headnode: give HOST:PORT"),
    # --set changes the trials' config as an edit of the space's base would, and nothing else
    (lambda v: None, ["--set", "optim.lr_g=1e-3"],
     "/space.yaml searches it (search.optim.lr_g): each trial's draw would replace the value set"),
    (lambda v: None, ["--set", "tune.num_samples=3"], "--set tune.num_samples=...: --set changes the trials' config "
     "(data, model, loss, optim, train), not the space's tune section: edit"),
    (lambda v: None, ["--set", "data.root=/x"], "--set data.root=...: give the dataset root with --data"),
    (lambda v: None, ["--set", "train.epochz=3"], "--set: unknown key 'train.epochz' (known keys in 'train':"),
    (lambda v: None, ["--set", "train.epochs=1"], "'tune.grace_period' is 2 epochs, more than the trials' "
     "train.epochs (1)"),
    (lambda v: None, ["--set", "epochs"], "--set 'epochs': give KEY=VALUE"),
    (lambda v: None, ["--set", "model.depth=8"], "error: --set model.depth=8: 'model.depth' must be in [1, 6]"),
])
def test_bad_input_exits_2_before_ray_starts(tmp_path, capsys, mutate, argv, fragment):
    values = yaml.safe_load(SMOKE.read_text())
    mutate(values)
    path = write_yaml(tmp_path / "space.yaml", values)
    if torch_has_gpu() and "gpu" in fragment:
        pytest.skip("this machine has a GPU")
    t0 = time.perf_counter()
    code = main(["--space", str(path), "--storage", str(tmp_path / "ray")] + argv)
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1, err
    assert not (tmp_path / "ray").exists()  # nothing started
    assert time.perf_counter() - t0 < 30


def test_a_pool_of_two_cameras_or_without_masks_is_noted_before_the_study(tmp_path, drive_root, stare_root, capsys):
    """tuner.run says what vgan.train says of a pool whose FOVs differ: each trial learns vessels at more than
    one scale, and data.fov_diameter trains them at one (not said where the space's base config sets it); of
    photographs converted as read; and of photographs without FOV masks, whose scores are then not by the
    literature's protocol."""
    from tuner.run import preflight

    root = two_camera_dataset(drive_root, stare_root, tmp_path / "pool", {"training": (3, 2), "test": (1, 1)})
    values = yaml.safe_load(SMOKE.read_text())
    values["data"] = {"dataset": "folder", "root": str(root), "val_count": 2, "crop_size": 48}

    def plan(name, data=None):
        space = write_yaml(tmp_path / f"{name}.yaml", {**values, "data": {**values["data"], **(data or {})}})
        return preflight(["--space", str(space), "--storage", str(tmp_path / "ray"), "--name", name,
                          "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])

    (note,) = plan("pool").notes
    assert note.startswith("the training photographs' FOVs are 5")  # DRIVE's 54x, STARE's 6xx
    assert "data.fov_diameter: " in note
    assert plan("one", data={"fov_diameter": 540}).notes == ()
    assert not (tmp_path / "ray").exists() or not any((tmp_path / "ray").iterdir())  # nothing started

    # photographs without FOV masks: the validation and test scores are not the literature's (vgan.train says it
    # too), and one framed white: it is trained on with its frame black; a test photograph framed white is scored
    # with its frame black, and that is said before the study too, as its files are checked
    own = folder_dataset(drive_root, tmp_path / "own", {"training": 3, "test": 2}, masks=False)
    frame_white(drive_root, own / "training" / "images" / "eye22_training.tif")
    frame_white(drive_root, own / "test" / "images" / "eye02_test.tif")
    converted, tested, note = plan("own", data={"root": str(own), "val_count": 1}).notes
    assert converted == ("photographs converted as read, as vgan.predict converts them: white or grey frame made "
                         "black (1 of 3: eye22_training)")
    assert tested == ("test photographs converted as read, as vgan.predict converts them: white or grey frame made "
                      "black (1 of 2: eye02_test)")
    assert note == (f"{own}/training and {own}/test hold no masks/: each photograph's FOV is estimated from it, so "
                    "the trials' validation scores and the registered test scores are not by the literature's "
                    "protocol (pixels inside the dataset's own FOV masks)")


def test_a_dataset_without_test_photographs_is_refused_before_the_study(tmp_path, drive_root, capsys):
    """The test split is read at the study's end, to score the champion: a folder dataset without test/ ran every
    trial and then exited 2 naming the missing folder; now it exits 2 before Ray starts, saying why it is needed."""
    root = folder_dataset(drive_root, tmp_path / "own", {"training": 3})
    values = yaml.safe_load(SMOKE.read_text())
    values["data"] = {"dataset": "folder", "root": str(root), "val_count": 1, "crop_size": 48}
    space = write_yaml(tmp_path / "own.yaml", values)
    assert main(["--space", str(space), "--storage", str(tmp_path / "ray"), "--tracking-uri",
                 f"sqlite:///{tmp_path}/m.db"]) == 2
    err = capsys.readouterr().err
    assert err == (f"tuner.run: error: {root}/test/images: folder missing (a folder dataset expects test/images, "
                   "test/labels (named as the images) and, if there are FOV masks, test/masks); a study scores its "
                   "best model on the test split to register it (and reads it only then): put aside there annotated "
                   "photographs that no trial trains on\n")
    assert not (tmp_path / "ray").exists()
    from tuner.run import preflight  # a study that registers nothing needs none

    assert preflight(["--space", str(space), "--storage", str(tmp_path / "ray"), "--tracking-uri",
                      f"sqlite:///{tmp_path}/m.db", "--no-register"]).name.startswith("own-")


def test_a_test_file_that_cannot_be_read_is_refused_before_the_study(tmp_path, drive_root, capsys):
    """The test split is read to register the study's best model, after every trial: a test label of another
    size than its photograph, or a photograph cut short, failed the study only then (its trials kept for a
    resume). Now each test file is read and checked as the registry reads it before Ray starts (nothing of it
    kept or scored), and the study exits 2 naming the file."""
    from PIL import Image

    root = folder_dataset(drive_root, tmp_path / "own", {"training": 3, "test": 2})
    values = yaml.safe_load(SMOKE.read_text())
    values["data"] = {"dataset": "folder", "root": str(root), "val_count": 1, "crop_size": 48}
    space = write_yaml(tmp_path / "own.yaml", values)
    argv = ["--space", str(space), "--storage", str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
    label = root / "test" / "labels" / "eye02_test.png"
    with Image.open(label) as im:
        im.crop((0, 0, 500, 584)).save(label)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tuner.run: error: {label}: size 584x500 does not match its image ") and err.count("\n") == 1
    photo = root / "test" / "images" / "eye01_test.tif"
    data = photo.read_bytes()
    photo.unlink()
    photo.write_bytes(data[:len(data) // 3])
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"tuner.run: error: {photo}: ")
    assert not (tmp_path / "ray").exists()  # nothing started


def test_set_changes_the_trials_config_and_the_resume_and_replay_commands_carry_it(tmp_path):
    """`--set KEY=VALUE` changes the space's base config (each trial's, and the recipe the study keeps), and the
    commands the study prints to resume or replay it give the same, quoted for the shell: without them, a resume
    would be refused (another recipe) and a replay would log configs the trials were not trained with."""
    import shlex

    from tuner.replay import build_parser
    from tuner.run import preflight
    from tuner.space import check_same_recipe, load_space, trial_recipe
    from vgan.config import parse_sets
    from vgan.errors import ConfigError

    argv = ["--space", str(SMOKE), "--storage", str(tmp_path / "ray"), "--name", "set", "--tracking-uri",
            f"sqlite:///{tmp_path}/m.db", "--set", "train.epochs=4", "--set", "optim.betas_g=[0.5, 0.99]",
            "--set", "loss.bce_weight=2e1"]
    plan = preflight(argv)
    cfg = plan.space.trainer_config()
    assert cfg.train.epochs == 4 and cfg.optim.betas_g == (0.5, 0.99) and cfg.loss.bce_weight == 20.0
    sets = " --set train.epochs=4 --set 'optim.betas_g=[0.5, 0.99]' --set loss.bce_weight=2e1"
    assert sets in plan.resume_command() and plan.resume_command().endswith(f"{sets} --resume")
    assert plan.replay_command().endswith(sets)
    replayed = build_parser().parse_args(shlex.split(plan.replay_command())[3:])  # past python -m tuner.replay
    kept = json.dumps(trial_recipe(plan.space))
    check_same_recipe(load_space(replayed.space, sets=parse_sets(replayed.sets)), kept, "set", "--space", "")
    with pytest.raises(ConfigError, match=r"is not what study 'set' began with \(.*train\.epochs: 4 -> 6"):
        check_same_recipe(load_space(SMOKE), kept, "set", "--resume", "resume with the space it began with")


def torch_has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.slow
def test_a_study_whose_best_model_cannot_be_registered_says_how_to_register_it(ray_tmpdir, tmp_path, drive_root):
    """A test photograph unreadable at registration, after the trials (the pre-flight reads each test file, so
    here one spoilt after it: the check is skipped): the study exits 1 (not 2, "nothing started"), its run ends
    FAILED, and it prints the resume that registers its best once the file is fixed, which then runs no trial
    again (before: the error alone, and the study's run left RUNNING). An error that is not bad input gets its
    traceback, and the same resume before it. (And a training photograph framed white: the study's notes on its
    data are its run's description.)"""
    from mlflow.tracking import MlflowClient

    root = folder_dataset(drive_root, tmp_path / "own", {"training": 3, "test": 1})
    frame_white(drive_root, root / "training" / "images" / "eye22_training.tif")
    label = root / "test" / "labels" / "eye01_test.png"
    good = label.read_bytes()
    label.write_bytes(b"")
    space = quick_smoke(tmp_path / "own.yaml", "unregistered", data={"dataset": "folder", "root": str(root),
                        "val_count": 1, "crop_size": 48}, tune={"num_samples": 1, "grace_period": 1},
                        train={"epochs": 1})
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmpdir)}
    unchecked = ("import sys, vgan.data\n"
                 "vgan.data.check_pool = lambda cfg, pool: (['eye01_test'], {})\n"
                 "from tuner.run import main\n"
                 "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", unchecked, "--space", str(space), "--name", "u", "--storage",
                           str(tmp_path / "ray"), "--tracking-uri", uri], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900, env=env)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 trial in" in proc.stdout
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith(f"tuner.run: failed: study u ran, but its best model was not registered: {label}: "
                              "an empty file; once that is fixed, register it (no trial runs again) with: "
                              "python -m tuner.run "), message
    client = MlflowClient(uri)
    (parent,) = [r for r in client.search_runs([client.get_experiment_by_name("unregistered").experiment_id])
                 if "trial_id" not in r.data.tags]
    assert parent.info.status == "FAILED"
    assert parent.data.tags["mlflow.note.content"] == (
        "Notes on the data, as the study said them before it began:\n\n- photographs converted as read, as "
        "vgan.predict converts them: white or grey frame made black (1 of 3: eye22_training)")

    label.write_bytes(good)
    command = message.split("with: python -m tuner.run ", 1)[1].split()
    # an error that is no bad input (here, the test split's scoring out of memory, as a GPU's can be): the
    # traceback, and before it the same way on; the run FAILED
    oom = ("import sys, tuner.registry as r\n"
           "def oom(*a, **k): raise RuntimeError('CUDA out of memory')\n"
           "r.score_logged = oom\n"
           "from tuner.run import main\n"
           "sys.exit(main(sys.argv[1:]))\n")
    failed = subprocess.run([sys.executable, "-c", oom, *command], cwd=tmp_path, capture_output=True, text=True,
                            timeout=900, env=env)
    assert failed.returncode == 1 and failed.stderr.rstrip().endswith("RuntimeError: CUDA out of memory")
    said = ("study u ran, but its best model was not registered (the error below); once that is fixed, register it "
            f"(no trial runs again) with: python -m tuner.run {' '.join(command)}\n")
    assert said in failed.stderr and failed.stderr.index(said) < failed.stderr.index("Traceback"), failed.stderr
    assert client.get_run(parent.info.run_id).info.status == "FAILED"
    resumed = subprocess.run([sys.executable, "-m", "tuner.run", *command], cwd=tmp_path, capture_output=True,
                             text=True, timeout=900, env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "registered unregistered version 1 (challenger, champion) from best trial" in resumed.stdout
    assert "trial compute 0.0 s" in resumed.stdout and client.get_run(parent.info.run_id).info.status == "FINISHED"


def test_a_study_always_has_a_log_for_rays_table(tmp_path, monkeypatch):
    """With no log file to write to, Ray's own reporter prints its table on the terminal: a study in an
    object store keeps its log in the working directory instead."""
    from tuner.run import Plan
    from tuner.storage import parse_storage

    def plan(storage: str) -> Plan:
        return Plan(None, None, "s1", "sqlite:///m.db", parse_storage(storage), "sqlite:///o.db")

    monkeypatch.chdir(tmp_path)
    assert plan("s3://bucket/ray").log == tmp_path.resolve() / "s1.log"
    assert plan(str(tmp_path / "ray")).log == (tmp_path / "ray" / "s1.log").resolve()


LOADED = "print(sorted(m for m in ('ray', 'mlflow', 'optuna', 'torch') if m in sys.modules))"


@pytest.mark.parametrize("module", ["tuner.run", "tuner.replay", "tuner.promote"])
@pytest.mark.parametrize("argv, code", [(["--help"], 0), (["--spcae", "x.yaml"], 2)])
def test_arguments_are_read_before_the_search_stack_loads(module, argv, code):
    """--help and a mistyped option need argparse only: Ray, MLflow, Optuna and torch (seconds of imports
    on every start) load in the steps that use them."""
    script = (f"import runpy, sys\nsys.argv = ['{module}', *{argv!r}]\ntry:\n"
              f"    runpy.run_module('{module}', run_name='__main__', alter_sys=True)\n"
              f"except SystemExit as e:\n    print('exit', e.code)\n{LOADED}")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines()[-2:] == [f"exit {code}", "[]"], out.stdout + out.stderr
    assert f"usage: python -m {module}" in (out.stdout if code == 0 else out.stderr)


def test_a_trials_compute_is_that_of_its_reports_from_a_time_on():
    import pandas as pd

    from tuner.run import compute_seconds

    df = pd.DataFrame({"timestamp": [100, 101, 103], "epoch_s": [1.0, 2.0, 4.0], "val_s": [0.5, None, 0.25]})
    assert compute_seconds(df) == 7.75
    assert compute_seconds(df, 101.7) == 6.25  # reports carry whole seconds: the one of second 101 counts
    assert compute_seconds(df, 104) == 0.0 and compute_seconds(None) == 0.0 and compute_seconds(df[:0]) == 0.0


def test_each_trials_budget_share_is_of_the_time_it_ran_within_that_budget(tmp_path, monkeypatch, capsys):
    """trials.csv's budget_share: a resumed study's budget counts from the resume, so a trial's time before it is
    not the budget's (every trial's whole time was counted, a trial ended in the first session's too)."""
    from types import SimpleNamespace

    import pandas as pd

    import tuner.run
    from tuner.space import load_space

    space = load_space(quick_smoke(tmp_path / "space.yaml", "share", tune={"time_budget_s": 30}))
    monkeypatch.setattr(tuner.run, "optuna_plots", lambda *a: [])

    def result(trial_id, stamps, seconds):
        df = pd.DataFrame({"timestamp": stamps, "time_this_iter_s": seconds, "epoch": range(1, len(stamps) + 1),
                           "epoch_s": seconds, "best_val_auc_roc": 0.9})
        last = {**df.iloc[-1].to_dict(), "trial_id": trial_id, "time_total_s": sum(seconds)}
        return SimpleNamespace(metrics=last, path=f"/s/train_vgan_{trial_id}", metrics_dataframe=df, error=None,
                               config={"optim.lr_g": 1e-3})

    results = [result("before", [100, 104], [4.0, 4.0]), result("across", [104, 110, 121], [3.0, 6.0, 12.0]),
               result("after", [112], [9.0])]

    class Study:
        def child_runs(self):
            return []

        def log_artifact(self, path, folder=None):
            if path.name == "trials.csv":
                self.rows = {row["trial"].split()[0]: row for row in csv.DictReader(path.open())}

        def log_metrics(self, metrics):
            pass

        def set_tags(self, tags):
            pass

    def shares(resumed):
        study = Study()
        plan = SimpleNamespace(space=space, storage_url="sqlite://", name="s")
        tuner.run.summarize(plan, study, results, wall=30.0, width=2, resumed=resumed)
        return {t: float(row["budget_share"]) for t, row in study.rows.items()}

    # 2 slots of 30 s: 60 slot-seconds
    assert shares(None) == pytest.approx({"before": 8 / 60, "across": 21 / 60, "after": 9 / 60})
    assert shares(109.5) == pytest.approx({"before": 0.0, "across": 18 / 60, "after": 9 / 60})
    assert "% of the budget" in capsys.readouterr().out


def test_a_pbt_study_is_as_wide_as_its_nodes_hold_its_trials(tmp_path):
    """PBT's population trains side by side, as many at once as the nodes hold (a trial on one node), whatever
    tune.max_concurrent_trials would say: the study's width, its slots, is what the nodes hold."""
    from tuner.cluster import trials_side_by_side
    from tuner.space import load_space

    def node(cpu, gpu=0.0):  # as ray.nodes() gives them
        return {"Alive": True, "Resources": {"CPU": cpu, **({"GPU": gpu} if gpu else {}), "memory": 8e9}}

    def width(nodes, **resources):
        space = quick_smoke(tmp_path / "space.yaml", tune={"scheduler": "pbt", "max_concurrent_trials": None},
                            resources=resources)
        return trials_side_by_side(load_space(space), nodes)

    assert width([node(2.0)], cpu=0.5) == 4 and width([node(2.0)], cpu=1) == 2
    assert width([node(3.0), node(3.0)], cpu=2) == 2  # a trial does not span two nodes' spare CPUs
    assert width([node(16.0, 2.0), node(16.0)], cpu=4, gpu=1) == 2  # the GPUs, not the CPUs, hold them
    assert width([node(16.0, 1.0)], cpu=1, gpu=0.25) == 4
    assert width([node(0.0)], cpu=1) == 1  # an autoscaling cluster's head, before its workers come


def test_the_trials_the_budget_stopped_are_kept_across_sessions_but_not_those_at_their_last_epoch(tmp_path):
    """A trial can report its last epoch and be ended by the spent budget before Tune tells of its end: it completed
    (CI once saw it, and the study's runs said completed where stopped.json said stopped)."""
    from types import SimpleNamespace

    from tuner.run import stopped_trials
    from tuner.space import load_space
    from tuner.storage import STOPPED_FILE, parse_storage

    space = load_space(quick_smoke(tmp_path / "space.yaml", train={"epochs": 2}))
    plan = SimpleNamespace(space=space, storage=parse_storage(str(tmp_path / "ray")), name="s")
    (tmp_path / "ray" / "s").mkdir(parents=True)
    assert stopped_trials(plan, {"a": 1, "b": 0, "c": 2}) == {"a": 1, "b": 0}
    assert stopped_trials(plan, {"d": 1}) == {"a": 1, "b": 0, "d": 1}  # a later session joins them
    assert json.loads((tmp_path / "ray" / "s" / STOPPED_FILE).read_text()) == {"a": 1, "b": 0, "d": 1}
    assert stopped_trials(plan, {}) == {"a": 1, "b": 0, "d": 1}
