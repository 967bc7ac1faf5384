"""Bundles and deltas from the bus are verified and applied here, off the decision loop.

A full bundle of a million revocations takes seconds to verify and write; the lane must go on
deciding meanwhile. The worker has its own thread and its own database connection, takes one
message at a time in arrival order, and reports each outcome through ``report`` (which the
daemon hands to the decision loop's listeners and the status). A delta whose base bundle has
not arrived yet is kept and tried again after the next bundle is applied.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any, Callable

from gate.store import Store
from gate.trust import bundles
from gate.trust.bundles import Outcome, Report

log = logging.getLogger(__name__)


class BundleWorker:
    def __init__(
        self,
        database: Path,
        origin: str,
        admin_key: bytes | None,
        venue: str,
        sources: Any,
        report: Callable[[Report], None],
    ) -> None:
        self.database = database
        self.origin = origin
        self.admin_key = admin_key
        self.venue = venue
        self.sources = sources
        self.report = report
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bundle-worker", daemon=True)
        self._thread.start()

    def trust_reloaded(self, new: Any) -> None:
        """The lane reloaded its config's trust (``gate.lane.control.TrustReload``)."""
        self.sources, self.admin_key = new.sources, new.admin_key

    def offer(self, kind: str, payload: bytes) -> None:
        log.debug("signed %s received bytes=%d", kind, len(payload))
        self._queue.put(payload)

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        store = Store(self.database, self.origin)
        waiting: bytes | None = None  # a delta for a bundle not held yet
        try:
            while (payload := self._queue.get()) is not None:
                result = self._receive(store, payload)
                if result.kind == "no_base":
                    waiting = payload
                elif result.outcome == Outcome.APPLIED and result.what == "bundle" and waiting is not None:
                    payload, waiting = waiting, None
                    self._receive(store, payload)
        finally:
            store.close()

    def _receive(self, store: Store, payload: bytes) -> Report:
        try:
            result = bundles.receive(store, payload, self.admin_key, self.venue, self.sources)
        except Exception:  # receive reports its own failures; this is a bug, and must not end the worker
            log.exception("signed message not handled")
            return Report(Outcome.REFUSED, kind="error", error="internal error")
        if result.outcome != Outcome.CURRENT:
            try:
                self.report(result)
            except Exception:
                log.exception("bundle report failed")
        return result
