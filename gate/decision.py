"""What a decision is: a value with a stable reason code, the claims it was made from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, NamedTuple


class Reason(StrEnum):
    """Stable reason codes (DESIGN §2). Extend, never rename: dashboards and staff rely on them."""

    OK = "ok"
    UNREADABLE = "unreadable"
    UNKNOWN_FORMAT = "unknown_format"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    REVOKED = "revoked"
    BLOCKED = "blocked"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    WRONG_EVENT = "wrong_event"
    WRONG_PRODUCT = "wrong_product"
    WRONG_ZONE = "wrong_zone"
    ALREADY_USED = "already_used"
    STALE_PROOF = "stale_proof"
    REPLAYED_PROOF = "replayed_proof"
    CLOCK_UNSYNCED = "clock_unsynced"
    GATE_CLOSED = "gate_closed"
    EMERGENCY = "emergency"
    BUSY = "busy"
    ERROR = "error"
    RECOVERING = "recovering"  # the lane's database is new: it learns the venue's records before it admits
    ZONE_FULL = "zone_full"  # the lane's zone holds its capacity (or, cut off from some of its lanes, this lane's share)


IN = "in"
OUT = "out"
DIRECTIONS = (IN, OUT)

# A lane's modes: "normal" decides on every ticket, "free" lets everyone through (relays held
# open, nothing recorded), "locked" refuses every ticket with ``gate_closed``.
MODES = ("normal", "free", "locked")


def ticket_key(format_name: str, ticket_id: bytes | str) -> str:
    """The ledger's identity of a ticket: SHA-256 over the format and its stable id.

    Hashed so that the ledger, the logs and the bus never carry a raw ticket secret, and
    namespaced by format so that two formats' ids can never collide.
    """
    raw = ticket_id.encode() if isinstance(ticket_id, str) else ticket_id
    return hashlib.sha256(format_name.encode() + b":" + raw).hexdigest()


# Revocation lists (bundles, deltas, the store) hold the first 16 bytes of each revoked ticket
# key: 128 bits keep accidental collisions out of reach (about 2^-88 for a million revocations
# against a billion tickets), at a quarter of the size of the keys as hex.
PREFIX_BYTES = 16


def revocation_prefix(ticket_key: str) -> bytes:
    """The part of a ticket key (64 hex digits) that revocation lists hold."""
    return bytes.fromhex(ticket_key[: 2 * PREFIX_BYTES])


@dataclass(frozen=True)
class Proof:
    """A holder's proof of possession (a rotating code, an NFC answer, a proof token), drawn at
    ``drawn_at``. ``key`` identifies this exact proof (hashed): the ledger keeps it with the
    admission, so the same proof shown again is a replay, across restarts and gates."""

    kind: str  # "rotating", "nfc", "totp", "eth", "jws"
    drawn_at: int
    key: str


class Claims(NamedTuple):
    """What a verified ticket says, whatever its format. Checked against the gate by gate.policy.
    (A NamedTuple, not a frozen dataclass: one is built on every scan, four times cheaper.)"""

    format: str
    ticket_key: str
    event: str | None = None
    product: str | None = None
    zones: tuple[str, ...] | None = None
    entries: int | None = None  # None: the ticket does not say; 0: unlimited
    not_before: int | None = None
    expires: int | None = None
    issuer: str | None = None
    kid: str | None = None
    proof: Proof | None = None
    reentry: str | None = None  # the ticket system's own re-entry rule (pretix check-in lists)


@dataclass(frozen=True)
class Denial:
    """A format's refusal: the reason code and a short detail for the operator (no secrets)."""

    reason: Reason
    detail: str = ""


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reason: Reason
    format: str | None = None
    ticket_key: str | None = None
    direction: str = IN
    details: dict[str, Any] = field(default_factory=dict)
    # (entries of the ticket the ledger held, entries it allows; 0 = no limit) when an entry was
    # judged: the admission record keeps them for peers (conflict detection, gate.store.ledger.merge)
    entries: tuple[int, int] | None = field(default=None, compare=False)

    @classmethod
    def deny(
        cls,
        reason: Reason,
        detail: str = "",
        *,
        claims: Claims | None = None,
        format_name: str | None = None,
        direction: str = IN,
        **details: Any,
    ) -> "Decision":
        if detail:
            details = {"detail": detail, **details}
        return cls(
            accepted=False,
            reason=reason,
            format=claims.format if claims else format_name,
            ticket_key=claims.ticket_key if claims else None,
            direction=direction,
            details=details,
        )

    def with_details(self, **extra: Any) -> "Decision":
        """The same decision, with more said about it."""
        return replace(self, details={**self.details, **extra})

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "reason": str(self.reason),
            "format": self.format,
            "ticket_key": self.ticket_key,
            "direction": self.direction,
            "details": self.details,
        }
