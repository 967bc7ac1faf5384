"""What the bridge last heard from each service it talks to (pretix, OPN): reached or not,
authorised or not, when, and the last error. The pulls, the upload workers and the OPN probe
tell it; ``gate bridge status``, the bus status and the metrics show it.

``None`` means not known yet (nothing was asked since the start): not known is not down.
"""

from __future__ import annotations

import threading
import time
from typing import Any

UNAUTHORISED = (401, 403)


class Contact:
    """One service's last contact; every thread may tell it (a lock keeps the fields together)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"reachable": None, "authorised": None, "at": None, "ok_at": None, "error": None}

    def answered(self, status: int = 200, error: str | None = None) -> None:
        """The service answered with HTTP ``status`` (its request may still have failed: ``error``)."""
        now = time.time()
        with self._lock:
            authorised = status not in UNAUTHORISED
            self._state.update(reachable=True, authorised=authorised, at=now, error=error)
            if error is None:
                self._state["ok_at"] = now

    def unreached(self, error: str) -> None:
        """No answer at all (refused connection, timeout, DNS): whether it would authorise is not known."""
        with self._lock:
            self._state.update(reachable=False, authorised=None, at=time.time(), error=error)

    def failed(self, status: int, error: str) -> None:
        """A request failed: HTTP ``status``, or 0 when the service was not reached."""
        if status:
            self.answered(status, error)
        else:
            self.unreached(error)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._state)


def problems(status: dict[str, Any]) -> list[str]:
    """What needs an operator in a running bridge's status (``gate bridge status`` and
    ``check`` print them; an empty list is a healthy bridge)."""
    out: list[str] = []
    if not (status.get("broker") or {}).get("connected"):
        out.append("broker: not connected (the lanes' records wait in their outboxes)")
    pretix = status.get("pretix") or {}
    services = status.get("services") or {}
    if "pretix" in services and not pretix.get("enrolled"):
        out.append("pretix: not enrolled (gate bridge enrol)")
    for name, contact in sorted(services.items()):
        if contact.get("reachable") is False:
            out.append(f"{name}: not reachable: {contact.get('error') or '?'}")
        elif contact.get("authorised") is False:
            out.append(f"{name}: credentials refused: {contact.get('error') or '?'}")
    for kind, pull in sorted((pretix.get("pulls") or {}).items()):
        if not pull.get("ok") and (services.get("pretix") or {}).get("reachable") is not False:  # else said above
            out.append(f"pull {kind}: {pull.get('error') or 'failed'}")
    for sink, q in sorted((status.get("queue") or {}).items()):
        if q.get("dead"):
            out.append(f"{sink}: {q['dead']} dead job(s), refused for good (last error: {q.get('last_error') or '?'})")
    return out
