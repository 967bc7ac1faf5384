"""The venue bus's messages (DESIGN §6), as pure functions: topics, encoding and strict reading.

Every payload is JSON so that ``mosquitto_sub`` shows it. Everything read from the bus is hostile
until parsed here: a message that is not exactly what the spec (``docs/mqtt.md``) says raises
``MessageError`` naming the field, and the caller logs it and goes on. Ticket identities on the
bus are the ledger's ticket keys, which are SHA-256 hashes, never raw ticket secrets.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from gate.decision import DIRECTIONS
from gate.errors import MessageError
from gate.store.ledger import KINDS, Record
from gate.strictjson import Fields, nesting

PROTOCOL = 1
MAX_PAYLOAD = 4 * 1024 * 1024  # a catch-up batch of MAX_BATCH records is well under 1 MB
MAX_BATCH = 500  # records in one ledger message
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # gate ids and venues (config's rule)
_HASH = re.compile(r"^[0-9a-f]{64}\Z")
_LATEST = 2**53  # beyond any seq or unix time a gate will see; JSON-safe integers


class _Fields(Fields):
    error = MessageError


@dataclass(frozen=True)
class Topics:
    """Topic names under ``root`` (``gate/v1/<venue>/``), for gate ``gate``."""

    root: str
    gate: str

    @property
    def ledger(self) -> str:
        return f"{self.root}ledger/{self.gate}"

    @property
    def ledger_all(self) -> str:
        return f"{self.root}ledger/+"

    @property
    def scans(self) -> str:
        return f"{self.root}scans/{self.gate}"

    @property
    def status(self) -> str:
        return f"{self.root}gates/{self.gate}/status"

    @property
    def sync_request(self) -> str:
        return f"{self.root}sync/request/{self.gate}"

    @property
    def sync_request_all(self) -> str:
        return f"{self.root}sync/request/+"

    @property
    def bundle(self) -> str:
        return f"{self.root}bundle"

    @property
    def bundle_delta(self) -> str:
        return f"{self.root}bundle/delta"

    @property
    def command(self) -> str:
        return f"{self.root}gates/{self.gate}/cmd"

    @property
    def command_result(self) -> str:
        return f"{self.root}gates/{self.gate}/cmd/result"

    def sender(self, topic: str, kind: str) -> str | None:
        """The gate a ``ledger/<gate>`` or ``sync/request/<gate>`` topic belongs to (the broker's
        ACL lets only that gate write there, so it is who sent the message)."""
        prefix = f"{self.root}{kind}/"
        if not topic.startswith(prefix):
            return None
        name = topic[len(prefix) :]
        return name if _NAME.match(name) else None


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


MAX_DEPTH = 8  # the deepest message nests 4 levels


def _loads(payload: bytes, what: str) -> Any:
    if len(payload) > MAX_PAYLOAD:
        raise MessageError(f"{what}: {len(payload)} bytes, more than {MAX_PAYLOAD}")
    if nesting(payload, MAX_DEPTH) > MAX_DEPTH:
        raise MessageError(f"{what}: nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MessageError(f"{what}: not JSON ({exc.__class__.__name__})") from None


def _check_version(doc: _Fields) -> None:
    if doc.integer("v") != PROTOCOL:
        raise MessageError(f"{doc.path}.v: protocol {doc.data.get('v')!r} is not {PROTOCOL}")


# --- ledger/<gate>: {"v": 1, "origin": "A", "records": [{...}, ...]} ------------------------


def record_dict(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {"seq": record.seq, "kind": record.kind, "at": record.at}
    for name in ("ticket_key", "format", "direction", "proof_key", "details"):
        value = getattr(record, name)
        if value is not None:
            out[name] = value
    if record.ref is not None:
        out["ref"] = list(record.ref)
    return out


def encode_records(origin: str, records: list[Record]) -> bytes:
    if any(r.origin != origin for r in records):
        raise ValueError("a ledger message carries one origin's records")
    return _dumps({"v": PROTOCOL, "origin": origin, "records": [record_dict(r) for r in records]})


def decode_records(payload: bytes, sender: str) -> list[Record]:
    """A ledger message from ``sender`` (its topic): its records, each checked field by field.
    A record claiming another origin than its sender's is refused: a gate speaks for itself."""
    doc = _Fields(_loads(payload, "ledger message"), "ledger")
    _check_version(doc)
    origin = doc.text("origin", max_len=64)
    if origin != sender:
        raise MessageError(f"ledger.origin: {origin!r} sent on {sender!r}'s topic")
    items = doc.objects("records")
    doc.done()
    if not 1 <= len(items) <= MAX_BATCH:
        raise MessageError(f"ledger.records: 1-{MAX_BATCH} records, got {len(items)}")
    return [_read_record(origin, item) for item in items]


def _read_record(origin: str, item: _Fields) -> Record:
    seq = item.integer("seq", minval=1)
    kind = item.text("kind", max_len=32)
    at = item.get("at", None)
    ticket_key = item.text("ticket_key", None, max_len=64)
    fmt = item.text("format", None, max_len=32)
    direction = item.text("direction", None, max_len=8)
    proof_key = item.text("proof_key", None, max_len=64)
    ref = item.array("ref", None, max_len=2)
    details = item.get("details", None)
    item.done()
    where = item.path
    if seq >= _LATEST:
        raise MessageError(f"{where}.seq: out of range")
    if kind not in KINDS:
        raise MessageError(f"{where}.kind: {kind!r} is not one of {', '.join(KINDS)}")
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at) or not 0 <= at < _LATEST:
        raise MessageError(f"{where}.at: must be a unix time")
    for name, value in (("ticket_key", ticket_key), ("proof_key", proof_key)):
        if value is not None and not _HASH.match(value):
            raise MessageError(f"{where}.{name}: must be 64 lower-case hex digits (a SHA-256)")
    if fmt is not None and not _NAME.match(fmt):
        raise MessageError(f"{where}.format: not a format name")
    if direction is not None and direction not in DIRECTIONS:
        raise MessageError(f"{where}.direction: must be one of {', '.join(DIRECTIONS)}")
    ref_origin = ref_seq = None
    if ref is not None:
        if len(ref) != 2 or not isinstance(ref[0], str) or not _NAME.match(ref[0]) or isinstance(ref[1], bool) \
                or not isinstance(ref[1], int) or not 1 <= ref[1] < _LATEST:
            raise MessageError(f"{where}.ref: must be [origin, seq]")
        ref_origin, ref_seq = ref
    if details is not None:
        _check_details(details, f"{where}.details")
    return Record(origin, seq, kind, float(at), ticket_key, fmt, direction, ref_origin, ref_seq, details or None, proof_key)


def _check_details(details: Any, where: str) -> None:
    """Details are a small flat object of scalars (why, proof kind, known, limit, ...)."""
    if not isinstance(details, dict) or len(details) > 16:
        raise MessageError(f"{where}: must be an object of at most 16 fields")
    for key, value in details.items():
        if len(key) > 32 or not (
            value is None
            or isinstance(value, (bool, int))
            or (isinstance(value, float) and math.isfinite(value))
            or (isinstance(value, str) and len(value) <= 256)
        ):
            raise MessageError(f"{where}.{key[:32]}: must be a short text, number or boolean")


# --- sync/request/<gate>: {"v": 1, "marks": {"A": 12, "B": 40}} -----------------------------


def encode_request(marks: dict[str, int]) -> bytes:
    return _dumps({"v": PROTOCOL, "marks": marks})


def decode_request(payload: bytes) -> dict[str, int]:
    """A catch-up request: for each origin, the seq up to which the asker holds every record."""
    doc = _Fields(_loads(payload, "sync request"), "request")
    _check_version(doc)
    marks = doc.get("marks", None)
    doc.done()
    if not isinstance(marks, dict) or len(marks) > 10_000:
        raise MessageError("request.marks: must be an object of origin → seq")
    for origin, seq in marks.items():
        if not _NAME.match(origin) or isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < _LATEST:
            raise MessageError(f"request.marks.{origin[:64]}: must be a gate name → seq ≥ 0")
    return marks


# --- gates/<gate>/status (retained) and scans/<gate> -----------------------------------------


def encode_status(gate: str, state: str, **fields: Any) -> bytes:
    return _dumps({"v": PROTOCOL, "gate": gate, "state": state, **fields})


def encode_scan(gate: str, decision: dict[str, Any]) -> bytes:
    """A decision for dashboards. Details are left out: they may name a ticket's holder data."""
    keep = ("accepted", "reason", "format", "ticket_key", "direction", "source", "latency_ms")
    return _dumps({"v": PROTOCOL, "gate": gate, **{k: decision[k] for k in keep if k in decision}})


# --- gates/<gate>/cmd/result: what became of a signed command --------------------------------


def encode_command_result(gate: str, nonce: str | None, ok: bool, text: str, kind: str = "", **fields: Any) -> bytes:
    """``ok`` with what was done, or the refusal's ``kind`` (``stale``, ``replayed``...) and why."""
    result: dict[str, Any] = {"v": PROTOCOL, "gate": gate, "nonce": nonce, "ok": ok, **fields}
    result["result" if ok else "error"] = text
    if kind:
        result["kind"] = kind
    return _dumps(result)
