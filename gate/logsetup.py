"""Logging that reads well in journald and in a terminal: key=value context in the message."""

from __future__ import annotations

import logging
import os
import sys


def setup(level: str = "info") -> None:
    # Under systemd (JOURNAL_STREAM set) journald stamps each line itself: no second timestamp.
    if os.environ.get("JOURNAL_STREAM"):
        fmt = "%(levelname)s %(name)s: %(message)s"
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr, force=True)
