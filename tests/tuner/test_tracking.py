"""tuner.tracking: what MLflow's stores print on a study's console."""

import logging

from tuner.tracking import SecondaryPipelineError  # noqa: F401 - importing tuner.tracking installs the filter


def test_psycopgs_echo_of_an_error_already_raised_is_dropped_and_its_other_warnings_kept(caplog):
    """On a PostgreSQL store MLflow raises and handles an IntegrityError for a metric a run holds (a best epoch's
    metrics linked to its model), and psycopg warned of the aborted pipeline at every trial's end."""
    log = logging.getLogger("psycopg")
    with caplog.at_level(logging.WARNING):
        log.warning("error ignored terminating %r: %s", "<psycopg.Pipeline [INERROR]>", "pipeline aborted")
        log.warning("unknown PostgreSQL timezone: %r; will use UTC", "Mars/Olympus")
    assert [r.getMessage() for r in caplog.records] == ["unknown PostgreSQL timezone: 'Mars/Olympus'; will use UTC"]



def test_a_study_resumed_by_other_code_says_so_and_its_run_keeps_each_code(tmp_path):
    """Its run's Source keeps the code it began with; each resume by other code than ran it last is appended
    to `resumed_git_commits` (its trials' runs copy it) and noted on the console; the same code says nothing."""
    from tuner.tracking import Study

    uri = f"sqlite:///{tmp_path}/mlflow.db"

    def code(commit: str | None, dirty: bool = False) -> dict[str, str]:
        if commit is None:  # an installed package: no commit tags
            return {}
        return {"mlflow.source.git.commit": commit, **({"git_dirty": "true"} if dirty else {})}

    def start(tags: dict[str, str]) -> str | None:
        source = {"mlflow.source.name": "python -m tuner.run", **tags}
        return Study.start(uri, "resume-test", "s", source, True).resumed_by(source)

    a, b = "a" * 40, "b" * 40
    assert start(code(a)) is None  # begun, not resumed
    first = Study.start(uri, "resume-test", "s", {"storage": "replayed"}, True)  # tuner.replay's: no note, no tag
    assert start(code(a)) is None
    assert start(code(b, dirty=True)) == (
        f"the code changed since this study last ran (commit {a[:12]} to commit {b[:12]} (edited)): the trials that "
        f"train from here train with it, and the search compares them with trials trained by commit {a[:12]}")
    assert start(code(b, dirty=True)) is None  # compared with its last resume's code, not its start's
    assert start(code(None)).startswith(f"the code changed since this study last ran (commit {b[:12]} "
                                        "(edited) to code of no known commit)")
    tags = first.client.get_run(first.info.parent_run_id).data.tags
    assert tags["mlflow.source.git.commit"] == a and "git_dirty" not in tags
    assert tags["resumed_git_commits"] == f"{b} (edited), unknown"  # the replay, whose tags name no code: nothing
    assert start(code(a)) is not None
    assert first.client.get_run(first.info.parent_run_id).data.tags["resumed_git_commits"] == \
        f"{b} (edited), unknown, {a}"


def test_a_studys_notes_on_its_data_are_its_runs_description(tmp_path):
    """What tuner.run says of the data before a study (a frame made black, FOVs estimated) is the study run's
    description, the first thing its page in MLflow's UI shows; a resume says them again in its place, and
    keeps what a user wrote there."""
    from tuner.tracking import Study

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = Study.start(uri, "notes-test", "s", {}, False)

    def description() -> str | None:
        return first.client.get_run(first.info.parent_run_id).data.tags.get("mlflow.note.content")

    first.describe_data(())
    assert description() is None  # nothing to say: no description
    first.describe_data(("photographs converted as read: ...", "FOVs estimated"))
    said = ("Notes on the data, as the study said them before it began:\n\n- photographs converted as read: ...\n"
            "- FOVs estimated")
    assert description() == said
    first.client.set_tag(first.info.parent_run_id, "mlflow.note.content", said + "\n\nthe second camera's batch")
    resumed = Study.start(uri, "notes-test", "s", {}, True)
    assert resumed.info.parent_run_id == first.info.parent_run_id
    resumed.describe_data(("FOVs estimated",))
    assert description() == ("Notes on the data, as the study said them before it began:\n\n- FOVs estimated\n\n"
                             "the second camera's batch")
    first.client.set_tag(first.info.parent_run_id, "mlflow.note.content", "mine")
    resumed.describe_data(("FOVs estimated",))
    assert description() == "Notes on the data, as the study said them before it began:\n\n- FOVs estimated\n\nmine"
