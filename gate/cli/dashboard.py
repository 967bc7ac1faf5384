"""``gate venue-dashboard``: the venue's live dashboard (docs/dashboard.md).

``run`` serves it (the default), ``check-config`` reads its config and names every problem,
``hash-password`` makes the ``password_hash`` of a ``[[users]]`` entry (read from the terminal or
stdin, never from the command line, where ``ps`` would show it)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from gate.cli.common import EXIT_OK, UsageError


def cmd_dashboard(args: argparse.Namespace) -> int:
    if args.action == "hash-password":
        from gate.dashboard.auth import hash_password

        password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        if len(password) < 8:
            raise UsageError("a dashboard password has at least 8 characters")
        print(hash_password(password))
        return EXIT_OK
    from gate.dashboard import settings

    config = settings.load(args.config or settings.default_path())  # ConfigError: exit 2, every problem named
    if args.action == "check-config":
        print(json.dumps({"config": config.path, "venue": config.venue, "url": config.url, "users": len(config.users),
                          "commands": "on" if config.commands.signing_key else "off (no admin key)",
                          "zones": config.capacity, "warnings": list(config.warnings)}))
        for warning in config.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return EXIT_OK
    from gate.dashboard import server
    from gate.field import logsetup

    logsetup.setup(args.log_level)
    return server.run(config)


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("venue-dashboard", help="the venue's live dashboard: lanes, zone occupancy, signed commands")
    p.add_argument("action", nargs="?", default="run", choices=("run", "check-config", "hash-password"))
    p.add_argument("--config", help="dashboard config (default: $GATE_DASHBOARD_CONFIG or /etc/gate/dashboard.toml)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(fn=cmd_dashboard)
