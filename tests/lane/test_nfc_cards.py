"""NFC: cards of other makes and hostile cards against the gate's real NFC driver (nfcpy's reader
side) over nfcpy's ``udp`` driver, through the running lane: a card that asks to be waited for
minutes, the minimal legal ATS, phones answering SAK 0x60, and a strict ISO 7816 phone that hands
a long answer out in 256-byte parts (``61xx`` and GET RESPONSE)."""

from __future__ import annotations

import queue
from typing import Any

import pytest
from hwsim.phone import FWI, EmulatedCard, GT1Phone, IsoDepCard

from gate import config as gate_config
from gate.errors import ConfigError
from tests.support.lanes import wait_until
from tests.support.nfc import free_udp_port

WTX_MULTIPLIER = 59  # the largest ISO/IEC 14443-4 allows: 59 × FWT (4.9 s at FWI 14) ≈ 292 s in one wait


@pytest.fixture
def nfc_lane(start_lane, config_data):
    port = free_udp_port()
    config_data["nfc"] = {"device": f"udp:localhost:{port}", "exchange_timeout": 0.5, "poll_interval": 0.02}
    lane = start_lane(config_data)
    lane.nfc_port = port
    assert lane.daemon.readers.nfc.connected.wait(5)
    return lane


def tap(lane: Any, card: EmulatedCard, seconds: float = 0.3) -> dict[str, Any] | None:
    """Someone taps ``card`` on the reader; the lane's decision for it (None: no decision)."""
    lane.turnstile.person("in", True)
    assert card.present(seconds, timeout=20), "the reader never activated the card"
    try:
        return lane.decisions.get(timeout=20)
    except queue.Empty:
        return None


class StallingIsoDep(IsoDepCard):
    """Asks the reader to wait 59 × its frame waiting time, then says nothing more."""

    def _answer(self, command: bytes) -> bytes | None:
        if command[0] == 0xE0:
            return self.ats
        if command[0] & 0xE2 == 0x02 and not getattr(self, "asked", False):  # the first I-block (SELECT)
            self.asked = True
            return bytes([0xF2, WTX_MULTIPLIER])  # S(WTX)
        return None  # silent: no answer, no presence


class StallingCard(EmulatedCard):
    ats = bytes([0x05, 0x78, 0x80, 0xE0, 0x00])  # FWI 14: the longest frame waiting time, 4.9 s
    iso_dep = StallingIsoDep


class StallingTypeB(StallingIsoDep):
    """The same, activated over Type B (ATTRIB) as some phones' card emulation is."""

    def _answer(self, command: bytes) -> bytes | None:
        return b"\x00" if command[0] == 0x1D else super()._answer(command)  # ATTRIB → MBLI 0, CID 0


class StallingTypeBCard(EmulatedCard):
    technology = "106B"  # polled by default ([nfc] targets); its FWI comes from its SENSB_RES
    iso_dep = StallingTypeB


class StrictPhone(GT1Phone):
    """A phone that answers at most 256 bytes at a time (short APDUs, ISO/IEC 7816-4): the rest
    waits behind ``61xx`` for GET RESPONSE."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.rest = b""
        self.final = b""
        self.get_responses = 0

    def handle(self, apdu: bytes) -> bytes | None:
        if apdu[:2] == b"\x00\xc0":  # GET RESPONSE, Le = how much
            self.get_responses += 1
            size = (apdu[4] if len(apdu) > 4 else 0) or 256
            part, self.rest = self.rest[:size], self.rest[size:]
            return part + self._status()
        answer = super().handle(apdu)
        if answer is None or len(answer) <= 258:
            return answer
        self.rest, self.final = answer[256:-2], answer[-2:]
        return answer[:256] + self._status()

    def _status(self) -> bytes:
        if not self.rest:
            return self.final
        return bytes([0x61, len(self.rest) if len(self.rest) < 256 else 0])


@pytest.mark.parametrize("card", [StallingCard, StallingTypeBCard], ids=["type-A", "type-B"])
def test_a_card_that_asks_to_be_waited_for_minutes_is_let_go_at_the_tap_deadline(nfc_lane, tickets, holder, card):
    staller = card(nfc_lane.nfc_port)
    assert staller.present(20, timeout=20), "the reader never activated the card"
    # Held on the reader for 20 s more unless the reader gives up on it (nfcpy alone waits ~292 s).
    assert staller.last_end == "reader let go"
    reader = nfc_lane.daemon.readers.nfc
    wait_until(lambda: reader.failed_taps == 1)
    status = nfc_lane.daemon.readers.status()["nfc"]
    assert status["connected"] and "no answer within exchange_timeout (0.5 s)" in status["last_error"]
    cose = tickets.cose(holder_key=bytes(holder.verify_key))
    decision = tap(nfc_lane, GT1Phone(nfc_lane.nfc_port, cose, holder))
    assert decision is not None and decision["accepted"], "the next phone is read"
    assert nfc_lane.pulses("unlock_in") == 1


@pytest.mark.parametrize("ats", [b"\x01", b"\x02\x08", b"\x03\x28" + bytes([FWI << 4])],
                         ids=["TL-alone", "T0-without-interface-bytes", "TB-without-TA"])
def test_a_phone_with_a_minimal_ats_is_read(nfc_lane, tickets, holder, ats):
    phone = GT1Phone(nfc_lane.nfc_port, tickets.cose(holder_key=bytes(holder.verify_key)), holder)
    phone.ats = ats
    decision = tap(nfc_lane, phone)
    assert decision is not None and decision["accepted"] and decision["details"]["proof"] == "nfc"
    assert nfc_lane.daemon.readers.status()["nfc"]["last_error"] is None, "no error, no reader restart"


def test_a_phone_answering_sak_0x60_is_read(nfc_lane, tickets, holder):
    phone = GT1Phone(nfc_lane.nfc_port, tickets.cose(holder_key=bytes(holder.verify_key)), holder)
    phone.sel_res = 0x60  # ISO-DEP and NFC-DEP, as phones announce themselves
    decision = tap(nfc_lane, phone)
    assert decision is not None and decision["accepted"] and decision["source"] == "nfc"


def test_a_long_answer_handed_out_by_get_response_is_put_together(nfc_lane, tickets, holder):
    cose = tickets.cose(holder_key=bytes(holder.verify_key), issuer="Example Tickets GmbH, Konzertkasse, Abendkasse Nord 2",
                        product="weekend-pass-standing-with-cloakroom", zones=["hall-a", "hall-b", "balcony", "vip-lounge"])
    phone = StrictPhone(nfc_lane.nfc_port, cose, holder)
    decision = tap(nfc_lane, phone)
    assert len(phone.answers[0]) == 368 and phone.get_responses == 1
    assert decision is not None and decision["accepted"] and decision["details"]["proof"] == "nfc"


def test_polls_and_errors_show_on_the_reader_status(nfc_lane):
    reader = nfc_lane.daemon.readers.nfc
    wait_until(lambda: nfc_lane.daemon.readers.status()["nfc"]["last_activity_age_s"] is not None)
    status = nfc_lane.daemon.readers.status()["nfc"]
    assert status["connected"] and status["last_error"] is None and status["last_activity_age_s"] < 30
    assert reader.poll_interval == 0.02


def test_the_poll_interval_is_read_from_the_config_and_a_typo_fails(config_data):
    config_data["nfc"] = {"device": "usb", "poll_interval": 0.1}
    assert gate_config.parse(config_data).nfc.poll_interval == 0.1
    config_data["nfc"] = {"device": "usb"}
    assert gate_config.parse(config_data).nfc.poll_interval == 0.05
    config_data["nfc"] = {"device": "usb", "poll_intervall": 0.1}
    with pytest.raises(ConfigError, match="poll_intervall"):
        gate_config.parse(config_data)


def test_an_ats_is_read_by_its_own_length_and_format_bytes():
    from drivers.nfc_reader import full_ats

    assert full_ats(b"\x01") == bytes.fromhex("0572004002")  # FSCI 2, FWI 4: ISO/IEC 14443-4's defaults
    assert full_ats(b"\x05\x78\x80\x70\x02") == b"\x05\x78\x80\x70\x02"  # already whole
    assert full_ats(b"\x04\x48\x01\xc1") == bytes.fromhex("0678004001c1")  # TC alone, then a historical byte
    assert full_ats(b"\x03\x28\x70") == bytes.fromhex("0578007002")
    for wrong in (b"", b"\x05\x78", b"\x02\x78", b"\x03\x78\x80\x70"):
        with pytest.raises(ValueError):
            full_ats(wrong)
