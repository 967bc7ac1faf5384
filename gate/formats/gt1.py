"""GT1, gate's own ticket format (DESIGN §4): COSE_Sign1 / EdDSA over a CWT-style claims map.

Pure functions, no I/O:
- ``read(text, ctx)``: a scanned ``GT1:`` / ``GT1R:`` text → ``Claims`` or ``Denial``;
- ``read_credential``: the same for raw COSE bytes plus an optional holder proof (NFC answers);
- ``issue`` / ``encode_static`` / ``encode_rotating``: what ``gate issue`` and ``gate wallet`` use.

Any correct COSE_Sign1 implementation can issue GT1 tickets: the Sig_structure is RFC 9052's,
the protected header is ``{1: -8, 4: kid}``, claims use RFC 8392 integer keys where they exist.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import base45
import cbor2
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from gate.decision import Claims, Denial, Proof, Reason, ticket_key
from gate.formats import Env, TapFormat, TicketFormat, TrustError, TrustFormat, Unreadable
from gate.formats.b45 import b45decode
from gate.formats.trustdoc import Fields, decode_key

NAME = "gt1"
STATIC_PREFIX = "GT1:"
ROTATING_PREFIX = "GT1R:"
MAX_TEXT = 4096  # a QR code holds < 4.3 kB; anything longer is not a GT1 ticket
COSE_SIGN1_TAG = 18
ALG_EDDSA = -8
HDR_ALG, HDR_KID = 1, 4
CWT_ISS, CWT_EXP, CWT_NBF, CWT_IAT, CWT_CTI = 1, 4, 5, 6, 7


@dataclass(frozen=True)
class IssuerKey:
    """A trusted GT1 issuer key; ``events`` empty means any event."""

    kid: bytes
    public_key: bytes
    events: frozenset[str] = frozenset()
    not_before: int | None = None
    not_after: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        # Built once at start-up; verifying then costs no key parsing per scan.
        object.__setattr__(self, "_verify_key", VerifyKey(self.public_key))

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self._verify_key.verify(message, signature)  # type: ignore[attr-defined]
        except BadSignatureError:
            return False
        return True


@dataclass(frozen=True)
class Context:
    """What a GT1 verification needs from the gate: the time, the keys, the proof window."""

    now: float
    keys: dict[bytes, IssuerKey]
    proof_max_age: float = 30.0
    proof_max_ahead: float = 5.0


def kid_for(public_key: bytes) -> bytes:
    """Recommended kid: the first 8 bytes of SHA-256 of the raw 32-byte Ed25519 public key."""
    return hashlib.sha256(public_key).digest()[:8]


def recognises(text: str) -> bool:
    return text.startswith(STATIC_PREFIX) or text.startswith(ROTATING_PREFIX)


# --- reading -------------------------------------------------------------------------------


class Sign1(NamedTuple):  # NamedTuple, not a frozen dataclass: built on every scan, 5x cheaper
    protected: bytes
    kid: bytes
    payload: bytes
    signature: bytes

    def to_be_signed(self) -> bytes:
        return sig_structure(self.protected, self.payload)


SIG1_HEAD = b"\x84\x6aSignature1"  # a Sig_structure's array head and context text, as CBOR
_SHORT_BSTR_HEADS = [bytes((0x40 + length,)) for length in range(24)]


def _bstr_head(length: int) -> bytes:
    """The CBOR head of a byte string of ``length`` bytes, in its shortest form (as cbor2 writes it)."""
    if length < 24:
        return _SHORT_BSTR_HEADS[length]
    if length < 0x100:
        return bytes((0x58, length))
    if length < 0x10000:
        return b"\x59" + length.to_bytes(2, "big")
    if length < 0x100000000:
        return b"\x5a" + length.to_bytes(4, "big")
    return b"\x5b" + length.to_bytes(8, "big")


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """RFC 9052 §4.4: ``["Signature1", protected, external_aad = b"", payload]`` in CBOR."""
    if type(protected) is bytes and type(payload) is bytes:  # byte for byte what cbor2.dumps writes
        return b"".join((SIG1_HEAD, _bstr_head(len(protected)), protected, b"\x40", _bstr_head(len(payload)), payload))
    return cbor2.dumps(["Signature1", protected, b"", payload])


def _opens(signed: bytes, public_key: bytes) -> bool:
    """Whether ``signed`` (64-byte signature, then the message) verifies under ``public_key`` (32
    bytes): libsodium's ``crypto_sign_open``, what ``VerifyKey.verify`` calls, without building a
    ``VerifyKey`` for it."""
    try:
        crypto_sign_open(signed, public_key)
    except BadSignatureError:
        return False
    return True


def _ed25519_verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """``VerifyKey(public_key).verify(message, signature)`` without its exception and buffers."""
    if type(public_key) is bytes and len(public_key) == 32 and type(signature) is bytes and len(signature) == 64:
        return _opens(signature + message, public_key)
    try:  # anything else: whatever PyNaCl makes of it (its own TypeError or ValueError)
        VerifyKey(public_key).verify(message, signature)
    except BadSignatureError:
        return False
    return True


def _loads(data: bytes, what: str) -> Any:
    try:
        return cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types on hostile input
        raise Unreadable(f"{what} is not valid CBOR") from exc


def _b45(text: str, what: str) -> bytes:
    try:
        return b45decode(text)
    except ValueError as exc:
        raise Unreadable(f"{what} is not valid base45") from exc


# How a COSE_Sign1 in the usual shape begins, up to its kid: tag 18 (or none), a 4-element array,
# the protected header's byte string head, the map {1: -8, 4: ..., the kid's head.
# → (where the protected header's byte string starts, the kid's length)
_SIGN1_STARTS = {
    tag + bytes((0x84, 0x45 + length, 0xA2, 0x01, 0x27, 0x04, 0x40 + length)): (len(tag) + 1, length)
    for tag in (b"\xd2", b"")
    for length in range(1, 19)
}


def _sign1_fast(data: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes] | None:
    """(protected, kid, payload, signature, signature + Sig_structure) of a COSE_Sign1 in the shape
    GT1 issuers write, read with slices; None for any other shape (``_parse_sign1`` reads those).

    The shape: tag 18 or none, a 4-element array; the protected header ``{1: -8, 4: kid}`` (kid of
    1-18 bytes) in a byte string; an empty unprotected map; the payload; a 64-byte signature; and
    nothing after it, every head in its shortest form. cbor2 reads such bytes to exactly these
    values, and there both byte strings appear as ``cbor2.dumps`` writes them: the Sig_structure
    is their slices between its head and the empty external_aad, no re-encoding.
    """
    if type(data) is not bytes:
        return None
    found = _SIGN1_STARTS.get(data[:8]) or _SIGN1_STARTS.get(data[:7])
    if found is None:
        return None
    start, kid_length = found
    protected_end = start + 6 + kid_length
    payload_at, payload_end = protected_end + 1, len(data) - 66
    if payload_at >= payload_end or data[protected_end] != 0xA0 or data[payload_end : payload_end + 2] != b"\x58\x40":
        return None
    head = data[payload_at]
    if 0x40 <= head < 0x58:
        payload_start, length = payload_at + 1, head - 0x40
    elif head == 0x58:
        payload_start, length = payload_at + 2, data[payload_at + 1]
        if length < 24:
            return None
    elif head == 0x59:
        payload_start, length = payload_at + 3, int.from_bytes(data[payload_at + 1 : payload_at + 3], "big")
        if length < 0x100:
            return None
    else:
        return None
    if payload_start + length != payload_end:
        return None
    signature = data[payload_end + 2 :]
    signed = b"".join((signature, SIG1_HEAD, data[start:protected_end], b"\x40", data[payload_at:payload_end]))
    return data[start + 1 : protected_end], data[start + 6 : protected_end], data[payload_start:payload_end], signature, signed


def parse_sign1(data: bytes) -> Sign1:
    fast = _sign1_fast(data)
    if fast is not None:
        return Sign1(*fast[:4])
    return _parse_sign1(data)


def _parse_sign1(data: bytes) -> Sign1:
    obj = _loads(data, "credential")
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != COSE_SIGN1_TAG:
            raise Unreadable(f"CBOR tag {obj.tag} is not COSE_Sign1 (18)")
        obj = obj.value
    if not isinstance(obj, (list, tuple)) or len(obj) != 4:
        raise Unreadable("credential is not a 4-element COSE_Sign1 array")
    protected, unprotected, payload, signature = obj
    if not isinstance(protected, bytes) or not isinstance(payload, bytes):
        raise Unreadable("COSE protected header and payload must be byte strings")
    if not isinstance(unprotected, Mapping):  # cbor2 freezes maps inside a tag
        raise Unreadable("COSE unprotected header must be a map")
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise Unreadable("COSE signature must be 64 bytes (Ed25519)")
    header = _loads(protected, "protected header") if protected else {}
    if not isinstance(header, dict):
        raise Unreadable("COSE protected header is not a map")
    if header.get(HDR_ALG) != ALG_EDDSA:
        raise Unreadable(f"COSE algorithm {header.get(HDR_ALG)!r} is not EdDSA (-8)")
    kid = header.get(HDR_KID, unprotected.get(HDR_KID))
    if not isinstance(kid, bytes) or not kid:
        raise Unreadable("COSE kid missing or not a byte string")
    return Sign1(protected, kid, payload, signature)


class TicketClaims(NamedTuple):
    """The GT1 claims map, typed."""

    cti: bytes
    event: str
    issuer: str | None
    expires: int | None
    not_before: int | None
    issued_at: int | None
    product: str | None
    entries: int | None
    zones: tuple[str, ...] | None
    holder_key: bytes | None


def parse_claims(payload_bytes: bytes) -> TicketClaims:
    return TicketClaims(*_claim_values(payload_bytes))


def _wrong_type(name: str, value: Any) -> Unreadable:
    return Unreadable(f"claim {name} has the wrong type ({type(value).__name__})")


def _claim_values(payload_bytes: bytes) -> tuple[Any, ...]:
    """``TicketClaims``' fields in its order, as a plain tuple (built on every scan).

    An optional claim is absent or null, or of its one type: ``type(...) is int`` on purpose, a
    CBOR true is no integer. Claims are checked in a fixed order: the first fault found is named.
    """
    payload = _loads(payload_bytes, "payload")
    if not isinstance(payload, dict):
        raise Unreadable("payload is not a CBOR map")
    get = payload.get
    cti = get(CWT_CTI)
    if not isinstance(cti, bytes) or not 8 <= len(cti) <= 32:
        raise Unreadable("claim cti (7) must be a byte string of 8-32 bytes")
    event = get("evt")
    if not isinstance(event, str) or not event:
        raise Unreadable("claim evt is required and must be text")
    entries = get("ent")
    if entries is not None:
        if type(entries) is not int:
            raise _wrong_type("ent", entries)
        if entries < 0:
            raise Unreadable("claim ent must not be negative")
    zones = get("zn")
    if zones is not None:
        if not isinstance(zones, (list, tuple)):
            raise _wrong_type("zn", zones)
        if not all(isinstance(z, str) for z in zones):
            raise Unreadable("claim zn must be an array of text")
        zones = tuple(zones)
    holder_key = get("hk")
    if holder_key is not None:
        if not isinstance(holder_key, bytes):
            raise _wrong_type("hk", holder_key)
        if len(holder_key) != 32:
            raise Unreadable("claim hk must be a 32-byte Ed25519 public key")
    issuer = get(CWT_ISS)
    if issuer is not None and not isinstance(issuer, str):
        raise _wrong_type("iss", issuer)
    expires = get(CWT_EXP)
    if expires is not None and type(expires) is not int:
        raise _wrong_type("exp", expires)
    not_before = get(CWT_NBF)
    if not_before is not None and type(not_before) is not int:
        raise _wrong_type("nbf", not_before)
    issued_at = get(CWT_IAT)
    if issued_at is not None and type(issued_at) is not int:
        raise _wrong_type("iat", issued_at)
    product = get("cls")
    if product is not None and not isinstance(product, str):
        raise _wrong_type("cls", product)
    return cti, event, issuer, expires, not_before, issued_at, product, entries, zones, holder_key


def rotating_message(cti: bytes, drawn_at: int) -> bytes:
    return b"GT1R" + cti + struct.pack(">Q", drawn_at)


def nfc_message(cti: bytes, drawn_at: int, nonce: bytes, gate_id: str) -> bytes:
    return b"GT1N" + cti + struct.pack(">Q", drawn_at) + nonce + gate_id.encode()


def _parse_proof_envelope(data: bytes, what: str = "rotating code") -> tuple[bytes, int, bytes]:
    return _proof_fields(_loads(data, what), what)


def _proof_fields(obj: Any, what: str) -> tuple[bytes, int, bytes]:
    if not isinstance(obj, (list, tuple)) or len(obj) != 3:
        raise Unreadable(f"{what} is not [credential, t, sig]")
    cose, drawn_at, sig = obj
    if not isinstance(cose, bytes):
        raise Unreadable(f"{what} credential is not a byte string")
    if isinstance(drawn_at, bool) or not isinstance(drawn_at, int) or not 0 <= drawn_at < 2**63:
        raise Unreadable(f"{what} time is not a non-negative integer")
    if not isinstance(sig, bytes) or len(sig) != 64:
        raise Unreadable(f"{what} signature must be 64 bytes")
    return cose, drawn_at, sig


@dataclass(frozen=True)
class NfcAnswer:
    """A phone's answer to the GT1 NFC challenge, parsed but not verified."""

    cose: bytes
    drawn_at: int | None = None  # None: a ticket without a holder key answers [cose] alone
    signature: bytes | None = None

    @property
    def proof_key(self) -> str | None:
        """The proof's identity, as the ledger keeps it with an admission (see ``read_credential``)."""
        return None if self.signature is None else ticket_key(f"{NAME}-nfc", self.signature)


def parse_nfc_answer(data: bytes) -> NfcAnswer:
    """``[cose_bytes, t, sig]`` or ``[cose_bytes]`` (DESIGN §4); raises ``Unreadable``."""
    if len(data) > MAX_TEXT:
        raise Unreadable(f"NFC answer longer than {MAX_TEXT} bytes")
    obj = _loads(data, "NFC answer")
    if isinstance(obj, (list, tuple)) and len(obj) == 1:
        if not isinstance(obj[0], bytes):
            raise Unreadable("NFC answer credential is not a byte string")
        return NfcAnswer(obj[0])
    cose, drawn_at, sig = _proof_fields(obj, "NFC answer")
    return NfcAnswer(cose, drawn_at, sig)


def read_nfc(answer: NfcAnswer, nonce: bytes, gate_id: str, ctx: Context) -> Claims | Denial:
    """Verify a phone's answer to this gate's challenge (``nonce``, ``gate_id`` as sent)."""
    try:
        if answer.signature is None or answer.drawn_at is None:
            return read_credential(answer.cose, ctx)  # a holder-bound ticket is refused there: stale_proof

        def message_for(cti: bytes, drawn_at: int) -> bytes:
            return nfc_message(cti, drawn_at, nonce, gate_id)

        return read_credential(answer.cose, ctx, proof=("nfc", answer.drawn_at, answer.signature, message_for))
    except Unreadable as exc:
        return Denial(Reason.UNREADABLE, f"gt1: {exc}")


def read(text: str, ctx: Context) -> Claims | Denial:
    """Verify a scanned GT1 text (static or rotating)."""
    try:
        if len(text) > MAX_TEXT:
            raise Unreadable(f"longer than {MAX_TEXT} characters")
        if text.startswith(STATIC_PREFIX):  # the prefixes differ in their 4th character: either order
            return read_credential(_b45(text[len(STATIC_PREFIX) :], "GT1"), ctx)
        if text.startswith(ROTATING_PREFIX):
            cose, drawn_at, sig = _parse_proof_envelope(_b45(text[len(ROTATING_PREFIX) :], "GT1R"))
            return read_credential(cose, ctx, proof=("rotating", drawn_at, sig, rotating_message))
        return Denial(Reason.UNKNOWN_FORMAT, "not a GT1 text")
    except Unreadable as exc:
        return Denial(Reason.UNREADABLE, f"gt1: {exc}")


def read_credential(
    cose: bytes,
    ctx: Context,
    proof: tuple[str, int, bytes, Any] | None = None,
) -> Claims | Denial:
    """Verify COSE bytes and, for a holder-bound ticket, the holder's proof.

    ``proof`` is ``(kind, drawn_at, signature, message_for(cti, drawn_at))``; the message
    function lets the NFC exchange bind its nonce and gate id without a second code path.
    Raises ``Unreadable`` for malformed input (``read`` maps it to a denial).
    """
    # Parsed once: the usual shape with slices (the Sig_structure comes with it), any other in full.
    fast = _sign1_fast(cose)
    if fast is not None:
        _, kid, payload, _, signed = fast
    else:
        sign1 = _parse_sign1(cose)
        kid, payload, signed = sign1.kid, sign1.payload, sign1.signature + sign1.to_be_signed()
    key = ctx.keys.get(kid)
    if key is None:
        return Denial(Reason.UNKNOWN_KEY, f"gt1: no trusted key with kid {kid.hex()}")
    # key.verify(...) without its exception and buffers; public_key passed VerifyKey at start-up
    if not _opens(signed, key.public_key):
        return Denial(Reason.BAD_SIGNATURE, "gt1: issuer signature does not verify")
    cti, event, issuer, expires, not_before, issued_at, product, entries, zones, holder_key = _claim_values(payload)
    if key.events and event not in key.events:
        return Denial(Reason.UNKNOWN_KEY, f"gt1: key {key.kid.hex()} may not sign event {event}")
    signed_at = issued_at if issued_at is not None else ctx.now
    if (key.not_before is not None and signed_at < key.not_before) or (
        key.not_after is not None and signed_at > key.not_after
    ):
        return Denial(Reason.UNKNOWN_KEY, f"gt1: key {key.kid.hex()} not valid at {int(signed_at)}")

    drawn = None
    if holder_key is not None:
        if proof is None:
            return Denial(Reason.STALE_PROOF, "gt1: holder-bound ticket shown without a fresh proof")
        kind, drawn_at, sig, message_for = proof
        if not _ed25519_verifies(holder_key, message_for(cti, drawn_at), sig):
            return Denial(Reason.BAD_SIGNATURE, f"gt1: holder signature on {kind} proof does not verify")
        if not ctx.now - ctx.proof_max_age <= drawn_at <= ctx.now + ctx.proof_max_ahead:
            return Denial(Reason.STALE_PROOF, f"gt1: {kind} proof drawn {int(ctx.now - drawn_at)} s ago")
        drawn = Proof(kind, drawn_at, ticket_key(f"{NAME}-{kind}", sig))
    elif proof is not None and proof[0] == "rotating":
        raise Unreadable("rotating code for a ticket that has no holder key")

    return Claims(
        format=NAME,
        ticket_key=ticket_key(NAME, cti),
        event=event,
        product=product,
        zones=zones,
        entries=entries,
        not_before=not_before,
        expires=expires,
        issuer=issuer,
        kid=kid.hex(),
        proof=drawn,
    )


def ticket_key_of(text: str) -> str | None:
    """The ledger key of a GT1 text without verifying it (for ``gate revoke TOKEN``)."""
    try:
        if text.startswith(ROTATING_PREFIX):
            cose = _parse_proof_envelope(_b45(text[len(ROTATING_PREFIX) :], "GT1R"))[0]
        elif text.startswith(STATIC_PREFIX):
            cose = _b45(text[len(STATIC_PREFIX) :], "GT1")
        else:
            return None
        return ticket_key(NAME, parse_claims(parse_sign1(cose).payload).cti)
    except Unreadable:
        return None


def _read_scan(text: str, env: Env) -> Claims | Denial:
    ctx = Context(env.now, env.trust.get(NAME, {}), env.proof_max_age, env.proof_max_ahead)
    return read(text, ctx)


def _read_tap(answer: NfcAnswer, nonce: bytes, gate_id: str, env: Env) -> Claims | Denial:
    return read_nfc(answer, nonce, gate_id, Context(env.now, env.trust.get(NAME, {}), env.proof_max_age, env.proof_max_ahead))


FORMAT = TicketFormat(NAME, recognises, _read_scan, ticket_key_of, tap=TapFormat(parse_nfc_answer, _read_tap))


# --- trust: {"format": "gt1", "issuers": [{"public_key", "kid"?, "name"?, "events"?, ...}]} ---


def parse_issuer(item: Fields) -> IssuerKey:
    public_key = decode_key(item.text("public_key"), f"{item.path}.public_key")
    kid_hex = item.text("kid", "")
    try:
        kid = bytes.fromhex(kid_hex) if kid_hex else kid_for(public_key)
    except ValueError:
        raise TrustError(f"{item.path}.kid: must be hexadecimal") from None
    key = IssuerKey(
        kid,
        public_key,
        frozenset(item.texts("events", [])),
        item.integer("not_before", None),
        item.integer("not_after", None),
        item.text("name", ""),
    )
    item.done()
    return key


def parse_trust(document: dict[str, Any], where: str) -> dict[bytes, IssuerKey]:
    doc = Fields(document, where)
    keys = merge_trust([{key.kid: key} for key in map(parse_issuer, doc.objects("issuers"))])
    doc.done()
    return keys


def merge_trust(parts: list[dict[bytes, IssuerKey]]) -> dict[bytes, IssuerKey]:
    keys: dict[bytes, IssuerKey] = {}
    for part in parts:
        for kid, key in part.items():
            if kid in keys and keys[kid].public_key != key.public_key:
                raise TrustError(f"gt1: kid {kid.hex()} names two different keys ({keys[kid].name!r}, {key.name!r})")
            keys[kid] = key
    return keys


TRUST = TrustFormat(NAME, parse_trust, merge_trust)


# --- issuing -------------------------------------------------------------------------------


def build_claims(
    *,
    cti: bytes,
    event: str,
    issuer: str | None = None,
    product: str | None = None,
    not_before: int | None = None,
    expires: int | None = None,
    issued_at: int | None = None,
    entries: int | None = None,
    zones: list[str] | None = None,
    holder_key: bytes | None = None,
) -> dict[Any, Any]:
    claims: dict[Any, Any] = {CWT_CTI: cti, "evt": event}
    optional = {
        CWT_ISS: issuer,
        CWT_NBF: not_before,
        CWT_EXP: expires,
        CWT_IAT: issued_at,
        "cls": product,
        "ent": entries,
        "zn": zones,
        "hk": holder_key,
    }
    claims.update({k: v for k, v in optional.items() if v is not None})
    return claims


def issue(signing_key: SigningKey, claims: dict[Any, Any], kid: bytes | None = None) -> bytes:
    """Sign a claims map into tagged COSE_Sign1 bytes."""
    public = bytes(signing_key.verify_key)
    protected = cbor2.dumps({HDR_ALG: ALG_EDDSA, HDR_KID: kid or kid_for(public)})
    payload = cbor2.dumps(claims)
    signature = signing_key.sign(sig_structure(protected, payload)).signature
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


def encode_static(cose: bytes) -> str:
    return STATIC_PREFIX + base45.b45encode(cose).decode("ascii")


def holder_proof(cose: bytes, holder: SigningKey, drawn_at: int) -> tuple[bytes, bytes]:
    """(cti, signature) of a rotating proof; raises ``Unreadable`` if cose is not a GT1 ticket."""
    cti = parse_claims(parse_sign1(cose).payload).cti
    return cti, holder.sign(rotating_message(cti, drawn_at)).signature


def encode_rotating(cose: bytes, holder: SigningKey, drawn_at: int) -> str:
    """The code a phone shows at ``drawn_at``: ``GT1R:`` + base45 of ``[cose, t, sig]``."""
    _, sig = holder_proof(cose, holder, drawn_at)
    return ROTATING_PREFIX + base45.b45encode(cbor2.dumps([cose, drawn_at, sig])).decode("ascii")


def decode_static(text: str) -> bytes:
    """COSE bytes of a ``GT1:`` text (for ``gate wallet``)."""
    if not text.startswith(STATIC_PREFIX):
        raise Unreadable("not a GT1: text")
    return _b45(text[len(STATIC_PREFIX) :], "GT1")
