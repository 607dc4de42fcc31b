"""Exit-status contract shared by every CLI: 0 success; 2 bad input (one message naming the
file or key, nothing started); 1 a failure at run time."""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import stat
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, Sequence

from vgan.errors import BadInputError, ConfigError, VganError


def nonempty(text: str) -> str:
    """argparse type of a path or URI option: an empty one is refused (exit 2), where it was read as the working
    directory: `--storage "$STORAGE"` with the variable unset put a study's folders there, `--input "$DIR"` took
    the working directory's images."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty (an unset shell variable?): give a path or URI")
    return text


def writable_folder(path: Path, what: str) -> Path:
    """`path` made (with its parents) and written to once, before any work starts: an output that cannot
    be (read-only mount, no permission, a file in the way) is bad input, not a traceback after the work."""
    if path.exists() and not path.is_dir():
        raise BadInputError(f"{what} {path}: is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".vgan-write-probe-"):
            pass
    except OSError as e:
        raise BadInputError(f"{what} {path}: cannot write there ({e.strerror or e})") from None
    return path


def writable_file(path: Path, what: str) -> Path:
    """`path` for a file written later: its folder made and written to once now, so that a file that cannot be
    written is bad input before the work, not a traceback after it."""
    if path.is_dir():
        raise BadInputError(f"{what} {path}: is a folder; give the name of a file to write")
    writable_folder(path.parent, what)
    return path


def json_text(value: Any) -> str:
    """A JSON file's text as the commands write theirs (metrics.json, --json): indented, but a list of plain values
    on one line (an interval, a row of pair counts: one number a line made 400 lines of 20 images' pair counts,
    10,000 of 100's)."""
    return _json_text(value, "") + "\n"


def _json_text(value: Any, pad: str) -> str:
    inner = pad + "  "
    if isinstance(value, dict) and value:
        items = ",\n".join(f"{inner}{json.dumps(str(k))}: {_json_text(v, inner)}" for k, v in value.items())
        return f"{{\n{items}\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + _json_text(v, inner) for v in value) + f"\n{pad}]"
    return json.dumps(value)


def check_threshold(threshold: float) -> None:
    """--threshold of vgan.evaluate, vgan.predict and tuner.predict (NaN fails the test too)."""
    if not 0 < threshold < 1:
        raise ConfigError(f"--threshold {threshold}: must lie strictly between 0 and 1")


@contextmanager
def handler_kept(signum: int) -> Iterator[None]:
    """What handles `signum` after the block is what handled it before, whatever the block set (`ray.init` sets
    SIGTERM's to exit at once, its core worker a native one that prints a stack and aborts; Tune's fit sets SIGINT's
    and gives it back only once it was pressed). In the main thread, where handlers can be set at all."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signum) if main else None
    try:
        yield
    finally:
        if handler is not None:  # (None: set outside Python, which Python cannot put back)
            signal.signal(signum, handler)


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[list[int]]:
    """SIGTERM (a scheduler's stop: Slurm's scancel, time limit or preemption; Kubernetes deleting a pod; `kill`) stops
    the command as Ctrl-C does, in order and saying how to go on, where it ended it at once. The handler passes it
    to SIGINT's (Python's raises KeyboardInterrupt; Ray Tune's ends its fit in order) or, where SIGINT is ignored
    (a command started in the background), raises KeyboardInterrupt. Yields a list that holds the signal once it
    came. Only the main thread can set handlers: elsewhere, nothing changes."""
    received: list[int] = []

    def handler(signum: int, frame) -> None:
        received.append(signum)
        on_int = signal.getsignal(signal.SIGINT)
        if callable(on_int):
            on_int(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    with handler_kept(signal.SIGTERM):
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)
        yield received


def stdout_is_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):  # closed, or replaced by an object without a descriptor
        return False


class ReaderGone(Exception):
    """The reader of standard output went, met and dealt with where it was met (its text: what was done about it),
    standard output already pointed at /dev/null."""


def reader_gone(prog: str, done: str = "") -> int:
    """The reader of standard output went (`| head`, a pager quit): stop as a Unix tool stopped by SIGPIPE does, in
    one line on stderr, where a traceback came from the print that met the closed pipe. Standard output is pointed
    at /dev/null so that the interpreter's flush at exit does not meet it again (Python's `signal` docs)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    print(f"{prog}: stopped: the reader of its output closed the pipe{done}", file=sys.stderr)
    return 128 + signal.SIGPIPE


def run_cli(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None, prog: str) -> int:
    with sigterm_as_ctrl_c() as terminated:
        try:
            main(argv)
            sys.stdout.flush()  # a closed pipe is met here, not in the interpreter's flush at exit (exit 120)
        except BrokenPipeError:
            if not stdout_is_pipe():  # another pipe or socket of the command's: not this
                raise
            return reader_gone(prog)
        except ReaderGone as e:
            return reader_gone(prog, str(e))
        except BadInputError as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            return 2
        except VganError as e:
            print(f"{prog}: failed: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            if terminated:
                print(f"{prog}: stopped by SIGTERM", file=sys.stderr)
                return 128 + signal.SIGTERM
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
    return 0


def exit_program(code: int) -> NoReturn:
    """A command's last step when run as a program (`python -m ...`), never in a process that goes on (a test
    calling `main`): the interpreter's final garbage collection walked the heap that torch, Ray and MLflow
    leave, 2.5 s of a smoke study's exit (py-spy: gc_collect_main after the summary) and 0.4-0.9 s of their
    imports alone, to free memory the OS takes back anyway. Frozen, those objects are left to it; what must
    be finished at exit is finished before (atexit handlers, open files closed by the code that opened them)."""
    gc.freeze()
    sys.exit(code)
