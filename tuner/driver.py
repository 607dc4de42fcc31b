"""Which process drives a study: a record in the study's folder, so a `--resume` does not run beside a live driver.

A study's driver writes `driver.json` (host, boot, process id and its start time) before its fit begins, and a
resuming driver writes its own. Two drivers of one study would each run trials the other's state does not know,
and a resume removes the folders of trials its saved state does not name (tuner.resume.unsaved_trials): a
`--resume` while the study's driver still runs on this machine is refused, naming the process. A driver on another
machine cannot be looked at from here (nor where /proc is missing, as on macOS): the resume goes on, as before.
A process id taken again by another process after the driver died is told apart by its start time.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from vgan.errors import ConfigError

DRIVER_FILE = "driver.json"  # in a study's folder: the driver that runs it, or ran it last
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class DriverRecord:
    host: str
    boot: str  # the machine's boot id ('' where it has none to read)
    pid: int
    start: int  # the process's start time in clock ticks since boot (/proc/<pid>/stat), 0 where unknown
    started: str  # when, as people read it

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started}"


def read_or_empty(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def process_start(pid: int) -> int:
    """The process's start time (field 22 of /proc/<pid>/stat, after its name, which may hold spaces); 0 where
    there is no such process, it has exited (a zombie its parent has not reaped yet) or there is no /proc."""
    stat = read_or_empty(Path(f"/proc/{pid}/stat"))
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 and fields[0] not in ("Z", "X") else 0


def this_driver() -> DriverRecord:
    return DriverRecord(socket.gethostname(), read_or_empty(BOOT_ID).strip(), os.getpid(),
                        process_start(os.getpid()), time.strftime("%Y-%m-%d %H:%M:%S %Z"))


def still_running(record: DriverRecord) -> bool:
    """Whether the recorded driver is a process alive on this machine now (not this one): same host and boot, and
    its process id held by a process started when it was."""
    here = this_driver()
    return (record.host, record.boot) == (here.host, here.boot) and bool(record.boot) and record.start > 0 \
        and record.pid != here.pid and process_start(record.pid) == record.start


def parse_record(text: str) -> DriverRecord | None:
    """The record a driver wrote; None where there is none or it cannot be read (a half-written file: no check)."""
    try:
        return DriverRecord(**json.loads(text))
    except (ValueError, TypeError):
        return None


def record_driver(storage, name: str) -> None:
    storage.write_text(name, DRIVER_FILE, json.dumps(asdict(this_driver()), indent=1) + "\n")


def check_not_running(storage, name: str) -> None:
    """Before a `--resume`: refused where the study's driver still runs on this machine."""
    record = parse_record(storage.read_text(name, DRIVER_FILE))
    if record is not None and still_running(record):
        raise ConfigError(f"--resume: study '{name}' is still run by its driver ({record.describe()}): a second "
                          f"driver would run trials beside its own; stop it first (Ctrl-C where it runs, or kill -INT "
                          f"{record.pid}: it ends in order and says how to go on), or let it end")
