"""Exit-status contract shared by every CLI: 0 success; 2 bad input (one message naming the
file or key, nothing started); 1 a failure at run time."""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from vgan.errors import BadInputError, VganError


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
