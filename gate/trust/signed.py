"""What the venue's admin key signs (DESIGN §5): trust bundles, revocation deltas, commands.

Pure functions, no I/O. A signed message is a small JSON envelope around the exact text that
was signed, so that what is verified is byte for byte what is then read (no canonical JSON)::

    {"v": 1, "key": "<admin key id>", "signature": "<base64 Ed25519>", "signed": "<payload JSON text>"}

The signature covers ``CONTEXT`` followed by the SHA-512 of the UTF-8 payload text (hash, then
sign: a 20 MB bundle is hashed as it is, not copied into the signature library's buffers). The payload's ``type``
(``bundle``, ``delta``, ``command``) and ``venue`` are checked by the reader, so a message
signed for one purpose or venue is refused for any other. The key id is the first 8 bytes of
SHA-256 of the public key in hex: it lets a refusal say "signed by another admin key" rather
than "forged". The format is documented in docs/bundles.md.

Revocations travel as the first 16 bytes of each revoked ticket key (a SHA-256), sorted and
concatenated, in base64: a million revocations are 21 MB instead of 66 MB of hex strings, and
parse with one ``b64decode`` rather than a million string objects. 128 bits keep accidental
collisions out of reach (about 2^-88 for a million revocations against a billion tickets).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from gate.decision import MODES, PREFIX_BYTES
from gate.errors import SignedError
from gate.store.trust_store import RosterRow
from gate.strictjson import Fields, nesting

PROTOCOL = 1
CONTEXT = b"gate/v1 admin-signed\n"
MAX_SIGNED = 64 * 1024 * 1024  # a bundle of 1,000,000 revocations is about 22 MB
MAX_DEPTH = 16  # envelope (1) + payload (2) + the deepest trust document (pretix, 4) with room
COMMANDS = ("set_mode", "open_once", "reload", "end_recovery")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_NONCE = re.compile(r"^[0-9a-f]{16,64}\Z")
_LATEST = 2**53


class _Fields(Fields):
    error = ValueError  # turned into SignedError("malformed", ...) by the readers


@dataclass(frozen=True)
class Bundle:
    """Everything a gate trusts besides its config, replacing the previous bundle whole."""

    venue: str
    version: int
    issued_at: float
    documents: tuple[dict[str, Any], ...]  # trust documents (docs/trust-documents.md)
    revoked: bytes  # PREFIX_BYTES each
    sha256: str = field(default="", compare=False)  # of the whole signed message
    roster: tuple[RosterRow, ...] = ()  # the venue's gates: whose ledger records are taken in
    zones: dict[str, int] = field(default_factory=dict)  # zone → capacity (people inside at most)

    @property
    def revoked_count(self) -> int:
        return len(self.revoked) // PREFIX_BYTES


@dataclass(frozen=True)
class Delta:
    """Revocation changes since bundle ``base``. Cumulative: delta 5 holds all of 1-4's changes,
    so a gate that missed some deltas needs only the newest (it is retained on the broker)."""

    venue: str
    base: int
    version: int
    issued_at: float
    revoked: bytes
    restored: bytes  # revoked in the base bundle, valid again
    sha256: str = field(default="", compare=False)


@dataclass(frozen=True)
class Command:
    venue: str
    gate: str
    action: str
    issued_at: float
    nonce: str
    mode: str | None = None  # set_mode
    direction: str = "in"  # open_once


# --- keys ----------------------------------------------------------------------------------


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).digest()[:8].hex()


def new_nonce() -> str:
    return secrets.token_hex(16)


def pack_prefixes(prefixes: set[bytes] | list[bytes]) -> bytes:
    return b"".join(sorted(set(prefixes)))


# --- writing (gate bundle make / sign, gate command) --------------------------------------


def bundle_payload(venue: str, version: int, issued_at: float, documents: list[dict[str, Any]], revoked: bytes,
                   roster: list[dict[str, Any]] | None = None, zones: dict[str, int] | None = None) -> dict[str, Any]:
    """``roster``: the venue's gates as ``roster_entry`` gives them; ``zones``: each zone's
    capacity (a zone some gate of the roster is in)."""
    payload = {
        "v": PROTOCOL,
        "type": "bundle",
        "venue": venue,
        "version": version,
        "issued_at": issued_at,
        "documents": documents,
        "revoked": _prefix_field(revoked),
    }
    if roster:
        payload["roster"] = roster
    if zones:
        payload["zones"] = [{"zone": name, "capacity": capacity} for name, capacity in sorted(zones.items())]
    return payload


def roster_entry(gate: str, public_key: bytes, *, zone: str | None = None, directions: tuple[str, ...] = ("in", "out"),
                 retired: bool = False, retired_at: float | None = None) -> dict[str, Any]:
    """One gate of the roster as a bundle carries it (a retired gate's records made before
    ``retired_at`` stay the venue's past)."""
    entry: dict[str, Any] = {"gate": gate, "public_key": base64.b64encode(public_key).decode(), "directions": list(directions)}
    if zone is not None:
        entry["zone"] = zone
    if retired:
        entry["retired"] = True
        if retired_at is not None:
            entry["retired_at"] = retired_at
    return entry


def delta_payload(venue: str, base: int, version: int, issued_at: float, revoked: bytes, restored: bytes) -> dict[str, Any]:
    return {
        "v": PROTOCOL,
        "type": "delta",
        "venue": venue,
        "base": base,
        "version": version,
        "issued_at": issued_at,
        "revoked": _prefix_field(revoked),
        "restored": _prefix_field(restored),
    }


def command_payload(command: Command) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "v": PROTOCOL,
        "type": "command",
        "venue": command.venue,
        "gate": command.gate,
        "command": command.action,
        "issued_at": command.issued_at,
        "nonce": command.nonce,
    }
    if command.action == "set_mode":
        payload["mode"] = command.mode
    if command.action == "open_once":
        payload["direction"] = command.direction
    return payload


def _prefix_field(prefixes: bytes) -> dict[str, Any]:
    return {"count": len(prefixes) // PREFIX_BYTES, "prefixes": base64.b64encode(prefixes).decode()}


def sign(payload: dict[str, Any] | str, key: SigningKey) -> bytes:
    """The signed envelope for a payload (a dict, or the exact JSON text to sign)."""
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"), allow_nan=False)
    signature = key.sign(_signed_bytes(text)).signature
    envelope = {
        "v": PROTOCOL,
        "key": key_id(bytes(key.verify_key)),
        "signature": base64.b64encode(signature).decode(),
        "signed": text,
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def _signed_bytes(text: str) -> bytes:
    return CONTEXT + hashlib.sha512(text.encode()).digest()


# --- reading ---------------------------------------------------------------------------------


def _loads(data: bytes | str, what: str) -> Any:
    if len(data) > MAX_SIGNED:
        raise SignedError("malformed", f"{what}: {len(data)} bytes, more than {MAX_SIGNED // 2**20} MiB")
    if nesting(data, MAX_DEPTH) > MAX_DEPTH:
        raise SignedError("malformed", f"{what}: nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SignedError("malformed", f"{what}: not JSON ({exc.__class__.__name__})") from None


def _flat_object(data: bytes) -> dict[str, Any] | None:
    """A JSON object whose values are all scalars (the envelope), or None for anything else.

    Read without recursion and without a pass over the 20 MB ``signed`` string to count
    brackets: that pass holds the interpreter lock for a quarter of a second, which the
    decision loop would feel while a bundle arrives. Duplicate keys are refused.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    decoder, end = json.JSONDecoder(), len(text)

    def skip(i: int) -> int:
        while i < end and text[i] in " \t\r\n":
            i += 1
        return i

    i = skip(0)
    if not text.startswith("{", i):
        return None
    result: dict[str, Any] = {}
    i = skip(i + 1)
    if text.startswith("}", i):
        return result if skip(i + 1) == end else None
    try:
        while True:
            if not text.startswith('"', i):
                return None
            key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
            i = skip(i)
            if not text.startswith(":", i):
                return None
            i = skip(i + 1)
            if text.startswith('"', i):
                value, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
            elif i < end and text[i] not in "[{":
                value, i = decoder.raw_decode(text, i)
            else:
                return None
            if key in result:
                return None
            result[key] = value
            i = skip(i)
            if text.startswith(",", i):
                i = skip(i + 1)
            elif text.startswith("}", i):
                return result if skip(i + 1) == end else None
            else:
                return None
    except (ValueError, IndexError):
        return None


def open_envelope(data: bytes, admin_key: bytes | None) -> dict[str, Any]:
    """Verify a signed message against the pinned admin key; its payload as a JSON object."""
    if admin_key is None:
        raise SignedError("no_admin_key", "no admin key pinned in this gate's config ([trust] admin_key)")
    if len(data) > MAX_SIGNED:
        raise SignedError("malformed", f"signed message: {len(data)} bytes, more than {MAX_SIGNED // 2**20} MiB")
    envelope: Any = _flat_object(data)
    if envelope is None:  # not an envelope: say what it is (slower, but this is no bundle to apply)
        envelope = _loads(data, "signed message")
    if isinstance(envelope, dict) and "type" in envelope and "signed" not in envelope:
        raise SignedError("unsigned", f"unsigned {str(envelope.get('type'))[:16]}: sign it with the admin key (gate bundle sign)")
    if not isinstance(envelope, dict) or "signed" not in envelope:
        raise SignedError("malformed", "not a signed message (no \"signed\" field)")
    if not envelope.get("signature"):
        raise SignedError("unsigned", "the message carries no signature")
    try:
        doc = _Fields(envelope, "envelope")
        if doc.integer("v") != PROTOCOL:
            raise ValueError(f"envelope.v: protocol {envelope.get('v')!r} is not {PROTOCOL}")
        signer = doc.text("key", max_len=16)
        signature = base64.b64decode(doc.text("signature", max_len=100), validate=True)
        text = doc.text("signed", max_len=MAX_SIGNED)
        doc.done()
    except (ValueError, binascii.Error) as exc:
        raise SignedError("malformed", str(exc)) from None
    expected = key_id(admin_key)
    if signer != expected:
        raise SignedError("wrong_key", f"signed by admin key {signer}, this gate trusts {expected}")
    try:
        VerifyKey(admin_key).verify(_signed_bytes(text), signature)
    except (BadSignatureError, ValueError):
        raise SignedError("bad_signature", "signature does not verify: forged or altered") from None
    try:  # signed by the admin key: no bracket count first (see _flat_object); json's own depth limit holds
        payload = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise SignedError("malformed", f"signed payload: not JSON ({exc.__class__.__name__})") from None
    if not isinstance(payload, dict):
        raise SignedError("malformed", "signed payload: must be a JSON object")
    return payload


def read(data: bytes, admin_key: bytes | None, venue: str) -> Bundle | Delta | Command:
    """A verified bundle, delta or command for ``venue``; ``SignedError`` otherwise."""
    payload = open_envelope(data, admin_key)
    sha = hashlib.sha256(data).hexdigest()
    try:
        doc = _Fields(payload, "payload")
        if doc.integer("v") != PROTOCOL:
            raise ValueError(f"payload.v: protocol {payload.get('v')!r} is not {PROTOCOL}")
        kind = doc.text("type", max_len=16)
        their_venue = doc.text("venue", max_len=64)
        issued_at = _unix_time(doc, "issued_at")
        if kind == "bundle":
            message: Bundle | Delta | Command = Bundle(
                their_venue,
                doc.integer("version", minval=1),
                issued_at,
                tuple(_documents(doc)),
                _prefixes(doc, "revoked"),
                sha,
                roster := _roster(doc),
                _zones(doc, roster),
            )
        elif kind == "delta":
            message = Delta(
                their_venue,
                doc.integer("base", minval=1),
                doc.integer("version", minval=1),
                issued_at,
                _prefixes(doc, "revoked"),
                _prefixes(doc, "restored"),
                sha,
            )
        elif kind == "command":
            message = _command(doc, their_venue, issued_at)
        else:
            raise SignedError("wrong_type", f"payload.type: {kind!r} is not bundle, delta or command")
        doc.done()
    except ValueError as exc:
        if isinstance(exc, SignedError):
            raise
        raise SignedError("malformed", str(exc)) from None
    if their_venue != venue:
        raise SignedError("wrong_venue", f"signed for venue {their_venue!r}, this gate is in {venue!r}")
    for name in ("version", "base"):
        if getattr(message, name, 0) >= _LATEST:
            raise SignedError("malformed", f"payload.{name}: out of range")
    return message


def _unix_time(doc: _Fields, key: str) -> float:
    value = doc.get(key, None)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value < _LATEST:
        raise ValueError(f"{doc.path}.{key}: must be a unix time")
    return float(value)


def _documents(doc: _Fields) -> list[dict[str, Any]]:
    documents = doc.array("documents", [], max_len=10_000)
    for i, item in enumerate(documents):
        if not isinstance(item, dict):
            raise ValueError(f"payload.documents[{i}]: must be a trust document (an object)")
    return documents


MAX_ROSTER = 10_000  # gates in one venue


def _roster(doc: _Fields) -> tuple[RosterRow, ...]:
    rows, seen = [], set()
    for entry in doc.objects("roster", []):
        if len(rows) >= MAX_ROSTER:
            raise ValueError(f"payload.roster: more than {MAX_ROSTER} gates")
        gate = entry.text("gate", max_len=64)
        if not _NAME.match(gate):
            raise ValueError(f"{entry.path}.gate: not a gate id")
        if gate in seen:
            raise ValueError(f"{entry.path}.gate: {gate!r} named twice")
        seen.add(gate)
        try:
            public_key = base64.b64decode(entry.text("public_key", max_len=64), validate=True)
        except binascii.Error:
            raise ValueError(f"{entry.path}.public_key: not base64") from None
        if len(public_key) != 32:
            raise ValueError(f"{entry.path}.public_key: an Ed25519 public key is 32 bytes")
        zone = entry.text("zone", None, max_len=64)
        directions = tuple(entry.texts("directions", ["in", "out"], max_len=8))
        if not directions or any(d not in ("in", "out") for d in directions) or len(set(directions)) != len(directions):
            raise ValueError(f"{entry.path}.directions: in and/or out")
        retired = entry.boolean("retired", False)
        retired_at = _unix_time(entry, "retired_at") if retired and entry.get("retired_at", None) is not None else None
        entry.done()
        rows.append(RosterRow(gate, public_key, zone, directions, retired, retired_at))
    return tuple(rows)


MAX_CAPACITY = 10_000_000  # people in one zone


def _zones(doc: _Fields, roster: tuple[RosterRow, ...]) -> dict[str, int]:
    """Each zone's capacity: a zone named once, that some gate of the roster is in (a capacity
    for a zone no gate admits to is a typo the admin must hear about, not a silent no-op)."""
    zones: dict[str, int] = {}
    gate_zones = {row.zone for row in roster if row.zone}
    for entry in doc.objects("zones", []):
        if len(zones) >= MAX_ROSTER:
            raise ValueError(f"payload.zones: more than {MAX_ROSTER} zones")
        zone = entry.text("zone", max_len=64)
        if zone in zones:
            raise ValueError(f"{entry.path}.zone: {zone!r} named twice")
        if zone not in gate_zones:
            raise ValueError(f"{entry.path}.zone: {zone!r} is no gate's zone on the roster")
        capacity = entry.integer("capacity", minval=1)
        if capacity > MAX_CAPACITY:
            raise ValueError(f"{entry.path}.capacity: more than {MAX_CAPACITY}")
        zones[zone] = capacity
        entry.done()
    return zones


def _prefixes(doc: _Fields, key: str) -> bytes:
    part = doc.obj(key, None)
    if part is None:
        return b""
    count = part.integer("count", minval=0)
    text = part.text("prefixes", "", max_len=MAX_SIGNED)
    part.done()
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)  # no copy of the text, no regex
    except (binascii.Error, ValueError):
        raise ValueError(f"{part.path}.prefixes: not base64") from None
    if len(raw) != count * PREFIX_BYTES:
        raise ValueError(f"{part.path}: {len(raw)} bytes of prefixes for a count of {count} (each is {PREFIX_BYTES} bytes)")
    return raw


def _command(doc: _Fields, venue: str, issued_at: float) -> Command:
    gate = doc.text("gate", max_len=64)
    action = doc.text("command", max_len=32)
    nonce = doc.text("nonce", max_len=64)
    if not _NAME.match(gate):
        raise ValueError("payload.gate: not a gate id")
    if action not in COMMANDS:
        raise ValueError(f"payload.command: {action!r} is not one of {', '.join(COMMANDS)}")
    if not _NONCE.match(nonce):
        raise ValueError("payload.nonce: must be 16-64 lower-case hex digits")
    mode = doc.text("mode", max_len=16) if action == "set_mode" else None
    if action == "set_mode" and mode not in MODES:
        raise ValueError(f"payload.mode: {mode!r} is not one of {', '.join(MODES)}")
    direction = doc.text("direction", "in", max_len=8) if action == "open_once" else "in"
    if direction not in ("in", "out"):
        raise ValueError("payload.direction: must be in or out")
    return Command(venue, gate, action, issued_at, nonce, mode, direction)
