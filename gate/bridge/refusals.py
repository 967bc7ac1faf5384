"""The lanes' refusals as pretix's failed check-ins (``POST …/events/{e}/checkinlists/{id}/failed_checkins/``).

A lane publishes every decision on ``scans/<gate>`` (QoS 0, docs/mqtt.md): a refusal carries the
lane's reason code, the ticket's format and its ticket key (a SHA-256), never the ticket's text.
The bridge reads the refusals of pretix tickets, queues them in its durable queue (sink
``pretix-failed``) and uploads each to the check-in list of the ticket's event, as pretixSCAN
uploads the refusals it made offline. pretix then counts them in its statistics and shows them
on the order.

- **Which**: refusals of ``pretix_sig1`` and ``pretix_random`` tickets whose gate reason says
  something about the ticket (``REASONS``). Reasons about the lane (``gate_closed``,
  ``emergency``, ``busy``, ``error``, ``recovering``, ``clock_unsynced``) and unreadable codes
  are not a failed check-in of a ticket, and are not sent.
- **raw_barcode**: pretix requires it. The bridge sends a secret only when pretix itself issued
  it for that event (a position's secret pulled from its orders, or a secret it listed as revoked
  or blocked), and then with the ``position`` when the bridge knows it: pretix holds that secret
  already, so nothing new leaves the venue, and it is what links a revoked secret to its order.
  Any other refused code is not sent: the bus carries only its hash, which means nothing to
  pretix, and the code itself never reaches the bridge.
- **datetime**: a scan message has no time of its own; the bridge's clock when it heard it (QoS 0
  messages arrive within milliseconds, or not at all).
- A refusal made while the bridge was away from the broker is not heard (QoS 0: the lanes keep
  their refusals nowhere): failed check-ins are statistics, best effort. What the bridge heard
  is durable from then on, like every upload.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from gate.bridge.builder import secret_key
from gate.bridge.pretix import iso
from gate.strictjson import Fields, nesting

SINK = "pretix-failed"
PRETIX_FORMATS = ("pretix_sig1", "pretix_random")
MAX_SCAN = 4096  # bytes: a scan message is about 250

# gate reason code → pretix's ``error_reason`` (pretix.base.models.Checkin.REASONS, 2026.8.0).
REASONS = {
    "revoked": "revoked",  # a cancelled order's or a changed ticket's old secret
    "blocked": "blocked",
    "already_used": "already_redeemed",
    "wrong_product": "product",  # the list's products (limit_products) or the lane's policy
    "not_yet_valid": "invalid_time",
    "expired": "invalid_time",
    "wrong_event": "invalid",  # not a ticket of this list's event
    "wrong_zone": "rules",  # the venue's own zone rule for this gate: pretix's nearest is a custom rule
    "bad_signature": "invalid",
    "unknown_key": "invalid",
}


class ScanError(ValueError):
    """A ``scans/`` message that is not one (``Fields`` raises ValueError, of which this is one)."""


@dataclass(frozen=True)
class Refusal:
    gate: str
    reason: str
    format: str
    ticket_key: str
    direction: str


def read_refusal(payload: bytes, sender: str) -> Refusal | None:
    """A ``scans/<sender>`` message: the refusal to upload, or None when it is none (an
    admission, another format, a reason about the lane). ``ValueError`` (``ScanError`` among
    them) when it is malformed."""
    if len(payload) > MAX_SCAN or nesting(payload, 4) > 4:
        raise ScanError("scan: too large or too deep")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ScanError("scan: not JSON") from None
    doc = Fields(data, "scan")
    if doc.integer("v") != 2 or doc.text("gate", max_len=64) != sender:
        raise ScanError(f"scan: not protocol 2 from {sender}")
    accepted = doc.boolean("accepted")
    reason = doc.text("reason", max_len=64)
    fmt = doc.text("format", "", max_len=64)
    key = doc.text("ticket_key", "", max_len=64)
    direction = doc.text("direction", "in", max_len=8)
    doc.accept_rest()  # source, latency_ms, and what a newer lane adds: not needed here
    if direction not in ("in", "out"):
        raise ScanError("scan.direction: in or out")
    if key and (len(key) != 64 or any(c not in "0123456789abcdef" for c in key)):
        raise ScanError("scan.ticket_key: not a ticket key")
    if accepted or reason not in REASONS or fmt not in PRETIX_FORMATS or not key:
        return None
    return Refusal(sender, reason, fmt, key, direction)


def job_body(refusal: Refusal, heard_at: float) -> tuple[str, dict[str, Any]]:
    """The queue's key and body of a refusal. The key holds the second it was heard: the same
    ticket refused again and again at one lane within a second (a holder presenting it in a
    loop) is one failed check-in; the nonce makes pretix take a retried upload once."""
    key = f"{SINK}:{refusal.gate}:{refusal.ticket_key}:{refusal.reason}:{int(heard_at)}"
    nonce = "gate-refusal-" + hashlib.sha256(key.encode()).hexdigest()[:32]
    return key, {"ticket_key": refusal.ticket_key, "reason": refusal.reason, "gate": refusal.gate,
                 "direction": refusal.direction, "at": heard_at, "nonce": nonce}


class PretixCodes:
    """Ticket key → (event, secret, position id or None) of the codes pretix issued, as the
    bridge pulled them: positions (the store's ``secrets``), then revoked and blocked secrets
    (kept per event in the store; their index is made again when they change)."""

    def __init__(self, store: Any, events: list[str]) -> None:
        self.store = store
        self.events = events
        self._sizes: tuple[int, ...] = ()
        self._index: dict[str, tuple[str, str]] = {}

    def find(self, ticket_key: str) -> tuple[str, str, int | None] | None:
        row = self.store.secret(ticket_key)
        if row is not None:
            return row["event"], row["secret"], row["position_id"]
        pairs = [(slug, self.store.get(f"pretix:{slug}:{kind}", {})) for slug in self.events for kind in ("revoked", "blocked")]
        sizes = tuple(len(items) for _, items in pairs)
        if sizes != self._sizes:  # revoked secrets only grow; a block lifted keeps its entry
            self._index = {secret_key(secret): (slug, secret) for slug, items in pairs for secret in items}
            self._sizes = sizes
        found = self._index.get(ticket_key)
        return (found[0], found[1], None) if found else None


def failed_checkin(refusal_body: dict[str, Any], secret: str, position: int | None) -> dict[str, Any]:
    """The request body pretix's ``failed_checkins`` takes (``FailedCheckinSerializer``)."""
    body: dict[str, Any] = {
        "error_reason": REASONS[refusal_body["reason"]],
        "error_explanation": f"gate {refusal_body['gate']}: {refusal_body['reason']}",
        "raw_barcode": secret, "raw_source_type": "barcode", "nonce": refusal_body["nonce"],
        "datetime": iso(refusal_body["at"]), "type": "exit" if refusal_body["direction"] == "out" else "entry"}
    if position is not None:
        body["position"] = position
    return body
