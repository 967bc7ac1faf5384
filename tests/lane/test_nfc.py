"""NFC: the gate's real NFC driver (nfcpy, reader side, unchanged) against a simulated phone and
tag (nfcpy card emulation) over nfcpy's own ``udp`` driver, through the running lane."""

from __future__ import annotations

import time

import pytest
from hwsim.phone import GT1Phone, NdefTag

from gate.formats import gt1
from tests.support.lanes import wait_until
from tests.support.nfc import free_udp_port


@pytest.fixture
def nfc_lane(start_lane, config_data):
    port = free_udp_port()
    config_data["nfc"] = {"device": f"udp:localhost:{port}", "exchange_timeout": 0.5}
    lane = start_lane(config_data)
    assert lane.daemon.readers.nfc.connected.wait(5)
    lane.nfc_port = port
    return lane


def tap(lane, card, walks: bool | None = True, seconds: float = 0.3) -> dict | None:
    """Someone taps ``card`` on the reader; the lane's decision for it (None: no decision)."""
    if walks is not None:
        lane.turnstile.person("in", walks)
    assert card.present(seconds, timeout=5), "the reader never polled the card"
    try:
        return lane.decisions.get(timeout=2)
    except Exception:
        return None


def test_a_phone_tap_opens_the_lane_once_however_long_it_is_held(nfc_lane, tickets, holder):
    cose = tickets.cose(holder_key=bytes(holder.verify_key))
    phone = GT1Phone(nfc_lane.nfc_port, cose, holder)
    decision = tap(nfc_lane, phone, seconds=1.5)  # held still on the reader: presence checks go on
    assert decision["accepted"] and decision["source"] == "nfc" and decision["details"]["proof"] == "nfc"
    wait_until(lambda: nfc_lane.records("passage"))
    assert nfc_lane.decisions.empty() and nfc_lane.pulses("unlock_in") == 1
    challenge = phone.challenges[0]
    assert len(challenge[0]) == 16 and challenge[1] == "lane-1" and abs(challenge[2] - time.time()) < 5
    assert len(nfc_lane.records("admission")) == 1


def test_a_recorded_answer_replayed_to_a_new_challenge_is_refused(nfc_lane, tickets, holder):
    cose = tickets.cose(holder_key=bytes(holder.verify_key), entries=0)  # unlimited entries: only the proof can refuse
    genuine = GT1Phone(nfc_lane.nfc_port, cose, holder)
    assert tap(nfc_lane, genuine)["accepted"]
    nfc_lane.idle()
    copy = GT1Phone(nfc_lane.nfc_port, cose, behaviour="replay", recorded=genuine.answers[0])
    decision = tap(nfc_lane, copy, walks=None)
    assert not decision["accepted"] and decision["reason"] == "replayed_proof"
    nfc_lane.idle()
    # An answer sniffed without ever being used here: its signature is over someone else's nonce.
    sniffed = GT1Phone(nfc_lane.nfc_port, cose, holder)
    recorded = sniffed.answer(b"\x00" * 16, "lane-1")
    decision = tap(nfc_lane, GT1Phone(nfc_lane.nfc_port, cose, behaviour="replay", recorded=recorded), walks=None)
    assert decision["reason"] == "bad_signature"
    assert nfc_lane.pulses("unlock_in") == 1


def test_a_holder_bound_ticket_answered_without_proof_is_stale(nfc_lane, tickets, holder):
    bound = tickets.cose(holder_key=bytes(holder.verify_key))
    decision = tap(nfc_lane, GT1Phone(nfc_lane.nfc_port, bound, holder, behaviour="static"), walks=None)
    assert decision["reason"] == "stale_proof"
    nfc_lane.idle()
    plain = tickets.cose()  # no holder key: [cose] alone is the whole answer
    assert tap(nfc_lane, GT1Phone(nfc_lane.nfc_port, plain))["accepted"]


@pytest.mark.parametrize("uri", [False, True], ids=["text-record", "uri-record"])
def test_a_static_ticket_on_a_tag_opens_the_lane(nfc_lane, tickets, uri):
    text = tickets.static()
    record = f"https://tickets.example/t#{text}" if uri else text
    decision = tap(nfc_lane, NdefTag(nfc_lane.nfc_port, record, uri=uri))
    assert decision["accepted"] and decision["source"] == "nfc"
    assert len(nfc_lane.records("admission")) == 1


def test_a_holder_bound_ticket_on_a_static_tag_is_stale_proof(nfc_lane, tickets, holder):
    text = gt1.encode_static(tickets.cose(holder_key=bytes(holder.verify_key)))
    decision = tap(nfc_lane, NdefTag(nfc_lane.nfc_port, text), walks=None)
    assert decision["reason"] == "stale_proof" and nfc_lane.pulses("unlock_in") == 0


def test_junk_answers_and_torn_taps_leave_the_lane_working(nfc_lane, tickets, holder):
    cose = tickets.cose(holder_key=bytes(holder.verify_key))
    junk = tap(nfc_lane, GT1Phone(nfc_lane.nfc_port, cose, holder, behaviour="junk"), walks=None)
    assert junk["reason"] == "unreadable" and not junk["accepted"]
    failed = nfc_lane.daemon.readers.nfc.failed_taps
    assert tap(nfc_lane, GT1Phone(nfc_lane.nfc_port, cose, holder, behaviour="torn"), walks=None) is None
    wait_until(lambda: nfc_lane.daemon.readers.nfc.failed_taps == failed + 1)
    assert tap(nfc_lane, GT1Phone(nfc_lane.nfc_port, cose, holder, behaviour="wrong_status"), walks=None) is None
    wait_until(lambda: nfc_lane.daemon.readers.nfc.failed_taps == failed + 2)
    assert tap(nfc_lane, NdefTag(nfc_lane.nfc_port, "just a note, no ticket"), walks=None) is None
    nfc_lane.idle()
    assert tap(nfc_lane, GT1Phone(nfc_lane.nfc_port, cose, holder))["accepted"], "the next good tap opens"
    assert nfc_lane.pulses("unlock_in") == 1
    status = nfc_lane.daemon.readers.status()["nfc"]
    assert status["connected"] and status["failed"] == failed + 3
