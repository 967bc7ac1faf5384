"""NFC: what is polled (``[nfc] targets``). A phone whose card emulation is ISO-DEP over Type B
is read like a Type A one, through the running lane, over nfcpy's ``udp`` driver (which senses
and emulates Type B and Type F); a FeliCa card is refused before a byte is sent to it, and
polling goes on."""

from __future__ import annotations

import queue
import threading
from typing import Any, Self

import pytest
from hwsim.phone import GT1Phone

from drivers.nfc_reader import FELICA_REFUSED, NfcReader, poll_targets
from gate import config as gate_config
from gate.errors import ConfigError
from tests.lane import test_nfc_cards
from tests.support.lanes import wait_until
from tests.support.nfc import free_udp_port

nfc_lane = test_nfc_cards.nfc_lane  # a lane with its NFC reader on the udp driver


class TypeBPhone(GT1Phone):
    technology = "106B"


class FelicaCard:
    """A FeliCa card in the field (nfcpy's udp driver, listening as 212F): it answers every
    SENSF_REQ with its IDm, PMm and system code until taken away."""

    SENSF_RES = bytes.fromhex("01" "012e4cc4d1a39c0a" "0100000000000000" "0003")

    def __init__(self, port: int) -> None:
        self.path = f"udp:localhost:{port}"
        self.commands: list[bytes] = []  # anything the reader sent past polling
        self._away = threading.Event()
        self._thread = threading.Thread(target=self._stay, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._away.set()
        self._thread.join(10)

    def _stay(self) -> None:
        import nfc
        import nfc.clf

        frontend = nfc.ContactlessFrontend(self.path)
        try:
            while not self._away.is_set():
                target = nfc.clf.LocalTarget("212F", sensf_res=bytearray(self.SENSF_RES))
                activated = frontend.listen(target, 0.5)
                if activated is not None:
                    self.commands.append(bytes(activated.tt3_cmd or b""))
        finally:
            frontend.close()


def test_a_phone_emulating_a_type_b_card_is_read(nfc_lane, tickets, holder):
    phone = TypeBPhone(nfc_lane.nfc_port, tickets.cose(holder_key=bytes(holder.verify_key)), holder)
    nfc_lane.turnstile.person("in", True)
    assert phone.present(0.3, timeout=20), "the reader never activated the Type B phone"
    decision = nfc_lane.decisions.get(timeout=20)
    assert decision["accepted"] and decision["source"] == "nfc" and decision["details"]["proof"] == "nfc"
    wait_until(lambda: nfc_lane.pulses("unlock_in") == 1)
    assert len(phone.challenges) == 1 and phone.challenges[0][1] == "lane-1"


def test_a_felica_card_is_refused_and_the_next_phone_is_read(tickets, holder):
    port = free_udp_port()
    answers: queue.Queue[tuple[bytes, bytes, str]] = queue.Queue()
    reader = NfcReader(f"udp:localhost:{port}", "lane-1", lambda text, began: None,
                       lambda answer, nonce, gate_id, began: answers.put((answer, nonce, gate_id)),
                       exchange_timeout=0.5, poll_interval=0.02, targets=["212F", "106A"])
    reader.start()
    try:
        with FelicaCard(port) as felica:
            wait_until(lambda: reader.failed_taps >= 1, timeout=30)
            status = reader.status()
            assert status["connected"] and status["last_error"] == f"tap refused: {FELICA_REFUSED}"
        assert felica.commands == [], "nothing is sent to a FeliCa card past polling"
        assert reader.taps == 0
        phone = GT1Phone(port, tickets.cose(holder_key=bytes(holder.verify_key)), holder)
        assert phone.present(0.3, timeout=20), "polling stopped after the FeliCa card"
        answer, nonce, gate_id = answers.get(timeout=20)
        assert answer == phone.answers[0] and gate_id == "lane-1" and len(nonce) == 16
    finally:
        reader.stop()


class FakeFelica:
    """What nfcpy hands ``on-discover`` for a FeliCa card (a RemoteTarget with its SENSF_RES)."""

    sel_res = None
    sensb_res = None

    def __init__(self, idm: bytes) -> None:
        self.sensf_res = bytearray(b"\x01" + idm + bytes(8) + b"\x00\x03")


def test_a_felica_card_held_on_the_reader_is_refused_once_per_stay():
    reader = NfcReader("udp:localhost:1", "lane-1", lambda *a: None, lambda *a: None, targets=["212F"])
    frontend = type("Frontend", (), {"deadline": None})()
    card = FakeFelica(bytes.fromhex("012e4cc4d1a39c0a"))
    for _poll in range(5):  # found at every poll while it stays
        assert reader._on_discover(frontend, card) is False
    assert reader.failed_taps == 1 and reader.status()["last_error"] == f"tap refused: {FELICA_REFUSED}"
    assert frontend.deadline is None, "no tap is begun"
    assert reader._on_discover(frontend, FakeFelica(bytes.fromhex("012e4cc4d1a39c0b"))) is False
    assert reader.failed_taps == 2, "another card is another refusal"


def test_the_configured_targets_are_what_nfcpy_polls():
    reader = NfcReader("udp:localhost:1", "lane-1", lambda *a: None, lambda *a: None, targets=["106B", "212F"])
    seen: list[dict[str, Any]] = []

    class Frontend:
        def connect(self, rdwr: dict[str, Any], terminate: Any) -> bool:
            seen.append(rdwr)
            reader._stop.set()
            return True

    reader.use(Frontend())
    assert seen[0]["targets"] == ["106B", "212F"]
    assert NfcReader("usb", "lane-1", lambda *a: None, lambda *a: None).targets == ("106A", "106B")


def test_the_targets_are_read_from_the_config_and_a_typo_fails(config_data):
    config_data["nfc"] = {"device": "usb"}
    assert gate_config.parse(config_data).nfc.targets == ("106A", "106B")
    config_data["nfc"] = {"device": "usb", "targets": ["106A", "106B", "212F"]}
    assert gate_config.parse(config_data).nfc.targets == ("106A", "106B", "212F")
    for wrong, named in ((["106A", "212f"], "212f"), (["106C"], "106C"), ([], "non-empty"),
                         (["106A", "106A"], "each target once"), ("106A", "list of strings")):
        config_data["nfc"] = {"device": "usb", "targets": wrong}
        with pytest.raises(ConfigError, match=f"nfc.targets.*{named}"):
            gate_config.parse(config_data)
    config_data["nfc"] = {"device": "usb", "target": ["106A"]}
    with pytest.raises(ConfigError, match="nfc.target: unknown key"):
        gate_config.parse(config_data)
    with pytest.raises(ValueError, match="unknown target '424A'"):
        poll_targets(["424A"])

