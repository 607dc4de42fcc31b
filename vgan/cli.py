"""Exit-status contract shared by every CLI: 0 success; 2 bad input (one message naming the
file or key, nothing started); 1 a failure at run time."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from vgan.errors import BadInputError, ConfigError, VganError


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


def check_threshold(threshold: float) -> None:
    """--threshold of vgan.evaluate, vgan.predict and tuner.predict (NaN fails the test too)."""
    if not 0 < threshold < 1:
        raise ConfigError(f"--threshold {threshold}: must lie strictly between 0 and 1")


def run_cli(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None, prog: str) -> int:
    try:
        main(argv)
    except BadInputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except VganError as e:
        print(f"{prog}: failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0
