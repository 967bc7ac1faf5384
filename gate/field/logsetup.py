"""Logging that reads well in journald and in a terminal: key=value context in the message.

Under systemd, stderr goes to journald, which stamps each entry with the time itself, so no
second timestamp is printed. Each line starts with its syslog priority (``<3>`` for an error,
sd-daemon(3)), which journald takes as the entry's priority: ``journalctl -u gate -p warning``
shows warnings and worse, and a traceback's lines keep the priority of the record they belong to.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{SYSLOG_PRIORITY.get(record.levelno, 6 if record.levelno > logging.DEBUG else 7)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def to_journal(stream: TextIO, environ: os._Environ[str] | dict[str, str] = os.environ) -> bool:
    """Is ``stream`` journald's own stream? ``JOURNAL_STREAM`` names its device and inode, so a
    child whose stderr was redirected elsewhere does not mistake itself for the service."""
    expected = environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def setup(level: str = "info", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if to_journal(stream):
        handler.setFormatter(JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
