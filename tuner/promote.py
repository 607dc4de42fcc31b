"""`python -m tuner.promote --version N`: make a registered version the champion by hand,
overriding the promotion gate (it says what it overrode and tags the version so).

    python -m tuner.promote --version 3 [--name vgan-generator] [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
from typing import Sequence

from vgan.cli import exit_program, run_cli
from vgan.errors import ConfigError


def _main(argv: Sequence[str] | None) -> None:
    p = argparse.ArgumentParser(prog="python -m tuner.promote", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--version", required=True, help="model version to promote")
    p.add_argument("--name", default="vgan-generator", help="registered model name")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db here)")
    args = p.parse_args(argv)
    # MLflow and torch load once the arguments are read: --help and a mistyped option answer at once
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from tuner.registry import promote, registry_hint
    from tuner.tracking import check_tracking_store, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    check_tracking_store(uri, read_only=True)
    client = MlflowClient(uri)
    try:
        overrode = promote(client, args.name, args.version)
    except MlflowException as e:
        hint = registry_hint(client, args.name)
        raise ConfigError(f"--version {args.version}: no such version of '{args.name}' in {uri} ({e.message})"
                          + (f"; {hint}" if hint else "")) from None
    print(f"{args.name} version {args.version} is now @champion, by hand: {overrode}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, "tuner.promote")


if __name__ == "__main__":
    exit_program(main())
