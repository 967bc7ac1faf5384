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

What nfcpy leaves to the card, this reader does not (each is a case in tests/lane/test_nfc_cards.py):

- **Time.** nfcpy waits as long as the card says: its frame waiting time (FWT, up to 4.9 s by the
  ATS's FWI) for each frame, and FWT × the multiplier of each waiting-time extension the card
  asks for (S(WTX), up to 59: ~292 s in one wait; ``nfc/tag/tt4.py``, ``IsoDepInitiator``). Every
  exchange here is cut to what is left of the tap's own deadline (``exchange_timeout`` from the
  moment the card was found), and one exchange outside a tap (a presence check) to
  ``exchange_timeout`` too, whatever the card announced.
- **The ATS.** nfcpy reads FSCI at byte 1 and FWI at byte 3, as if T0, TA, TB and TC were always
  there (an IndexError on the legal minimal ATS, TL alone). The answer to RATS is read per
  ISO/IEC 14443-4 (T0 says which interface bytes follow; defaults for the missing ones) and
  handed to nfcpy in the full form it reads.
- **SAK 0x60.** nfcpy's default ``on-discover`` drops every target with bit 0x40 (NFC-DEP), yet
  phones answer 0x60: ISO-DEP *and* NFC-DEP. Only targets with NFC-DEP alone are dropped here.
- **Answers over 256 bytes.** A strict ISO 7816 card answers ``61xx`` (more to come) and the
  rest to GET RESPONSE; the parts are put together (up to ``MAX_ANSWER``).

Polling cadence (``[nfc] poll_interval``, from one poll's start to the next; see DEFAULT_POLL_INTERVAL).

What is polled (``[nfc] targets``, nfcpy's target strings; see DEFAULT_TARGETS): a phone's card
emulation is ISO-DEP over Type A on nearly all phones, over Type B on some; both go through the
same deadline-bounded exchange and the same answer handling. A FeliCa card (212F, 424F: no
ISO-DEP, so no gate app behind it) is refused when it is found, before a byte is sent to it,
once per stay in the field; polling goes on.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from typing import Any, Callable

import cbor2

from drivers.reader_thread import ReaderThread

log = logging.getLogger(__name__)

GT1_AID = bytes.fromhex("F04741544531")
SELECT_BY_NAME = (0x00, 0xA4, 0x04, 0x00)
GT1_CHALLENGE = (0x80, 0x10, 0x00, 0x00)
GET_RESPONSE = (0x00, 0xC0, 0x00, 0x00)
STATUS_OK = b"\x90\x00"
MORE_DATA = 0x61  # SW1 of "61xx": xx more bytes to fetch with GET RESPONSE (00: 256 or more)
NONCE_BYTES = 16
MAX_ANSWER = 4096  # a GT1 credential and its proof fit in well under 1 kB
MAX_RECORD_TEXT = 4096

# Polling cadence. A phone entering the field must be read within 150 ms on an RC-S380 or a
# PN532: worst case = the wait for the next poll (this interval) + activation + the exchange.
# From nfcpy's drivers: an RC-S380 poll with nothing there is one InCommRF with a 30 ms SENS_RES
# timeout (rcs380.py sense_tta: ~31 ms, ~35 ms with its USB round trips); a PN532 poll is one
# InListPassiveTarget with MxRtyPassiveActivation = 1 (pn532.py: a few ms, plus the UART frames).
# Found → anticollision and SEL (~5 ms), RATS (a phone answers in a few ms; nfcpy allows 30),
# SELECT and the challenge/answer: ~450 bytes at 106 kbit/s ≈ 40 ms on air, and on a PN532 at
# 115200 baud (the Pi's mini UART; nfcpy raises a PL011 to 921600) another ~40 ms on the wire.
# So: 50 ms + ~5 + ~5 + ~40…80 ≈ 100–140 ms, the rest for the phone's own answer time. Shorter
# intervals buy little on an RC-S380 (its poll alone is ~35 ms) and keep the field switching.
DEFAULT_POLL_INTERVAL = 0.05
TARGETS = ("106A", "106B", "212F", "424F")  # what [nfc] targets may name (nfcpy's bit rate + technology)
# Phones' host card emulation: ISO-DEP over Type A (nearly all), over Type B (some). FeliCa only
# where a venue asks for it: each target polled adds its own sense to every cycle (docs/readers.md).
DEFAULT_TARGETS = ("106A", "106B")
FELICA_REFUSED = "FeliCa tag: not a phone with the gate app"
REFUSAL_QUIET = 1.0  # s: a refused card still seen within this is the same stay in the field
MIN_ISO_DEP_WAIT = 0.05  # an ISO-DEP answer a few ms past a tiny FWT (a phone's HCE, the udp simulator) is still taken
READER_FAILURES_BEFORE_REOPEN = 5  # nfcpy raising this many times in a row: reopen the reader


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


def full_ats(ats: bytes) -> bytes:
    """The answer to RATS with every interface byte in place, as nfcpy reads it (TL, T0, TA, TB,
    TC, historical bytes). ISO/IEC 14443-4: T0 is optional (FSCI 2 without it) and its bits 5–7
    say whether TA, TB, TC follow; a missing TB means FWI 4, SFGI 0; a missing TC, CID supported.
    Raises ValueError for an answer that contradicts its own length bytes."""
    if not ats or ats[0] != len(ats):
        raise ValueError(f"ATS of {len(ats)} bytes says it has {ats[0] if ats else 'no'} bytes")
    t0 = ats[1] if len(ats) > 1 else 0x02
    interface = {0x10: 0x00, 0x20: 0x40, 0x40: 0x02}  # TA, TB, TC and their defaults
    position = 2
    for bit in interface:
        if t0 & bit:
            if position >= len(ats):
                raise ValueError("ATS shorter than its T0 says")
            interface[bit] = ats[position]
            position += 1
    historical = ats[position:]
    return bytes([5 + len(historical), 0x70 | t0 & 0x0F, *interface.values()]) + historical


def poll_targets(targets: Any) -> tuple[str, ...]:
    """The targets to poll, checked: a non-empty list of TARGETS without repeats, in the order
    given (nfcpy senses them in that order). Raises ValueError naming what is wrong."""
    if isinstance(targets, str) or not targets:
        raise ValueError(f"nfc targets: a non-empty list of {', '.join(TARGETS)}, got {targets!r}")
    for target in targets:
        if target not in TARGETS:
            raise ValueError(f"nfc targets: unknown target {target!r} (one of {', '.join(TARGETS)})")
    if len(set(targets)) != len(targets):
        raise ValueError(f"nfc targets: each target once, got {list(targets)!r}")
    return tuple(targets)


def is_felica(target: Any) -> bool:
    """A Type F target that is not NFC-DEP (a FeliCa card or a phone's FeliCa wallet)."""
    sensf_res = getattr(target, "sensf_res", None)
    return bool(sensf_res) and bytes(sensf_res[1:3]) != b"\x01\xfe"


def takes_target(target: Any) -> bool:
    """nfcpy's ``on-discover``, without dropping phones: a target with SAK bit 0x40 (NFC-DEP) is
    read when it also has 0x20 (ISO-DEP), as phones answer (SAK 0x60)."""
    sak = target.sel_res[0] if target.sel_res else None
    peer_to_peer_only = sak is not None and sak & 0x40 and not sak & 0x20  # nothing to read
    nfc_dep_over_f = bool(target.sensf_res) and target.sensf_res[1:3] == b"\x01\xfe"
    return not (peer_to_peer_only or nfc_dep_over_f)


_frontend_class: Any = None


def _frontend_type() -> Any:
    """nfcpy's ContactlessFrontend that keeps the lane's time (the module imports nfcpy lazily)."""
    global _frontend_class
    if _frontend_class is not None:
        return _frontend_class
    import nfc.clf

    class DeadlineFrontend(nfc.ContactlessFrontend):
        """Every exchange ends by the tap's ``deadline`` (or ``longest`` after it), however long
        the card asks to be waited for; polls keep ``poll_interval``; each poll and answered
        exchange calls ``on_activity``."""

        def __init__(self, path: str, *, longest: float, poll_interval: float, stopping: threading.Event,
                     on_activity: Callable[[], None], on_error: Callable[[str], None]) -> None:
            self.deadline: float | None = None
            self.longest = longest
            self.poll_interval = poll_interval
            self.stopping = stopping
            self.on_activity = on_activity
            self.on_error = on_error
            self._next_poll = 0.0
            super().__init__(path)

        def sense(self, *targets: Any, **options: Any) -> Any:
            if "iterations" in options:  # a poll from connect(), not a tag's own re-sense
                self.deadline = None
                self.stopping.wait(max(0.0, self._next_poll - time.monotonic()))
                self._next_poll = time.monotonic() + self.poll_interval
            found = super().sense(*targets, **options)
            self.on_activity()
            return found

        def exchange(self, send_data: Any, timeout: float | None) -> Any:
            limit = self.longest
            if self.deadline is not None:
                limit = self.deadline - time.monotonic()
                if limit <= 0:
                    raise nfc.clf.TimeoutError("the tap took longer than exchange_timeout")
            target = self.target
            if timeout and target is not None and (target.sensb_res or target.sel_res and target.sel_res[0] & 0x20):
                timeout = max(timeout, MIN_ISO_DEP_WAIT)
            answer = super().exchange(send_data, limit if timeout is None else min(timeout, limit))
            self.on_activity()
            if bytes(send_data[:1]) == b"\xe0" and len(send_data) == 2 and answer is not None:  # RATS → ATS
                try:
                    return bytearray(full_ats(bytes(answer)))
                except ValueError as exc:
                    self.on_error(f"card ignored: {exc}")
                    raise nfc.clf.ProtocolError(str(exc)) from None
            return answer

    _frontend_class = DeadlineFrontend
    return DeadlineFrontend


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
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        targets: Any = DEFAULT_TARGETS,
        reconnect_interval: float = 2.0,
        wall_clock: Callable[[], float] = time.time,
        name: str = "nfc",
    ) -> None:
        super().__init__(device, reconnect_interval, name)
        self.gate_id = gate_id
        self.on_text = on_text  # (GT1 text from a tag, tap began [monotonic])
        self.on_answer = on_answer  # (phone's answer, nonce sent, gate id sent, tap began)
        self.exchange_timeout = exchange_timeout
        self.poll_interval = poll_interval
        self.targets = poll_targets(targets)
        self.wall_clock = wall_clock
        self.taps = 0
        self.failed_taps = 0
        self._found_at = 0.0
        self._refused: tuple[bytes, float] | None = None  # (identifier, last seen) of a refused card

    def start(self) -> None:
        try:
            importlib.import_module("nfc.clf")  # fail at start-up, not in the thread
        except ImportError as exc:
            raise NfcUnavailable(f"nfcpy is not installed ({exc}); pip install nfcpy") from None
        super().start()

    def open(self) -> Any:
        return _frontend_type()(self.device, longest=self.exchange_timeout, poll_interval=self.poll_interval,
                                stopping=self._stop, on_activity=self.note_activity, on_error=self.note_error)

    def status(self) -> dict[str, Any]:
        return {**super().status(), "taps": self.taps, "failed": self.failed_taps}

    def use(self, frontend: Any) -> None:
        options = {
            "targets": list(self.targets),
            "on-discover": lambda target: self._on_discover(frontend, target),
            "on-connect": self._on_tag,
            "iterations": 1,  # the cadence is the frontend's (poll_interval)
            "beep-on-connect": False,
        }
        failures = 0
        while not self._stop.is_set():
            try:
                result = frontend.connect(rdwr=options, terminate=self._stop.is_set)
            except Exception as exc:  # nfcpy on a misbehaving card or reader: poll on; reopen if it persists
                failures += 1
                self.note_error(f"nfcpy failed: {type(exc).__name__}")
                log.warning("nfc poll failed error=%s: %s device=%s in_a_row=%d", type(exc).__name__, exc, self.device, failures,
                            exc_info=log.isEnabledFor(logging.DEBUG))
                if failures >= READER_FAILURES_BEFORE_REOPEN:
                    log.warning("nfc reader failing, reopening device=%s", self.device)
                    return
                continue
            failures = 0
            if result is False:  # nfcpy's word for "the device is gone"
                self.note_error("reader lost")
                log.warning("nfc reader lost device=%s", self.device)
                return

    def _on_discover(self, frontend: Any, target: Any) -> bool:
        """A card in the field: the tap's clock starts now, activation included."""
        if not takes_target(target):
            return False
        if is_felica(target):
            self._refuse(bytes(target.sensf_res[1:9]), FELICA_REFUSED)
            return False
        self._refused = None
        self._found_at = time.monotonic()
        frontend.deadline = self._found_at + self.exchange_timeout
        return True

    def _refuse(self, identifier: bytes, reason: str) -> None:
        """A card nothing is read from: counted and logged once while it stays in the field
        (it is found again at every poll)."""
        now = time.monotonic()
        seen_before = self._refused is not None and self._refused[0] == identifier and now - self._refused[1] < REFUSAL_QUIET
        self._refused = (identifier, now)
        if seen_before:
            return
        self.failed_taps += 1
        self.note_error(f"tap refused: {reason}")
        log.warning("nfc tap ignored reason=%r", reason)

    def _on_tag(self, tag: Any) -> bool:
        """nfcpy calls this for each tap; True: wait until the phone or tag leaves the field."""
        began = self._found_at or time.monotonic()
        self.taps += 1
        tag.clf.deadline = began + self.exchange_timeout
        try:
            self._read(tag, began)
        except TapRefused as exc:
            self.failed_taps += 1
            self.note_error(f"tap refused: {exc}")
            log.warning("nfc tap ignored reason=%r tag=%s", str(exc), type(tag).__name__)
        except Exception as exc:  # nfcpy raises its own errors for torn taps and timeouts
            self.failed_taps += 1
            what = self._failure(exc, tag.clf.deadline)
            self.note_error(f"tap failed: {what}")
            log.warning("nfc tap failed error=%s tag=%s", what, type(tag).__name__)
        finally:
            tag.clf.deadline = None  # presence checks until it leaves: each bounded by exchange_timeout
            self._found_at = 0.0
        return True

    def _failure(self, exc: Exception, deadline: float | None) -> str:
        """What went wrong, in words that hold nothing the card sent."""
        import nfc.clf
        import nfc.tag

        if deadline is not None and time.monotonic() >= deadline:
            return f"no answer within exchange_timeout ({self.exchange_timeout:g} s)"
        if isinstance(exc, (nfc.clf.CommunicationError, nfc.tag.TagCommandError)):
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return type(exc).__name__

    def _read(self, tag: Any, began: float) -> None:
        import nfc.tag.tt4

        if isinstance(tag, nfc.tag.tt4.Type4Tag) and self._select_gt1(tag):
            nonce = os.urandom(NONCE_BYTES)
            challenge = cbor2.dumps([nonce, self.gate_id, int(self.wall_clock())])
            answer, status = self._command(tag, GT1_CHALLENGE, challenge)
            if status != STATUS_OK:
                raise TapRefused(f"phone refused the challenge (status {status.hex() or 'none'})")
            if not answer:
                raise TapRefused("empty answer")
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
        _fci, status = self._command(tag, SELECT_BY_NAME, GT1_AID, expect=0)
        return status == STATUS_OK

    def _command(self, tag: Any, head: tuple[int, int, int, int], data: bytes, expect: int = 256) -> tuple[bytes, bytes]:
        """Send one APDU; (the whole answer, its final status word). ``61xx`` answers (ISO 7816-4:
        more to come) are followed by GET RESPONSE until the card says something else; the parts
        of the answer, with data or without, are put together."""
        response = tag.send_apdu(*head, data, mrl=expect, check_status=False)
        answer = bytearray()
        for _ in range(MAX_ANSWER // 256 + 2):
            if len(response) < 2:
                raise TapRefused("answer without a status word")
            answer += response[:-2]
            if len(answer) > MAX_ANSWER:
                raise TapRefused(f"answer of more than {MAX_ANSWER} bytes")
            status = bytes(response[-2:])
            if status[0] != MORE_DATA:
                return bytes(answer), status
            response = tag.send_apdu(*GET_RESPONSE, None, mrl=status[1] or 256, check_status=False)
        raise TapRefused("GET RESPONSE never ended")
