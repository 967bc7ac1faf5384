"""The venue bus's messages (DESIGN §6), as pure functions: topics, encoding and strict reading.

Every payload is JSON so that ``mosquitto_sub`` shows it. Everything read from the bus is hostile
until parsed here: a message that is not exactly what the spec (``docs/mqtt.md``) says raises
``MessageError`` naming the field, and the caller logs it and goes on. Ticket identities on the
bus are the ledger's ticket keys, which are SHA-256 hashes, never raw ticket secrets.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from gate.errors import MessageError
from gate.strictjson import Fields, nesting
from gate.trust.records import EPOCH

PROTOCOL = 2
MAX_RECORD_TEXT = 4096  # gate.trust.records.MAX_RECORD
MAX_PAYLOAD = 4 * 1024 * 1024  # a catch-up batch of MAX_BATCH sealed records is about 300 kB
MAX_BATCH = 500  # records in one ledger message
MAX_STREAMS = 100_000  # (origin, epoch) pairs in one request or reply
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # gate ids and venues (config's rule)
_LATEST = 2**53  # beyond any seq or unix time a gate will see; JSON-safe integers


class _Fields(Fields):
    error = MessageError


@dataclass(frozen=True)
class Topics:
    """Topic names under ``root`` (``gate/v2/<venue>/``), for gate ``gate``."""

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

    def sync_reply(self, asker: str) -> str:
        """Where this gate answers ``asker``'s request: the broker's ACL lets only the asker read
        there, and only this gate write (the last level names the responder)."""
        return f"{self.root}sync/reply/{asker}/{self.gate}"

    @property
    def sync_replies(self) -> str:
        """Every answer to this gate's requests (a subscription)."""
        return f"{self.root}sync/reply/{self.gate}/+"

    def responder(self, topic: str) -> str | None:
        """Who answered this gate: the last level of ``sync/reply/<this gate>/<responder>``."""
        return self.sender(topic, f"sync/reply/{self.gate}")

    @property
    def status_all(self) -> str:
        return f"{self.root}gates/+/status"

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

    def status_of(self, topic: str) -> str | None:
        """The gate a ``gates/<gate>/status`` topic belongs to."""
        prefix = f"{self.root}gates/"
        if not topic.startswith(prefix) or not topic.endswith("/status"):
            return None
        name = topic[len(prefix) : -len("/status")]
        return name if _NAME.match(name) else None

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


# --- ledger/<gate>: {"v": 2, "origin": "A", "records": [{"signed": "<record text>", "sig": "<b64>"}]} --


def encode_records(origin: str, sealed: list[tuple[str, bytes]]) -> bytes:
    """A batch of ``origin``'s sealed records (``gate.trust.records``: the signed text, the signature)."""
    return _dumps({"v": PROTOCOL, "origin": origin,
                   "records": [{"signed": text, "sig": base64.b64encode(sig).decode()} for text, sig in sealed]})


def decode_records(payload: bytes, sender: str) -> list[tuple[str, bytes]]:
    """A ledger message from ``sender`` (its topic): its sealed records, not yet verified (the
    caller opens each against the roster, ``gate.trust.records.open_record``). A message claiming
    another origin than its sender's is refused: a gate's topic carries its records."""
    doc = _Fields(_loads(payload, "ledger message"), "ledger")
    _check_version(doc)
    origin = doc.text("origin", max_len=64)
    if origin != sender:
        raise MessageError(f"ledger.origin: {origin!r} sent on {sender!r}'s topic")
    items = doc.objects("records")
    doc.done()
    if not 1 <= len(items) <= MAX_BATCH:
        raise MessageError(f"ledger.records: 1-{MAX_BATCH} records, got {len(items)}")
    return [_sealed(item) for item in items]


def _sealed(item: _Fields) -> tuple[str, bytes]:
    text = item.text("signed", max_len=MAX_RECORD_TEXT)
    try:
        signature = base64.b64decode(item.text("sig", max_len=100), validate=True)
    except (binascii.Error, ValueError):  # non-ASCII text is a plain ValueError (found by scripts/fuzz)
        raise MessageError(f"{item.path}.sig: not base64") from None
    item.done()
    return text, signature


# --- sync/request/<gate>: {"v": 2, "to": "B", "all": false, "marks": [["A", "3f9a…", 12], ...]} ----


@dataclass(frozen=True)
class Request:
    """A catch-up request. ``to``: the one gate asked to answer (the others ignore it, so a
    request costs the venue one answer). ``marks``: for each (origin, epoch), the seq up to which
    the asker holds every record. ``all``: also every stream the asker does not list (a gate
    that lost its database asks for everything, its own origin's past included)."""

    to: str
    marks: dict[tuple[str, str], int]
    all: bool = False


def encode_request(request: Request) -> bytes:
    return _dumps({"v": PROTOCOL, "to": request.to, "all": request.all,
                   "marks": [[origin, epoch, seq] for (origin, epoch), seq in sorted(request.marks.items())]})


def decode_request(payload: bytes) -> Request:
    doc = _Fields(_loads(payload, "sync request"), "request")
    _check_version(doc)
    to = doc.text("to", max_len=64)
    everything = doc.boolean("all", False)
    marks = doc.array("marks", max_len=MAX_STREAMS)
    doc.done()
    if not _NAME.match(to):
        raise MessageError("request.to: not a gate id")
    return Request(to, _marks(marks, "request.marks"), everything)


def _marks(marks: list[Any], where: str) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for i, mark in enumerate(marks):
        if (not isinstance(mark, list) or len(mark) != 3 or not isinstance(mark[0], str) or not _NAME.match(mark[0])
                or not isinstance(mark[1], str) or not EPOCH.match(mark[1]) or isinstance(mark[2], bool)
                or not isinstance(mark[2], int) or not 0 <= mark[2] < _LATEST):
            raise MessageError(f"{where}[{i}]: must be [gate, epoch, seq ≥ 0]")
        out[(mark[0], mark[1])] = mark[2]
    return out


# --- sync/reply/<asker>/<responder>: {"v": 2, "from": "B", "records": [...], "done": false} --------------------
# Records of any origin (each verified against its own origin's key); the last message of an
# answer has "done": true and "holds": what the responder held when it answered.


def encode_reply(responder: str, sealed: list[tuple[str, bytes]], holds: dict[tuple[str, str], int] | None = None,
                 recovering: bool = False) -> bytes:
    message: dict[str, Any] = {"v": PROTOCOL, "from": responder,
                               "records": [{"signed": text, "sig": base64.b64encode(sig).decode()} for text, sig in sealed],
                               "done": holds is not None}
    if holds is not None:
        message["holds"] = [[origin, epoch, seq] for (origin, epoch), seq in sorted(holds.items())]
        message["recovering"] = recovering  # the responder's own database is new too
    return _dumps(message)


@dataclass(frozen=True)
class Reply:
    responder: str
    sealed: list[tuple[str, bytes]]
    holds: dict[tuple[str, str], int] | None  # with the last message of an answer
    recovering: bool = False


def decode_reply(payload: bytes) -> Reply:
    doc = _Fields(_loads(payload, "sync reply"), "reply")
    _check_version(doc)
    responder = doc.text("from", max_len=64)
    items = doc.objects("records")
    done = doc.boolean("done", False)
    holds = doc.array("holds", None, max_len=MAX_STREAMS)
    recovering = doc.boolean("recovering", False)
    doc.done()
    if not _NAME.match(responder):
        raise MessageError("reply.from: not a gate id")
    if len(items) > MAX_BATCH:
        raise MessageError(f"reply.records: at most {MAX_BATCH} records, got {len(items)}")
    if done != (holds is not None):
        raise MessageError("reply: holds comes with done, and only with it")
    return Reply(responder, [_sealed(item) for item in items], _marks(holds, "reply.holds") if holds is not None else None,
                 recovering)


# --- gates/<gate>/status (retained) and scans/<gate> -----------------------------------------


def decode_status_state(payload: bytes) -> str:
    """``online`` or ``offline``: all a gate reads of a peer's status (whom to ask for records)."""
    doc = _loads(payload, "status")
    state = doc.get("state") if isinstance(doc, dict) else None
    if state not in ("online", "offline"):
        raise MessageError("status.state: must be online or offline")
    return str(state)


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
