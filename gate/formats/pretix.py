"""pretix tickets (DESIGN §4): signature scheme 1 secrets and random secrets, offline.

Signature scheme 1 (pretix ``pretix.base.secrets``, libpretixsync): the secret is the
*reversed* standard base64 of ``0x01 ‖ len(payload) u16be ‖ len(sig) u16be ‖ payload ‖ sig``,
the payload a protobuf ``Ticket {seed, item, variation, subevent, validFromUnixTime,
validUntilUnixTime}`` and the signature Ed25519 by one of the event's ``valid_keys``.
Random secrets (pretix's default generator) carry nothing; they are checked against the list
of valid secrets the venue synced from pretix.

The checks run in pretixSCAN's order: signature, revoked, blocked, validity window (entry
only), check-in list products, subevent; then gate's ledger decides used / re-entry with the
check-in list's "multiple entries" and "entry after exit" settings.

Trust document (one per event, as pretix's API publishes the pieces)::

    {"format": "pretix", "event": "democon",
     "valid_keys": {"pretix_sig1": ["<base64 of PEM public key>", ...]},
     "checkin_list": {"all_products": false, "limit_products": [1, 42], "subevent": null,
                      "allow_multiple_entries": false, "allow_entry_after_exit": true},
     "revoked_secrets": ["..."], "blocked_secrets": ["..."],
     "valid_secrets": [{"secret": "...", "item": 1, "variation": 0, "subevent": 0}]}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from gate.decision import IN, Claims, Denial, Reason, ticket_key
from gate.formats import Env, TicketFormat, TrustError, TrustFormat, Unreadable
from gate.formats.trustdoc import Fields

NAME_SIG1 = "pretix_sig1"
NAME_RANDOM = "pretix_random"
TRUST_NAME = "pretix"
KEY_NAMESPACE = "pretix"  # both forms: a secret is one ticket however it arrives
MAX_SECRET = 1024
SIG_LENGTH = 64
_SIG1_SHAPE = re.compile(r"[A-Za-z0-9+/=]{40,1024}")
_RANDOM_SHAPE = re.compile(r"[a-z0-9]{12,64}")  # pretix lets an organizer choose 12-64 characters
# The Ed25519 SubjectPublicKeyInfo prefix (RFC 8410): SEQUENCE { AlgorithmIdentifier 1.3.101.112, BIT STRING }.
_ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")


# --- trust ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckinList:
    all_products: bool = True
    limit_products: frozenset[int] = frozenset()
    subevent: int | None = None
    allow_multiple_entries: bool = False
    allow_entry_after_exit: bool = True


@dataclass(frozen=True)
class Position:
    """What a random secret stands for (from pretix's list of valid secrets)."""

    item: int
    variation: int = 0
    subevent: int = 0
    valid_from: int = 0
    valid_until: int = 0


@dataclass
class PretixEvent:
    slug: str
    keys: tuple[VerifyKey, ...]
    checkin_list: CheckinList
    revoked: frozenset[bytes] = frozenset()  # SHA-256 of secrets: lookups leak nothing useful
    blocked: frozenset[bytes] = frozenset()
    valid_secrets: dict[bytes, Position] = field(default_factory=dict)


@dataclass(frozen=True)
class PretixTrust:
    events: tuple[PretixEvent, ...]

    def describe(self) -> str:
        return ", ".join(
            f"{e.slug}: {len(e.keys)} keys, {len(e.valid_secrets)} secrets, "
            f"{len(e.revoked)} revoked, {len(e.blocked)} blocked"
            for e in self.events
        )


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def public_key_from_pem(value: str, where: str) -> VerifyKey:
    """One entry of ``valid_keys.pretix_sig1``: base64 of a PEM Ed25519 SubjectPublicKeyInfo."""
    try:
        pem = base64.b64decode(value, validate=True).decode("ascii")
        body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise TrustError(f"{where}: not base64 of a PEM public key") from None
    if "BEGIN PUBLIC KEY" not in pem or len(der) != 44 or not der.startswith(_ED25519_SPKI):
        raise TrustError(f"{where}: not an Ed25519 public key (SubjectPublicKeyInfo)")
    return VerifyKey(der[len(_ED25519_SPKI) :])


def parse_trust(document: dict[str, Any], where: str) -> PretixTrust:
    doc = Fields(document, where)
    slug = doc.text("event")
    valid_keys = doc.obj("valid_keys", None)
    keys: list[VerifyKey] = []
    if valid_keys is not None:
        for i, value in enumerate(valid_keys.texts("pretix_sig1", [], max_len=4096)):
            keys.append(public_key_from_pem(value, f"{valid_keys.path}.pretix_sig1[{i}]"))
        valid_keys.accept_rest()  # pretix may publish other schemes: not ours
    checkin = doc.obj("checkin_list", None)
    checkin_list = CheckinList()
    if checkin is not None:
        checkin_list = CheckinList(
            all_products=checkin.boolean("all_products", True),
            limit_products=frozenset(checkin.integers("limit_products", [])),
            subevent=checkin.integer("subevent", None, minval=0),
            allow_multiple_entries=checkin.boolean("allow_multiple_entries", False),
            allow_entry_after_exit=checkin.boolean("allow_entry_after_exit", True),
        )
        checkin.done()
    valid: dict[bytes, Position] = {}
    for i, entry in enumerate(doc.array("valid_secrets", [])):
        item = Fields(entry, f"{doc.path}.valid_secrets[{i}]")
        valid[_digest(item.text("secret", max_len=MAX_SECRET))] = Position(
            item=item.integer("item", minval=0),
            variation=item.integer("variation", 0, minval=0),
            subevent=item.integer("subevent", 0, minval=0),
            valid_from=item.integer("valid_from", 0, minval=0),
            valid_until=item.integer("valid_until", 0, minval=0),
        )
        item.done()
    event = PretixEvent(
        slug=slug,
        keys=tuple(keys),
        checkin_list=checkin_list,
        revoked=frozenset(map(_digest, doc.texts("revoked_secrets", [], max_len=MAX_SECRET))),
        blocked=frozenset(map(_digest, doc.texts("blocked_secrets", [], max_len=MAX_SECRET))),
        valid_secrets=valid,
    )
    doc.done()
    if not keys and not valid:
        raise TrustError(f"{where}: neither valid_keys.pretix_sig1 nor valid_secrets: nothing could be verified")
    return PretixTrust((event,))


def merge_trust(parts: list[PretixTrust]) -> PretixTrust:
    events = [event for part in parts for event in part.events]
    slugs = [e.slug for e in events]
    for slug in set(slugs):
        if slugs.count(slug) > 1:
            raise TrustError(f"pretix: event {slug!r} is described by two documents")
    return PretixTrust(tuple(events))


TRUST = TrustFormat(TRUST_NAME, parse_trust, merge_trust)


# --- signature scheme 1 ---------------------------------------------------------------------


@dataclass(frozen=True)
class Ticket:
    seed: str
    item: int
    variation: int
    subevent: int
    valid_from: int  # 0: no limit
    valid_until: int  # 0: no limit


def split_sig1(secret: str) -> tuple[bytes, bytes]:
    """``(payload, signature)`` of a scheme-1 secret; ``Unreadable`` if it is not one."""
    if not _SIG1_SHAPE.fullmatch(secret):
        raise Unreadable("not reversed base64 of sane length")
    try:
        raw = base64.b64decode(secret[::-1], validate=True)
    except binascii.Error:
        raise Unreadable("not valid base64") from None
    # One ticket, one text: a secret with altered padding bits would decode to the same bytes
    # under another string, and so under another ledger key.
    if base64.b64encode(raw).decode()[::-1] != secret:
        raise Unreadable("not canonical base64")
    if len(raw) < 5 or raw[0] != 0x01:
        raise Unreadable("not a version 1 secret")
    payload_len, sig_len = struct.unpack(">HH", raw[1:5])
    if sig_len != SIG_LENGTH or 5 + payload_len + sig_len != len(raw):
        raise Unreadable("lengths do not match the secret")
    return raw[5 : 5 + payload_len], raw[5 + payload_len :]


_ticket_message: Any = None


def _ticket_class() -> Any:
    """pretix's ``Ticket`` protobuf message, built from its descriptor (no generated code)."""
    global _ticket_message
    if _ticket_message is None:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        fd = descriptor_pb2.FileDescriptorProto(name="gate_pretix_sig1.proto", package="gate.pretix", syntax="proto3")
        message = fd.message_type.add(name="Ticket")
        T = descriptor_pb2.FieldDescriptorProto
        for number, name, kind in (
            (1, "seed", T.TYPE_STRING),
            (2, "item", T.TYPE_INT64),
            (3, "variation", T.TYPE_INT64),
            (4, "subevent", T.TYPE_INT64),
            (5, "validFromUnixTime", T.TYPE_INT64),
            (6, "validUntilUnixTime", T.TYPE_INT64),
        ):
            message.field.add(name=name, number=number, type=kind, label=T.LABEL_OPTIONAL)
        pool = descriptor_pool.DescriptorPool()
        pool.Add(fd)
        _ticket_message = message_factory.GetMessageClass(pool.FindMessageTypeByName("gate.pretix.Ticket"))
    return _ticket_message


def parse_payload(payload: bytes) -> Ticket:
    from google.protobuf.message import DecodeError

    message = _ticket_class()()
    try:
        message.ParseFromString(payload)
    except DecodeError:
        raise Unreadable("signed payload is not a pretix Ticket") from None
    return Ticket(
        message.seed,
        message.item,
        message.variation,
        message.subevent,
        message.validFromUnixTime,
        message.validUntilUnixTime,
    )


def _verify(keys: tuple[VerifyKey, ...], payload: bytes, signature: bytes) -> bool:
    for key in keys:
        try:
            key.verify(payload, signature)
            return True
        except BadSignatureError:
            continue
    return False


def read_sig1(text: str, env: Env) -> Claims | Denial:
    secret = text.strip()
    try:
        payload, signature = split_sig1(secret)
    except Unreadable as exc:
        return Denial(Reason.UNREADABLE, f"pretix: {exc}")
    trust: PretixTrust | None = env.trust.get(TRUST_NAME)
    events = [e for e in trust.events if e.keys] if trust else []
    if not events:
        return Denial(Reason.UNKNOWN_KEY, "pretix: no pretix_sig1 keys held")
    event = next((e for e in events if _verify(e.keys, payload, signature)), None)
    if event is None:
        return Denial(Reason.BAD_SIGNATURE, "pretix: signature does not verify with any valid key")
    try:
        ticket = parse_payload(payload)
    except Unreadable as exc:
        return Denial(Reason.UNREADABLE, f"pretix: {exc}")
    position = Position(ticket.item, ticket.variation, ticket.subevent, ticket.valid_from, ticket.valid_until)
    return _check(secret, event, position, env, NAME_SIG1)


def _check(secret: str, event: PretixEvent, position: Position, env: Env, name: str) -> Claims | Denial:
    """pretixSCAN's offline checks after the signature, in its order."""
    digest = _digest(secret)
    if digest in event.revoked:
        return Denial(Reason.REVOKED, "pretix: secret is on the event's revoked list")
    if digest in event.blocked:
        return Denial(Reason.BLOCKED, "pretix: secret is blocked")
    lst = event.checkin_list
    if env.direction == IN:  # the validity window is for entries only: anyone may leave
        if position.valid_from and env.now < position.valid_from:
            return Denial(Reason.NOT_YET_VALID, f"pretix: valid from {position.valid_from}")
        if position.valid_until and env.now > position.valid_until:
            return Denial(Reason.EXPIRED, f"pretix: valid until {position.valid_until}")
    # Product and date on exit too, as libpretixsync checks them: an exit scan counts on this list.
    if not lst.all_products and position.item not in lst.limit_products:
        return Denial(Reason.WRONG_PRODUCT, f"pretix: product {position.item} is not on the check-in list")
    if lst.subevent and position.subevent != lst.subevent:
        return Denial(Reason.WRONG_EVENT, f"pretix: date {position.subevent} is not this list's date {lst.subevent}")
    product = str(position.item) + (f"/{position.variation}" if position.variation else "")
    return Claims(
        format=name,
        ticket_key=ticket_key(KEY_NAMESPACE, secret),
        event=event.slug,
        product=product,
        entries=0 if lst.allow_multiple_entries else 1,
        reentry="after_exit" if lst.allow_entry_after_exit else "deny",
    )


def recognises_sig1(text: str) -> bool:
    # Reversed base64 of 0x01 0x00 ..: the text ends in "QA" (or "QB" for long payloads).
    return len(text) >= 40 and text[-2:] in ("QA", "QB") and _SIG1_SHAPE.fullmatch(text) is not None


def ticket_key_of_sig1(text: str) -> str | None:
    try:
        split_sig1(text.strip())
    except Unreadable:
        return None
    return ticket_key(KEY_NAMESPACE, text.strip())


SIG1 = TicketFormat(NAME_SIG1, recognises_sig1, read_sig1, ticket_key_of_sig1, key_of_id=ticket_key_of_sig1)


# --- random secrets -------------------------------------------------------------------------


def read_random(text: str, env: Env) -> Claims | Denial:
    secret = text.strip()
    if not _RANDOM_SHAPE.fullmatch(secret):
        return Denial(Reason.UNREADABLE, "pretix: not a random secret")
    trust: PretixTrust | None = env.trust.get(TRUST_NAME)
    digest = _digest(secret)
    for event in trust.events if trust else ():
        position = event.valid_secrets.get(digest)
        if position is not None:
            return _check(secret, event, position, env, NAME_RANDOM)
        if digest in event.revoked:
            return Denial(Reason.REVOKED, "pretix: secret is on the event's revoked list")
    return Denial(Reason.UNKNOWN_KEY, "pretix: secret is not in the synced list of valid secrets")


def recognises_random(text: str) -> bool:
    return _RANDOM_SHAPE.fullmatch(text) is not None


def ticket_key_of_random(text: str) -> str | None:
    return ticket_key(KEY_NAMESPACE, text.strip()) if recognises_random(text.strip()) else None


RANDOM = TicketFormat(NAME_RANDOM, recognises_random, read_random, ticket_key_of_random, key_of_id=ticket_key_of_random)
