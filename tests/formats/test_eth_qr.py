"""Ethereum-signed dynamic QR codes, signed by eth-account as a wallet does (personal_sign)."""

from __future__ import annotations

import pytest
from eth_account import Account

from tests.support import vendors

CONTRACT = "0x" + "ab" * 20
TICKET = bytes(range(32))
NOW = 1_790_000_000


@pytest.fixture(scope="module")
def owner():
    return Account.from_key(b"\x11" * 32)


@pytest.fixture
def lane_verifier(verifier, owner):
    return verifier([{"format": "eth_qr", "event": "expo", "contract": CONTRACT,
                      "owners": {TICKET.hex(): owner.address, "cd" * 32: owner.address}}])


def test_owner_signed_code_opens_once(lane_verifier, owner):
    code = vendors.eth_qr(owner, CONTRACT, TICKET, NOW)
    decision = lane_verifier.admit(code, NOW)
    assert decision.accepted and decision.format == "eth_qr" and decision.details["event"] == "expo"
    fresh = vendors.eth_qr(owner, CONTRACT, TICKET, NOW + 60)
    assert lane_verifier.decide(fresh, NOW + 60).reason == "already_used"


def test_time_window_is_one_minute_each_side(lane_verifier, owner):
    assert lane_verifier.decide(vendors.eth_qr(owner, CONTRACT, TICKET, NOW - 60), NOW).accepted
    assert lane_verifier.decide(vendors.eth_qr(owner, CONTRACT, TICKET, NOW + 60), NOW).accepted
    assert lane_verifier.decide(vendors.eth_qr(owner, CONTRACT, TICKET, NOW - 180), NOW).reason == "stale_proof"
    assert lane_verifier.decide(vendors.eth_qr(owner, CONTRACT, TICKET, NOW + 180), NOW).reason == "bad_signature"


def test_forgeries_are_refused(lane_verifier, owner):
    thief = Account.from_key(b"\x22" * 32)
    assert lane_verifier.decide(vendors.eth_qr(thief, CONTRACT, TICKET, NOW), NOW).reason == "bad_signature"
    good = vendors.eth_qr(owner, CONTRACT, TICKET, NOW)
    assert lane_verifier.decide(vendors.eth_high_s(good), NOW).reason == "bad_signature"
    other_contract = vendors.eth_qr(owner, "0x" + "cd" * 20, TICKET, NOW)
    assert lane_verifier.decide(other_contract, NOW).reason == "bad_signature"
    assert lane_verifier.decide(good[:130] + "ee" * 32, NOW).reason == "unknown_key"
    # The signature of one ticket under another listed ticket's hash.
    assert lane_verifier.decide(good[:130] + "cd" * 32, NOW).reason == "bad_signature"
    assert lane_verifier.decide(good[:128] + "1d" + good[130:], NOW).reason == "unreadable"  # v = 29
    for i in range(0, 130, 7):  # tampered signature bytes
        flipped = good[:i] + ("0" if good[i] != "0" else "1") + good[i + 1:]
        assert not lane_verifier.decide(flipped, NOW).accepted


def test_same_code_after_exit_is_a_replay(verifier, owner):
    from gate.policy import GatePolicy

    v = verifier([{"format": "eth_qr", "event": "expo", "contract": CONTRACT, "owners": {TICKET.hex(): owner.address}}],
                 policy=GatePolicy(reentry="after_exit"))
    code = vendors.eth_qr(owner, CONTRACT, TICKET, NOW)
    assert v.admit(code, NOW).accepted
    assert v.admit(code, NOW + 5, direction="out").accepted
    assert v.decide(code, NOW + 10).reason == "replayed_proof"
