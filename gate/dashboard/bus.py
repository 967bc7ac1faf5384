"""The dashboard's connection to the venue bus, as the read-only ``venue-monitor`` user.

It subscribes to what a dashboard shows and hands each message, unread, to a callback on paho's
network thread; reading it is ``gate.dashboard.messages``'s job and counting it the venue's.
The shipped ACL lets ``venue-monitor`` read the whole venue and write nothing, so nothing this
connection could do changes a lane. Its session is persistent (``clean_session = false``): the
broker keeps the records that arrive while the dashboard restarts.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from gate.config import SyncConfig
from gate.sync.client import connect_error, make_client

log = logging.getLogger(__name__)


def subscriptions(root: str) -> list[tuple[str, int]]:
    return [
        (f"{root}gates/+/status", 1),  # retained: every lane's state at once, Last Wills included
        (f"{root}scans/+", 0),  # each decision, for the live view
        (f"{root}ledger/+", 1),  # the signed records: what is counted
        (f"{root}sync/reply/+/+", 1),  # catch-up answers between gates: records the dashboard missed
        (f"{root}bundle", 1),  # retained: the admin's signed bundle (the roster: zones)
        (f"{root}gates/+/cmd/result", 1),  # the lanes' answers to commands
    ]


class BusReader:
    """``on_message(topic, payload)`` and ``on_connection(connected)`` run on paho's thread."""

    def __init__(self, settings: SyncConfig, venue: str, on_message: Callable[[str, bytes], None],
                 on_connection: Callable[[bool], None]) -> None:
        self.settings = settings
        self.on_message = on_message
        self.on_connection = on_connection
        self.connected = False
        # Set once the broker has acknowledged the subscriptions: from then on nothing the lanes
        # publish passes this reader by (what came before is asked of them by catch-up).
        self.subscribed = threading.Event()
        self._failures = 0
        self._client = make_client(settings, f"gate-dashboard-{venue}", clean_session=False)
        self._client.reconnect_delay_set(1, 10)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: self.subscribed.set()

    def start(self) -> None:
        """Connect in the background: the page shows 'bus: not connected' until it is."""
        self._client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if reason.is_failure:
            log.error("bus connection refused broker=%s:%d user=%s reason=%r", self.settings.host, self.settings.port,
                      self.settings.username, str(reason))
            return
        self._failures = 0
        log.info("bus connected broker=%s:%d user=%s", self.settings.host, self.settings.port, self.settings.username)
        client.subscribe(subscriptions(self.settings.topic_root))
        self.connected = True
        self.on_connection(True)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        """Paho calls this inside its ``except OSError``: say why (TLS problems by name)."""
        self._failures += 1
        if self._failures <= 3 or self._failures % 30 == 0:
            log.warning("bus not reached broker=%s:%d error=%s failures=%d", self.settings.host, self.settings.port,
                        connect_error(sys.exc_info()[1]), self._failures)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if self.connected:
            log.warning("bus disconnected broker=%s:%d reason=%r", self.settings.host, self.settings.port, str(reason))
        self.connected = False
        self.on_connection(False)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            self.on_message(message.topic, bytes(message.payload))
        except Exception:  # nothing read from the bus may stop paho's thread
            log.exception("bus message not handled topic=%s at=%.3f", message.topic[:200], time.time())
