"""systemd's notify protocol (sd_notify): READY, STATUS, STOPPING and WATCHDOG.

A few lines over a datagram socket, so no dependency. Does nothing when ``NOTIFY_SOCKET`` is
not set (a terminal, the tests that do not ask for it).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        self.address = address
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and (not pid or pid == str(os.getpid()))
        # Ping at half the interval, as sd_watchdog_enabled(3) recommends.
        self.watchdog_interval = int(usec) / 2e6 if enabled else None
        self._last_watchdog = 0.0
        self._socket: socket.socket | None = None
        if address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def notify(self, message: str) -> None:
        if self._socket is None:
            return
        try:
            self._socket.sendto(message.encode(), self.address)
        except OSError as exc:
            log.warning("sd_notify failed message=%r error=%r", message.split("\n")[0], str(exc))

    def ready(self, status: str) -> None:
        self.notify(f"READY=1\nSTATUS={status}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def watchdog(self) -> None:
        """Called from the decision loop on every turn; sends at most every half interval."""
        if self.watchdog_interval is None:
            return
        now = time.monotonic()
        if now - self._last_watchdog >= self.watchdog_interval:
            self._last_watchdog = now
            self.notify("WATCHDOG=1")
