"""What a gate's own key signs: its ledger records, one by one (venue ledger v2).

A sealed record is the exact JSON text that was signed and an Ed25519 signature over ``CONTEXT``
and that text, so that what is verified is byte for byte what is then read, and any gate can
pass a record on (catch-up, an emptied gate's recovery) without being able to change it::

    {"v": 2, "venue": "arena", "origin": "lane-1", "epoch": "3f9a…", "seq": 41, "kind": "admission",
     "at": 1795300000.123, "ticket_key": "9f2c…", "format": "gt1", "direction": "in",
     "proof_key": "…", "details": {"known": 0, "limit": 1}}

A revert or passage carries ``"ref": [origin, epoch, seq]``, the admission it settles. Pure
functions: the caller holds the key and the roster.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from typing import Any, Callable

from nacl.signing import SigningKey

from gate.decision import DIRECTIONS
from gate.errors import SignedError
from gate.store.ledger import ADMISSION, KINDS, Record
from gate.strictjson import Fields, nesting
from gate.trust.roster import Roster

PROTOCOL = 2
CONTEXT = b"gate/v2 record\n"
MAX_RECORD = 4096  # bytes of one record's text: details are at most 16 short values
MAX_DEPTH = 4
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
EPOCH = re.compile(r"^[0-9a-z]{1,32}\Z")  # a database's epoch as records and the bus carry it
_HASH = re.compile(r"^[0-9a-f]{64}\Z")
_LATEST = 2**53


def record_text(record: Record, venue: str) -> str:
    """The exact text a record is signed as."""
    out: dict[str, Any] = {"v": PROTOCOL, "venue": venue, "origin": record.origin, "epoch": record.epoch,
                           "seq": record.seq, "kind": record.kind, "at": record.at}
    for name in ("ticket_key", "format", "direction", "proof_key", "details"):
        value = getattr(record, name)
        if value is not None:
            out[name] = value
    if record.ref is not None:
        out["ref"] = list(record.ref)
    return json.dumps(out, separators=(",", ":"), allow_nan=False)


def sealer(key: SigningKey, venue: str) -> Callable[[Record], tuple[str, bytes]]:
    """What ``gate.store.ledger.Ledger`` seals this gate's records with."""

    def seal(record: Record) -> tuple[str, bytes]:
        text = record_text(record, venue)
        return text, key.sign(CONTEXT + text.encode()).signature

    return seal


def open_record(text: str, signature: bytes, roster: Roster, venue: str, sender: str | None) -> Record:
    """A sealed record from ``sender``'s topic (None: passed on by a peer answering a catch-up
    request), taken in only when it is well formed, for this venue, from ``sender`` itself, on
    the roster and not retired (a retired gate's records made before its ``retired_at`` only
    when a peer passes them on), signed by its origin gate's key, and
    (an admission) in a direction that gate may admit in. ``SignedError`` names the refusal:
    ``malformed``, ``wrong_venue``, ``wrong_origin``, ``unknown_gate``, ``retired``,
    ``bad_signature``, ``direction``."""
    record, their_venue = _parse(text)
    if sender is not None and record.origin != sender:
        raise SignedError("wrong_origin", f"a record of {record.origin!r} sent on {sender!r}'s topic")
    entry = roster.entry(record.origin)
    if entry is None:
        raise SignedError("unknown_gate", f"gate {record.origin!r} is not on the venue's roster")
    if not roster.verifies(record.origin, CONTEXT + text.encode(), signature):
        raise SignedError("bad_signature", f"record {record.origin} #{record.seq} is not signed by {record.origin}'s key")
    if their_venue != venue:
        raise SignedError("wrong_venue", f"record {record.origin} #{record.seq} is for another venue")
    if entry.retired and (sender is not None or entry.retired_at is None or record.at > entry.retired_at):
        # Its past, passed on by a peer (a catch-up), stays the venue's past; nothing new.
        raise SignedError("retired", f"gate {record.origin!r} is retired")
    if record.kind == ADMISSION and record.direction not in entry.directions:
        raise SignedError("direction", f"gate {record.origin!r} may not admit {record.direction!r}")
    return replace(record, signed=text, signature=signature)


def _parse(text: str) -> tuple[Record, str]:
    if len(text) > MAX_RECORD:
        raise SignedError("malformed", f"record: longer than {MAX_RECORD} bytes")
    if nesting(text, MAX_DEPTH) > MAX_DEPTH:
        raise SignedError("malformed", "record: nested too deeply")
    try:
        data = json.loads(text)
        item = Fields(data, "record")  # its ValueError becomes SignedError("malformed")
        if item.integer("v") != PROTOCOL:
            raise ValueError(f"record.v: protocol {data.get('v')!r} is not {PROTOCOL}")
        venue = item.text("venue", max_len=64)
        origin = item.text("origin", max_len=64)
        epoch = item.text("epoch", max_len=32)
        seq = item.integer("seq", minval=1)
        kind = item.text("kind", max_len=32)
        at = item.get("at", None)
        ticket_key = item.text("ticket_key", None, max_len=64)
        fmt = item.text("format", None, max_len=32)
        direction = item.text("direction", None, max_len=8)
        proof_key = item.text("proof_key", None, max_len=64)
        ref = item.array("ref", None, max_len=3)
        details = item.get("details", None)
        item.done()
    except (ValueError, RecursionError) as exc:
        raise SignedError("malformed", str(exc) if isinstance(exc, ValueError) else "record: not JSON") from None
    problem = _problem(origin, epoch, seq, kind, at, ticket_key, proof_key, fmt, direction, ref, details)
    if problem:
        raise SignedError("malformed", f"record {origin} #{seq}: {problem}")
    ref_origin, ref_epoch, ref_seq = ref if ref is not None else (None, None, None)
    return Record(origin, seq, kind, float(at), ticket_key, fmt, direction, ref_origin, ref_seq, details or None, proof_key,
                  epoch, ref_epoch), venue


def _problem(origin: str, epoch: str, seq: int, kind: str, at: Any, ticket_key: Any, proof_key: Any, fmt: Any,
             direction: Any, ref: Any, details: Any) -> str:
    if not _NAME.match(origin):
        return "origin is not a gate id"
    if not EPOCH.match(epoch):
        return "epoch must be 1-32 lower-case letters and digits"
    if seq >= _LATEST:
        return "seq out of range"
    if kind not in KINDS:
        return f"kind {kind!r} is not one of {', '.join(KINDS)}"
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not 0 <= at < _LATEST:  # (nan, inf and a
        # 400-digit integer fail the range; math.isfinite would raise OverflowError on that integer)
        return "at must be a unix time"
    for name, value in (("ticket_key", ticket_key), ("proof_key", proof_key)):
        if value is not None and not _HASH.match(value):
            return f"{name} must be 64 lower-case hex digits (a SHA-256)"
    if fmt is not None and not _NAME.match(fmt):
        return "format is not a format name"
    if direction is not None and direction not in DIRECTIONS:
        return f"direction must be one of {', '.join(DIRECTIONS)}"
    if ref is not None and (len(ref) != 3 or not isinstance(ref[0], str) or not _NAME.match(ref[0])
                            or not isinstance(ref[1], str) or not EPOCH.match(ref[1]) or isinstance(ref[2], bool)
                            or not isinstance(ref[2], int) or not 1 <= ref[2] < _LATEST):
        return "ref must be [origin, epoch, seq]"
    if details is not None:
        if not isinstance(details, dict) or len(details) > 16:
            return "details must be an object of at most 16 fields"
        for key, value in details.items():
            if len(key) > 32 or not (value is None or isinstance(value, (bool, int))
                                     or (isinstance(value, float) and math.isfinite(value))
                                     or (isinstance(value, str) and len(value) <= 256)):
                return f"details.{key[:32]} must be a short text, number or boolean"
    return ""
