"""Rotating TOTP barcodes, the Ticketmaster SafeTix pattern (DESIGN §4).

The phone shows ``t::TOTP(ek)::TOTP(ck)::unix_seconds`` (or the older ``t::TOTP(ck)``), where
``t`` is the ticket's token (it may itself contain ``::``, so the text is parsed from the
right), ``ek`` the event's key and ``ck`` the ticket's key. TOTP is RFC 6238: HMAC-SHA1,
6 digits, 15 s steps, the key being the hex-decoded bytes. Some clients right-pad the 8-byte
counter with zeros to the key's length before the HMAC; both variants are accepted.

A code is accepted from 2 steps behind to 1 step ahead of the gate's clock. With the
timestamp form, both codes must be the ones for the timestamp shown (a screenshot keeps its
old timestamp and is then stale). Codes are compared in constant time.

The short form ``t::code`` carries one 6-digit code: about 8 of the 10^6 possible codes are
accepted at any moment, so it can be guessed. It is read only for events whose document says
``"short_form": true``, and the lane limits wrong codes per ticket (``gate.lane.guesses``).

Trust document (one per event)::

    {"format": "totp", "event": "arena-2026-11-22", "event_key": "<hex>", "short_form": false,
     "tickets": [{"token": "<t>", "key": "<hex>", "product": "floor", "entries": 1}]}
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from gate.decision import Claims, Denial, Proof, Reason, ticket_key
from gate.formats import Env, TicketFormat, TrustError, TrustFormat
from gate.formats.trustdoc import Fields, add_unique

NAME = "totp"
STEP = 15
DIGITS = 6
BEHIND, AHEAD = 2, 1  # accepted steps around the gate's own counter
STALE_SEARCH = 40  # steps (10 min) searched to tell a stale screenshot from a wrong code
MAX_TEXT = 1024
_CODE = re.compile(r"[0-9]{6}")
_TIMESTAMP = re.compile(r"[0-9]{9,11}")


def totp(key: bytes, counter: int, padded: bool = False) -> str:
    message = struct.pack(">Q", counter)
    if padded:
        message = message.ljust(len(key), b"\0")
    digest = hmac.new(key, message, hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**DIGITS:0{DIGITS}d}"


def code_matches(key: bytes, counter: int, code: str) -> bool:
    """Either counter variant; both are always computed, and compared in constant time."""
    plain = hmac.compare_digest(totp(key, counter).encode(), code.encode())
    padded = hmac.compare_digest(totp(key, counter, padded=True).encode(), code.encode())
    return plain | padded


# --- trust ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketEntry:
    token: str
    key: bytes
    event: str
    product: str | None = None
    entries: int | None = None


@dataclass
class TotpTrust:
    event_keys: dict[str, bytes] = field(default_factory=dict)
    tickets: dict[str, TicketEntry] = field(default_factory=dict)
    short_form: set[str] = field(default_factory=set)  # events whose tickets may show t::code

    def describe(self) -> str:
        return f"{len(self.event_keys)} events, {len(self.tickets)} tickets"


def parse_trust(document: dict[str, Any], where: str) -> TotpTrust:
    doc = Fields(document, where)
    event = doc.text("event")
    trust = TotpTrust()
    event_key = doc.hex_bytes("event_key", None)
    if event_key is not None:
        if not 8 <= len(event_key) <= 64:
            raise TrustError(f"{where}.event_key: must be 8-64 bytes")
        trust.event_keys[event] = event_key
    if doc.boolean("short_form", False):
        trust.short_form.add(event)
    for item in doc.objects("tickets", []):
        entry = TicketEntry(
            token=item.text("token", max_len=MAX_TEXT),
            key=item.hex_bytes("key"),
            event=event,
            product=item.text("product", None),
            entries=item.integer("entries", None, minval=0),
        )
        item.done()
        if not 8 <= len(entry.key) <= 64:
            raise TrustError(f"{item.path}.key: must be 8-64 bytes")
        if entry.token in trust.tickets:
            raise TrustError(f"{item.path}.token: listed twice")
        trust.tickets[entry.token] = entry
    doc.done()
    return trust


def merge_trust(parts: list[TotpTrust]) -> TotpTrust:
    merged = TotpTrust()
    for part in parts:
        add_unique(merged.event_keys, part.event_keys, lambda event: f"totp: event {event!r} has two event keys")
        add_unique(merged.tickets, part.tickets, lambda _token: "totp: a ticket token is listed in two documents")
        merged.short_form |= part.short_form
    return merged


TRUST = TrustFormat(NAME, parse_trust, merge_trust)


# --- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Barcode:
    token: str
    event_code: str | None
    ticket_code: str
    timestamp: int | None


def parse(text: str) -> Barcode | None:
    """Both string forms, from the right; ``None`` if the text is neither."""
    if len(text) > MAX_TEXT:
        return None
    parts = text.rsplit("::", 3)
    if len(parts) == 4 and _CODE.fullmatch(parts[1]) and _CODE.fullmatch(parts[2]) and _TIMESTAMP.fullmatch(parts[3]) and parts[0]:
        return Barcode(parts[0], parts[1], parts[2], int(parts[3]))
    token, _, code = text.rpartition("::")
    if token and _CODE.fullmatch(code):
        return Barcode(token, None, code, None)
    return None


def recognises(text: str) -> bool:
    return "::" in text and parse(text) is not None


def read(text: str, env: Env) -> Claims | Denial:
    barcode = parse(text.strip())
    if barcode is None:
        return Denial(Reason.UNREADABLE, "totp: not t::code or t::code::code::time")
    trust: TotpTrust = env.trust.get(NAME) or TotpTrust()
    entry = trust.tickets.get(barcode.token)
    if entry is None:
        return Denial(Reason.UNKNOWN_KEY, "totp: no key held for this ticket token")
    now_step = int(env.now) // STEP
    if barcode.timestamp is not None:
        event_key = trust.event_keys.get(entry.event)
        if event_key is None:
            return Denial(Reason.UNKNOWN_KEY, f"totp: no event key held for {entry.event}")
        step = barcode.timestamp // STEP
        assert barcode.event_code is not None
        authentic = code_matches(event_key, step, barcode.event_code) & code_matches(entry.key, step, barcode.ticket_code)
        if not authentic:
            return Denial(Reason.BAD_SIGNATURE, "totp: codes do not match the keys at the time shown")
        if not now_step - BEHIND <= step <= now_step + AHEAD:
            return Denial(Reason.STALE_PROOF, f"totp: code drawn {int(env.now) - barcode.timestamp} s from now")
    elif entry.event not in trust.short_form:
        return Denial(Reason.UNREADABLE, f"totp: the short form t::code is off for {entry.event} (its document's short_form)")
    else:
        step = next((s for s in range(now_step - BEHIND, now_step + AHEAD + 1) if code_matches(entry.key, s, barcode.ticket_code)), None)
        if step is None:
            old = any(code_matches(entry.key, s, barcode.ticket_code) for s in range(now_step - STALE_SEARCH, now_step - BEHIND))
            if old:
                return Denial(Reason.STALE_PROOF, "totp: code from an earlier time window")
            return Denial(Reason.BAD_SIGNATURE, "totp: code does not match the ticket key")
    return Claims(
        format=NAME,
        ticket_key=ticket_key(NAME, barcode.token),
        event=entry.event,
        product=entry.product,
        entries=entry.entries,
        proof=Proof(NAME, step * STEP, ticket_key(f"{NAME}-proof", f"{barcode.token}\0{step}\0{barcode.ticket_code}")),
    )


def ticket_key_of(text: str) -> str | None:
    barcode = parse(text.strip())
    return ticket_key(NAME, barcode.token) if barcode else None


FORMAT = TicketFormat(NAME, recognises, read, ticket_key_of, key_of_id=lambda token: ticket_key(NAME, token))
