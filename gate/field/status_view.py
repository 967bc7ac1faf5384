"""What a running lane says about itself: to a technician (``gate status``, ``gate doctor``,
metrics) and on its retained status topic. Put together from the loop, the store, the readers
and the venue sync; the parts that touch the database are read on the loop's thread."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from gate import __version__
from gate.field.status_server import decision_summary
from gate.lane.loop import DecisionLoop
from gate.lane.readers import Readers
from gate.store import Store

if TYPE_CHECKING:
    from gate.sync.client import VenueSync

RECENT_DECISIONS = 20  # what gate status shows when it connects


class StatusView:
    def __init__(self, gate_id: str, venue: str, loop: DecisionLoop, store: Store, readers: Readers,
                 sync: VenueSync | None = None) -> None:
        self.gate_id = gate_id
        self.venue = venue
        self.loop = loop
        self.store = store
        self.readers = readers
        self.sync = sync
        self.bundle_refusals = 0
        self.last_refusal = ""
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_DECISIONS)
        self.started_at = time.time()
        self._reading = threading.Lock()  # one reading on the loop at a time
        self._last_reading: tuple[float, dict[str, Any] | None] = (0.0, None)
        loop.listeners.append(self._remember_decision)

    def _remember_decision(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "decision":
            self.recent.appendleft(decision_summary(payload, self.loop.clock.now()))

    def bundle_refused(self, what: str) -> None:
        """A signed bundle or delta was refused (bundle worker's thread)."""
        self.bundle_refusals += 1
        self.last_refusal = what[:300]

    def lane_status(self) -> dict[str, Any]:
        """What the lane says on the bus and to a technician (on the loop thread)."""
        return {
            **self.loop.status(),
            "version": __version__,
            "venue": self.venue,
            "readers": self.readers.status(),
            "bundle": {**self.store.trust.held().as_dict(), "refused": self.bundle_refusals, "last_refusal": self.last_refusal},
        }

    def snapshot(self, max_age: float = 0.0) -> dict[str, Any]:
        """``gate status``'s snapshot (any thread). Answers even when the loop hangs, and says so.

        The lane's part is read on the decision loop; with ``max_age`` (metrics) a reading at
        most that old is given again, and callers at the same moment share one reading, so
        scrapes at any rate cost the loop at most one reading per ``max_age``."""
        view: dict[str, Any] = {"gate": self.gate_id, "venue": self.venue, "version": __version__,
                                "pid": os.getpid(), "started": round(self.started_at, 3),
                                "uptime": round(time.time() - self.started_at, 1)}
        if not self.loop.alive:
            return {**view, "problem": "the decision loop is not running"}
        with self._reading:
            taken_at, lane = self._last_reading
            if lane is None or time.monotonic() - taken_at > max_age:
                try:
                    lane = self.loop.call(self._on_loop, timeout=1.0)
                except TimeoutError:
                    return {**view, "problem": "the decision loop is not answering (systemd's watchdog restarts a hung lane)"}
                self._last_reading = (time.monotonic(), lane)
        return {**view, **lane}

    def _on_loop(self) -> dict[str, Any]:
        sync = None
        if self.sync is not None:
            broker = "%s:%d" % self.sync.broker  # the one connected to (or being tried): failover moves it
            sync = {"connected": self.sync.connected, "broker": broker, "outbox": self.sync.outbox_size(),
                    "conflicts": self.store.ledger.conflict_count(), "counters": dict(self.sync.counters),
                    "refusals": dict(self.sync.refusals), "roster": len(self.sync.roster), "epoch": self.store.epoch}
        return {**self.lane_status(), "sync": sync, "ledger_seq": self.store.ledger.last_seq(), "recent": list(self.recent)}
