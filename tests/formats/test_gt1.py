"""GT1 (DESIGN §4) as pure functions, and interoperability with an independent COSE library."""

from __future__ import annotations

import time

import cbor2
import pytest
from nacl.signing import SigningKey
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm
from pycose.keys.curves import Ed25519
from pycose.keys.okp import OKPKey
from pycose.messages import Sign1Message

from gate.decision import Claims, Denial, Reason
from gate.formats import gt1

NOW = 1_800_000_000


@pytest.fixture
def key() -> SigningKey:
    return SigningKey(b"\x05" * 32)


def context(key: SigningKey, now: float = NOW) -> gt1.Context:
    public = bytes(key.verify_key)
    kid = gt1.kid_for(public)
    return gt1.Context(now=now, keys={kid: gt1.IssuerKey(kid, public)})


def claims_map(**extra) -> dict:
    return gt1.build_claims(cti=b"0123456789abcdef", event="evt", **extra)


def test_static_roundtrip_gives_claims(key):
    text = gt1.encode_static(gt1.issue(key, claims_map(product="vip", entries=2, zones=["A"], expires=NOW + 10)))
    result = gt1.read(text, context(key))
    assert isinstance(result, Claims)
    assert (result.event, result.product, result.entries, result.zones, result.expires) == ("evt", "vip", 2, ("A",), NOW + 10)


def test_pycose_issued_ticket_verifies_in_gate(key):
    """A ticket made by another COSE implementation (pycose), untagged, is accepted."""
    public = bytes(key.verify_key)
    message = Sign1Message(
        phdr={Algorithm: EdDSA, KID: gt1.kid_for(public)},
        payload=cbor2.dumps(claims_map(issuer="box office")),
    )
    message.key = OKPKey(crv=Ed25519, d=bytes(key), x=public)
    cose = message.encode(tag=False)
    result = gt1.read(gt1.encode_static(cose), context(key))
    assert isinstance(result, Claims) and result.issuer == "box office"
    tagged = message.encode(tag=True)
    assert isinstance(gt1.read(gt1.encode_static(tagged), context(key)), Claims)


def test_gate_issued_ticket_verifies_in_pycose(key):
    cose = gt1.issue(key, claims_map())
    # pycose 1.1's decode() expects cbor2 < 6 (mutable lists and dicts inside tags): hand it the
    # COSE_Sign1 array, re-read untagged, through its own from_cose_obj. The verification below
    # (Sig_structure and Ed25519) is all pycose's.
    tagged = cbor2.loads(cose)
    assert tagged.tag == 18
    array = cbor2.loads(cbor2.dumps(list(tagged.value)))
    message = Sign1Message.from_cose_obj(array, allow_unknown_attributes=True)
    message.key = OKPKey(crv=Ed25519, x=bytes(key.verify_key))
    assert message.verify_signature()
    assert message.phdr[KID] == gt1.kid_for(bytes(key.verify_key))
    assert cbor2.loads(message.payload)["evt"] == "evt"


def test_rotating_window_edges(key):
    holder = SigningKey(b"\x06" * 32)
    cose = gt1.issue(key, claims_map(holder_key=bytes(holder.verify_key)))
    ok = lambda t: gt1.read(gt1.encode_rotating(cose, holder, t), context(key))  # noqa: E731
    assert isinstance(ok(NOW - 30), Claims) and isinstance(ok(NOW + 5), Claims)
    assert ok(NOW - 31) == Denial(Reason.STALE_PROOF, "gt1: rotating proof drawn 31 s ago")
    assert ok(NOW + 6).reason == Reason.STALE_PROOF


def test_rotating_code_signed_by_another_holder_is_bad_signature(key):
    holder, thief = SigningKey(b"\x06" * 32), SigningKey(b"\x07" * 32)
    cose = gt1.issue(key, claims_map(holder_key=bytes(holder.verify_key)))
    assert gt1.read(gt1.encode_rotating(cose, thief, NOW), context(key)).reason == Reason.BAD_SIGNATURE


def test_key_restricted_to_events_and_validity(key):
    public = bytes(key.verify_key)
    kid = gt1.kid_for(public)
    ctx = gt1.Context(NOW, {kid: gt1.IssuerKey(kid, public, frozenset({"other"}))})
    assert gt1.read(gt1.encode_static(gt1.issue(key, claims_map())), ctx).reason == Reason.UNKNOWN_KEY
    ctx = gt1.Context(NOW, {kid: gt1.IssuerKey(kid, public, not_after=NOW - 100)})
    old_key_ticket = gt1.encode_static(gt1.issue(key, claims_map(issued_at=NOW)))
    assert gt1.read(old_key_ticket, ctx).reason == Reason.UNKNOWN_KEY


@pytest.mark.parametrize(
    "text",
    [
        "GT1:",
        "GT1:%%%",
        "GT1:" + "0" * 5000,
        "GT1R:ABC",
        gt1.encode_static(cbor2.dumps([b"", {}, b"", b""])),
        gt1.encode_static(cbor2.dumps(cbor2.CBORTag(17, [b"", {}, b"", b"\0" * 64]))),
        gt1.encode_static(cbor2.dumps([cbor2.dumps({1: -7, 4: b"k"}), {}, b"", b"\0" * 64])),
        gt1.encode_static(cbor2.dumps([cbor2.dumps({1: -8}), {}, b"", b"\0" * 64])),
        gt1.encode_static(b"\x9f" * 100),
    ],
)
def test_malformed_input_is_unreadable_never_a_crash(key, text):
    result = gt1.read(text, context(key))
    assert isinstance(result, Denial) and result.reason == Reason.UNREADABLE


@pytest.mark.parametrize(
    "claims",
    [
        {7: b"short", "evt": "e"},
        {7: b"0123456789abcdef"},
        {7: b"0123456789abcdef", "evt": "e", 4: "tomorrow"},
        {7: b"0123456789abcdef", "evt": "e", "hk": b"\0" * 31},
        {7: b"0123456789abcdef", "evt": "e", "zn": [1]},
        {7: b"0123456789abcdef", "evt": "e", "ent": -1},
    ],
)
def test_signed_but_malformed_claims_are_unreadable(key, claims):
    assert gt1.read(gt1.encode_static(gt1.issue(key, claims)), context(key)).reason == Reason.UNREADABLE


def test_ticket_key_is_the_same_for_static_and_rotating_forms(key):
    holder = SigningKey(b"\x06" * 32)
    cose = gt1.issue(key, claims_map(holder_key=bytes(holder.verify_key)))
    rotating = gt1.read(gt1.encode_rotating(cose, holder, NOW), context(key))
    assert rotating.ticket_key == gt1.ticket_key_of(gt1.encode_static(cose))
    assert "0123456789abcdef" not in rotating.ticket_key


def test_verification_is_fast_enough_to_bench():
    """Not a timing assert: proves the bench's workload (many verifications) runs as a loop."""
    key = SigningKey(b"\x05" * 32)
    text = gt1.encode_static(gt1.issue(key, claims_map()))
    ctx = context(key, time.time())
    assert all(isinstance(gt1.read(text, ctx), Claims) for _ in range(50))
