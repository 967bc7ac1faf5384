"""The ``gate`` command (DESIGN §9): the parser, built from each command group's module, and
``main``. Heavy imports stay inside the commands so that start-up is quick."""

from __future__ import annotations

import argparse
import sys

from gate.cli.common import EXIT_USAGE, UsageError
from gate.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    from gate import __version__
    from gate.config import default_path

    parser = argparse.ArgumentParser(prog="gate", description="Turnstile controller firmware")
    parser.add_argument("--version", action="version", version=f"gate {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=default_path(), help="config file (default: $GATE_CONFIG or /etc/gate/gate.toml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from gate.cli import admin, bridge, camera, dashboard, decode, field, lane, tickets

    for group in (lane, tickets, admin, decode, camera, field, dashboard, bridge):
        group.add_parsers(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as exc:
        print(f"gate: config error in {exc.path}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"gate: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
