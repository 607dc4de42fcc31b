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

