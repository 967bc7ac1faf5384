"""The NFC reader through nfcpy: any reader nfcpy drives (RC-S380, PN532 over UART, ACR122U),
or nfcpy's ``udp`` driver, where the simulator's phone answers.

Two things can be tapped (DESIGN §4):

- a phone in card emulation (ISO-DEP, Type 4A) holding a GT1 ticket: SELECT the GT1 AID, send
  a challenge ``[nonce, gate_id, t]`` with a fresh 16-byte nonce, and take its answer
  ``[cose, t, sig]`` (or ``[cose]``) as it is: verifying it is the decision loop's job, with the
  nonce and gate id that were sent;
- an NFC tag with an NDEF text or URI record holding a static ``GT1:`` ticket: read as a scan.

One tap is one read: after it, the reader waits until the phone or tag has left the field. A tap
that goes wrong (pulled away mid-exchange, a timeout, an answer that is not what was asked) is
logged and ignored, and the reader goes on polling. The reader is reopened when it disappears.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from typing import Any, Callable

import cbor2

from drivers.reader_thread import ReaderThread

log = logging.getLogger(__name__)

GT1_AID = bytes.fromhex("F04741544531")
SELECT_BY_NAME = (0x00, 0xA4, 0x04, 0x00)
GT1_CHALLENGE = (0x80, 0x10, 0x00, 0x00)
STATUS_OK = b"\x90\x00"
NONCE_BYTES = 16
MAX_ANSWER = 4096  # a GT1 credential and its proof fit in well under 1 kB
MAX_RECORD_TEXT = 4096


class NfcUnavailable(RuntimeError):
    """nfcpy is not installed, or the configured reader cannot be opened."""


class TapRefused(Exception):
    """The phone or tag answered something that is not a GT1 exchange; the text says what."""


def ticket_text(record: Any) -> str | None:
    """The ``GT1:`` text of an NDEF text or URI record (a URI may carry it after any prefix,
    e.g. ``https://tickets.example/t#GT1:...``); None for any other record."""
    value = getattr(record, "text", None)
    if value is None:
        value = getattr(record, "iri", None) or getattr(record, "uri", None)
    if not isinstance(value, str) or len(value) > MAX_RECORD_TEXT:
        return None
    start = value.find("GT1:")
    return value[start:] if start >= 0 else None


def _frontend(device: str) -> Any:
    """nfcpy's ContactlessFrontend whose exchanges end at a deadline: a card that asks for
    waiting-time extensions forever (nfcpy grants every one) cannot hold the reader."""
    import nfc.clf

    class DeadlineFrontend(nfc.ContactlessFrontend):
        deadline: float | None = None

        def exchange(self, send_data: Any, timeout: float) -> Any:
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise nfc.clf.TimeoutError("the tap took longer than exchange_timeout")
            return super().exchange(send_data, timeout)

    return DeadlineFrontend(device)


class NfcReader(ReaderThread):
    kind = "nfc reader"

    def __init__(
        self,
        device: str,
        gate_id: str,
        on_text: Callable[[str, float], None],
        on_answer: Callable[[bytes, bytes, str, float], None],
        *,
        exchange_timeout: float = 1.0,
        reconnect_interval: float = 2.0,
        wall_clock: Callable[[], float] = time.time,
        name: str = "nfc",
    ) -> None:
        super().__init__(device, reconnect_interval, name)
        self.gate_id = gate_id
        self.on_text = on_text  # (GT1 text from a tag, tap began [monotonic])
        self.on_answer = on_answer  # (phone's answer, nonce sent, gate id sent, tap began)
        self.exchange_timeout = exchange_timeout
        self.wall_clock = wall_clock
        self.taps = 0
        self.failed_taps = 0

    def start(self) -> None:
        try:
            importlib.import_module("nfc.clf")  # fail at start-up, not in the thread
        except ImportError as exc:
            raise NfcUnavailable(f"nfcpy is not installed ({exc}); pip install nfcpy") from None
        super().start()

    def open(self) -> Any:
        return _frontend(self.device)

    def use(self, frontend: Any) -> None:
        options = {
            "targets": ["106A"],  # ISO-DEP phones and the NFC-A tags tickets are written to
            "on-connect": self._on_tag,
            "iterations": 1,
            "interval": 0.05,
            "beep-on-connect": False,
        }
        while not self._stop.is_set():
            try:
                result = frontend.connect(rdwr=options, terminate=self._stop.is_set)
            except Exception:  # nfcpy on a misbehaving reader or card: log, reopen
                log.exception("nfc reader failed, reopening device=%s", self.device)
                return
            if result is False:  # nfcpy's word for "the device is gone"
                log.warning("nfc reader lost device=%s", self.device)
                return

    def _on_tag(self, tag: Any) -> bool:
        """nfcpy calls this for each tap; True: wait until the phone or tag leaves the field."""
        began = time.monotonic()
        self.taps += 1
        tag.clf.deadline = began + self.exchange_timeout
        try:
            self._read(tag, began)
        except TapRefused as exc:
            self.failed_taps += 1
            log.warning("nfc tap ignored reason=%r tag=%s", str(exc), type(tag).__name__)
        except Exception as exc:  # nfcpy raises its own errors for torn taps and timeouts
            self.failed_taps += 1
            log.warning("nfc tap failed error=%s: %s tag=%s", type(exc).__name__, str(exc) or "-", type(tag).__name__)
        finally:
            tag.clf.deadline = None  # presence checks until it leaves are not bounded
        return True

    def _read(self, tag: Any, began: float) -> None:
        import nfc.tag.tt4

        if isinstance(tag, nfc.tag.tt4.Type4Tag) and self._select_gt1(tag):
            nonce = os.urandom(NONCE_BYTES)
            challenge = cbor2.dumps([nonce, self.gate_id, int(self.wall_clock())])
            response = tag.send_apdu(*GT1_CHALLENGE, challenge, mrl=256, check_status=False)
            if len(response) < 2 or bytes(response[-2:]) != STATUS_OK:
                raise TapRefused(f"phone refused the challenge (status {bytes(response[-2:]).hex() or 'none'})")
            answer = bytes(response[:-2])
            if not answer or len(answer) > MAX_ANSWER:
                raise TapRefused(f"answer of {len(answer)} bytes")
            self.on_answer(answer, nonce, self.gate_id, began)
            return
        ndef = tag.ndef
        if ndef is None:
            raise TapRefused("neither a GT1 phone nor a tag with NDEF data")
        for record in ndef.records:
            text = ticket_text(record)
            if text is not None:
                self.on_text(text, began)
                return
        raise TapRefused(f"no GT1 ticket among the tag's {len(ndef.records)} NDEF records")

    def _select_gt1(self, tag: Any) -> bool:
        response = tag.send_apdu(*SELECT_BY_NAME, GT1_AID, check_status=False)
        return bytes(response[-2:]) == STATUS_OK
