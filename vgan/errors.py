"""Exceptions that carry a user-facing message.

The CLIs map them to exit statuses: bad input (config, data, arguments, checkpoints that do
not fit) exits 2 before anything starts; a failure while training exits 1.
"""


class VganError(Exception):
    """Base class: the message is meant for the user, not a traceback."""


class BadInputError(VganError):
    """Input the user can fix: exit status 2, nothing started."""


class ConfigError(BadInputError):
    """A config file or value is wrong; the message names the file and the dotted key."""


class DataError(BadInputError):
    """A dataset is missing, incomplete or inconsistent; the message names the file."""


class CheckpointError(BadInputError):
    """A checkpoint cannot be loaded for the requested model or run."""


class DivergenceError(VganError):
    """Training produced a non-finite loss (runtime failure, exit status 1)."""

    def __init__(self, epoch: int, loss_name: str, value: float):
        self.epoch = epoch
        self.loss_name = loss_name
        self.value = value
        super().__init__(f"diverged at epoch {epoch} ({loss_name} = {value})")
