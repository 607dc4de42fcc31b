"""Before Ray resumes a study: stand-ins for the checkpoints its saved state names but storage lost.

Ray deletes a trial's checkpoints beyond `num_to_keep` as the trial writes new ones, and saves the
study's state (experiment_state-*.json) every 10 s at the least, and at once after a trial wrote
`num_to_keep` checkpoints since the last save. A driver killed between such a deletion and the save
leaves a state naming checkpoints that are gone. On resume Ray refuses a trial whose latest named one is
gone ("Could not recover from checkpoint as it does not exist on storage anymore": the trial ends
failed), and its num_to_keep fails on an older named one that is gone. Yet the trainable takes the
trial's newest checkpoint whichever Ray names (`tuner.trainable.restore`). So where a trial's folder
holds a newer checkpoint than a named one that is gone, an empty stand-in folder takes the gone one's
place: Ray finds it, the trainable loads the newest, Ray's num_to_keep deletes the stand-in as the trial
goes on. Those the trial outlives without a new checkpoint (it had finished) are removed once the
study's fit returns.

A killed driver may also have begun trials after its last saved state: Ray does not resume them, and their
folders (unsaved_trials) are removed once the resumed fit returns.

Reads Ray's own state with Ray's own classes (ray 2.60: `trial_data` holds each trial's JSON and its
run metadata, the checkpoint manager inside); tests/tuner/test_resume.py writes a state the same way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tuner.storage import (
    CHECKPOINT_DIR,
    base_name,
    checkpoint_dirs,
    checkpoint_number,
    in_folder,
    read_text,
    write_text,
)

STAND_IN = "stand_in.txt"  # in a stand-in folder: what it is, for whoever looks into storage
# What Tuner.restore(resume_unfinished=True, resume_errored=False) runs again
RESUMED = ("PENDING", "RUNNING", "PAUSED")


@dataclass(frozen=True)
class StandIn:
    trial_id: str
    path: str  # the gone checkpoint's folder, where the stand-in is
    newest: str  # the trial's newest checkpoint folder, which the trainable restores


def describe(stand_ins: list[StandIn]) -> str:
    by_trial: dict[str, list[StandIn]] = {}
    for s in stand_ins:
        by_trial.setdefault(s.trial_id, []).append(s)
    return "; ".join(f"trial {t}: {', '.join(base_name(s.path) for s in these)} "
                     f"(it resumes from {base_name(these[0].newest)})" for t, these in by_trial.items())


@dataclass(frozen=True)
class Named:
    trial_id: str
    folder: str  # the trial's folder, as the study is now (it may have been moved since)
    checkpoints: list[str]  # its checkpoint folders the state names, oldest first


def saved_trials(fs, study_path: str) -> list:
    """The trials of the study's newest saved state, as Tuner.restore rebuilds them (stubs: each with
    its status, last result and checkpoint manager); none before the first save."""
    from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint
    from ray.tune.experiment.trial import Trial

    state_path = _find_newest_experiment_checkpoint(study_path, fs=fs)
    if state_path is None:
        return []
    with fs.open_input_stream(state_path) as f:
        state = json.loads(f.readall())
    trials = []
    for trial_json, run_metadata in state["trial_data"]:
        trial = Trial.from_json_state(trial_json, stub=True)
        trial.restore_run_metadata(run_metadata)
        trials.append(trial)
    return trials


def unfinished_trials(fs, study_path: str) -> dict[str, int]:
    """{trial id: last reported epoch} of the trials the study's newest saved state leaves to a resume: after an
    interrupted fit (Ctrl-C), those it stopped mid-way, as Ray saves its state before it stops them (a time
    budget's are saved TERMINATED)."""
    return {t.trial_id: int((t.last_result or {}).get("epoch", 0) or 0)
            for t in saved_trials(fs, study_path) if t.status in RESUMED}


@dataclass(frozen=True)
class SavedStudy:
    """The study's newest saved state, read once for all a resume does with it (stand-ins, the searcher's
    ended trials, ASHA's rungs)."""

    fs: Any
    path: str
    trials: list  # saved_trials

    @property
    def ended(self) -> set[str]:
        """The trials Ray will not run again."""
        return {t.trial_id for t in self.trials if t.status not in RESUMED}

    def reports(self) -> dict[str, list[dict]]:
        """Each trial's reported epochs, oldest first (its result.json): read here, only where asked for."""
        folder = self.path.rstrip("/")
        return {t.trial_id: [json.loads(line) for line in
                             read_text(self.fs, f"{folder}/{t.storage.trial_dir_name}/result.json").splitlines()
                             if line.strip()]
                for t in self.trials}


def saved_study(fs, study_path: str) -> SavedStudy:
    return SavedStudy(fs, study_path, saved_trials(fs, study_path))


def named_checkpoints(fs, study_path: str, trials: list | None = None) -> list[Named]:
    """The checkpoints the study's newest saved state names (Ray keeps the latest and up to num_to_keep)
    of each trial Ray will run again (`trials`: saved_trials, where read already)."""
    trials = saved_trials(fs, study_path) if trials is None else trials
    return [named_of(t, study_path) for t in trials if t.status in RESUMED]


def named_of(trial, study_path: str) -> Named:
    """The checkpoints a saved trial's state names, in the study's folder as it is now. A trial's own only: a
    PBT clone's named checkpoint of another trial is not its own to stand in for."""
    manager = trial.run_metadata.checkpoint_manager
    results = [*manager.best_checkpoint_results, manager.latest_checkpoint_result] if manager else []
    folder = f"{study_path.rstrip('/')}/{trial.storage.trial_dir_name}"
    paths = {f"{folder}/{base_name(r.checkpoint.path)}" for r in results
             if r is not None and in_folder(r.checkpoint.path, trial.storage.trial_fs_path)}
    return Named(trial.trial_id, folder, sorted(paths, key=checkpoint_number))


def place_stand_ins(fs, study_path: str, trials: list | None = None) -> list[StandIn]:
    """A stand-in for each checkpoint the study's saved state names that storage lacks where its trial
    has a newer one (none where it has none: the trial's work is gone, and Ray says so). Returns these
    and the stand-ins an earlier resume left, to remove once the fit returns."""
    stand_ins = []
    for trial in named_checkpoints(fs, study_path, trials):
        present = checkpoint_dirs(fs, trial.folder)
        if not present:
            continue
        newest, there = present[-1], {checkpoint_number(p) for p in present}
        for path in trial.checkpoints:
            if checkpoint_number(path) in there:
                if read_text(fs, f"{path}/{STAND_IN}"):
                    stand_ins.append(StandIn(trial.trial_id, path, newest))
            elif checkpoint_number(path) < checkpoint_number(newest):
                write_text(fs, f"{path}/{STAND_IN}", f"Empty: a stand-in for {base_name(path)}, which Ray deleted "
                           f"after its last saved state named it. The trial resumes from {base_name(newest)} "
                           "(tuner/resume.py).\n")
                stand_ins.append(StandIn(trial.trial_id, path, newest))
    return stand_ins


def remove_stand_ins(fs, stand_ins: list[StandIn]) -> None:
    """Those Ray's num_to_keep has not deleted: storage keeps real checkpoints only."""
    for s in stand_ins:
        if read_text(fs, f"{s.path}/{STAND_IN}"):  # no checkpoint is ever written there since
            fs.delete_dir(s.path)


RAY_TRIAL_FILES = ("params.json", "result.json", "progress.csv")  # what Ray writes in a trial's folder
# Ray's trial folder name: <trainable>_<trial id>_<index>_<params>_<date>
TRIAL_FOLDER = re.compile(r".+?_([0-9a-f]{8})_\d+_.*\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(_[0-9a-f]{4})?")


@dataclass(frozen=True)
class Unsaved:
    path: str  # a trial folder in the study's storage that no trial of the resumed study names

    @property
    def trial_id(self) -> str:
        found = TRIAL_FOLDER.fullmatch(base_name(self.path))
        return found.group(1) if found else base_name(self.path)


def unsaved_trials(fs, study_path: str, known: set[str]) -> list[Unsaved]:
    """The folders of trials a killed driver had begun after Ray last saved the study's state: none of the
    resumed study's trials (`known`: their folder names) is theirs. Ray does not resume such a trial (its
    searcher proposes anew, under a new id) and nothing reads its folder again: its checkpoints (~100 MB each
    for the default model) would stay for good. A trial the state saved PENDING had no folder yet: resumed, it
    starts in a new one, so one the killed driver had begun for it is unsaved too. A folder is taken for a
    trial's where it holds Ray's trial files or a checkpoint folder, or is empty and named as Ray names them;
    nothing else in the study's folder is touched."""
    import pyarrow.fs

    unsaved = []
    for info in fs.get_file_info(pyarrow.fs.FileSelector(study_path, allow_not_found=True)):
        if info.type != pyarrow.fs.FileType.Directory or info.base_name in known:
            continue
        inside = fs.get_file_info(pyarrow.fs.FileSelector(info.path))
        if any(i.base_name in RAY_TRIAL_FILES or CHECKPOINT_DIR.fullmatch(i.base_name) for i in inside) or \
                (not inside and TRIAL_FOLDER.fullmatch(info.base_name)):
            unsaved.append(Unsaved(info.path))
    return sorted(unsaved, key=lambda u: u.path)


def remove_unsaved(fs, unsaved: list[Unsaved]) -> None:
    """Once the resumed fit has returned: the dead driver's trial actors, which Ray stops as it notices the
    driver gone, may still have been writing into such a folder as the resume began."""
    for u in unsaved:
        fs.delete_dir(u.path)


def drop_saved_stopper(fs, study_path: str) -> bool:
    """Ray restores a study's stopper from its newest saved state over the one the resumed fit builds from
    `time_budget_s` (TuneController.__setstate__ after __init__): a resume could not change the time budget,
    and a study its budget had stopped could not go on at all (none was left). That state loses its stopper,
    so the resume's budget (tuner.search.restore_tuner) applies, counted from the resume. Only that key of
    Ray's JSON changes; nothing else in it is decoded. Returns whether there was one."""
    from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint

    state_path = _find_newest_experiment_checkpoint(study_path, fs=fs)
    if state_path is None:
        return False
    state = json.loads(read_text(fs, state_path))
    if state["runner_data"].pop("_stopper", None) is None:
        return False
    write_text(fs, state_path + ".tmp", json.dumps(state))
    fs.move(state_path + ".tmp", state_path)  # a crash mid-write leaves the state Ray saved
    return True
