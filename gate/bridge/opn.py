"""The OPN Ticket Engine's ``POST /stream`` (../shared/reference/opn-ticket-engine.txt):
batches of ticket actions with ``X-Api-Key``, answered per action in the order sent.

- ``200 {"status": "success", "data": [...]}``: every action accepted, each with its
  ``actionPromise`` (kept: it is how OPN's ``/actions/{promise}`` is asked later);
- ``200 {"status": "multi", "data": [...]}``: some accepted, some refused with ``errors``;
- ``400 {"status": "error", "error": "all_actions_invalid", "data": [...]}``: none accepted;
- ``403 {"message": "Forbidden"}``: the API key; anything else: nothing known to be accepted.

The answer is hostile until read: an answer whose ``data`` does not match the batch action for
action says nothing about any of them, so all are tried again (a duplicate checkedInTicket is
then refused by OPN's own lifecycle: "blocked on checkedInTicket").
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from gate import __version__
from gate.strictjson import nesting

log = logging.getLogger(__name__)

MAX_ACTIONS = 5000  # per request (the Ticket Engine's limit)
MAX_BODY = 16 * 1024 * 1024
SCANNED, CHECKED_IN = "scannedTicket", "checkedInTicket"


class OpnError(Exception):
    """Nothing of the batch is known to be accepted: try all of it again later. ``transient``:
    OPN was not reached or said it could not answer now (5xx, 429, 403 for a key an admin may
    fix); else OPN answered, but not in a way that fits this batch (another 4xx, a malformed
    answer): the batch itself may be what fails."""

    def __init__(self, message: str, transient: bool = True, status: int = 0) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status  # OPN's HTTP status; 0 when OPN was not reached


@dataclass(frozen=True)
class Outcome:
    """One action's fate: accepted with its promise, or refused with OPN's errors."""

    accepted: bool
    promise: str = ""
    error: str = ""


def action(kind: str, ticket_id: str, at: float) -> dict[str, Any]:
    """A ticket action as the stream takes it: ``ticketId`` (exclusive with ``nftId``) and the
    optional ``orderTime`` (unix seconds, uint64)."""
    return {"action": kind, "data": {"ticketId": ticket_id, "orderTime": max(0, int(at))}}


class OpnClient:
    def __init__(self, url: str, api_key: str, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=timeout, follow_redirects=False,
                                 headers={"X-Api-Key": api_key, "User-Agent": f"gate-bridge/{__version__}",
                                          "Accept": "application/json"})

    def close(self) -> None:
        self.http.close()

    def stream(self, actions: list[dict[str, Any]]) -> list[Outcome]:
        """Send one batch; each action's outcome in order, or ``OpnError``."""
        if not 1 <= len(actions) <= MAX_ACTIONS:
            raise ValueError(f"1-{MAX_ACTIONS} actions per request")
        try:
            with self.http.stream("POST", f"{self.url}/stream", json=actions) as answer:
                status = answer.status_code
                if status == 403:
                    raise OpnError("OPN refused the API key (403): check [bridge.opn] api_key_file", status=403)
                if status not in (200, 400):
                    raise OpnError(f"OPN answered HTTP {status}", transient=status == 429 or status >= 500, status=status)
                body = read_limited(answer, MAX_BODY)
        except httpx.HTTPError as exc:
            raise OpnError(f"OPN not reached ({exc.__class__.__name__})") from None
        if body is None:
            raise OpnError(f"OPN's answer is larger than {MAX_BODY} bytes", transient=False, status=status)
        try:
            return read_answer(body, status, actions)
        except OpnError as exc:
            exc.status = status
            raise

    def probe(self) -> tuple[int, str]:
        """(HTTP status, '') when the engine answers with this key; (status, why) when it refuses
        the key; (0, why) when it is not reached. A GET of an action that does not exist: only
        the status matters, the body is never read."""
        try:
            with self.http.stream("GET", f"{self.url}/actions/00000000-0000-0000-0000-000000000000") as answer:
                status = answer.status_code
        except httpx.HTTPError as exc:
            return 0, f"not reached ({exc.__class__.__name__})"
        return status, "API key refused (403)" if status == 403 else ""

    def reachable(self) -> str:
        """'' when the engine answers with this key; else why not (doctor, status)."""
        return self.probe()[1]


def read_limited(answer: httpx.Response, limit: int) -> bytes | None:
    """A streamed answer's body, read no further than ``limit`` bytes: None when it is longer
    (a hostile or broken server cannot make the bridge hold more than that in memory)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in answer.iter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def read_answer(body: bytes, status: int, actions: list[dict[str, Any]]) -> list[Outcome]:
    """OPN's answer to ``actions``, action by action; ``OpnError`` (not transient: it is this
    answer that does not fit) when it says nothing reliable about them."""
    try:
        return _read_answer(body, status, actions)
    except OpnError as exc:
        raise OpnError(str(exc), transient=False) from None


def _read_answer(body: bytes, status: int, actions: list[dict[str, Any]]) -> list[Outcome]:
    if len(body) > MAX_BODY or nesting(body, 16) > 16:
        raise OpnError("OPN's answer is too large or too deep")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise OpnError(f"OPN answered HTTP {status} that is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise OpnError(f"OPN answered HTTP {status} without a data list")
    overall, data = doc.get("status"), doc["data"]
    if (status, overall) not in ((200, "success"), (200, "multi"), (400, "error")):
        raise OpnError(f"OPN answered HTTP {status} with status {str(overall)[:20]!r}")
    if len(data) != len(actions):
        raise OpnError(f"OPN answered {len(data)} results for {len(actions)} actions")
    outcomes = []
    for sent, item in zip(actions, data):
        if not isinstance(item, dict):
            raise OpnError("OPN's result is not an object")
        kind = item.get("action")
        if kind is not None and kind != sent["action"]:
            raise OpnError(f"OPN's results are not in the order sent ({str(kind)[:20]!r} for {sent['action']!r})")
        if item.get("status") == "success":
            promise = item.get("actionPromise")
            if not isinstance(promise, str) or not 1 <= len(promise) <= 100:
                raise OpnError("OPN accepted an action without an actionPromise")
            outcomes.append(Outcome(True, promise))
        elif item.get("status") == "error":
            errors = item.get("errors")
            text = "; ".join(f"{e.get('param')}: {e.get('message')}" for e in errors if isinstance(e, dict)) \
                if isinstance(errors, list) else "refused"
            outcomes.append(Outcome(False, error=text[:300]))
        else:
            raise OpnError("OPN's result has no success or error status")
    if overall == "success" and not all(o.accepted for o in outcomes):
        raise OpnError("OPN said success but refused some actions")
    return outcomes
