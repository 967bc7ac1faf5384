"""A simulated phone (and NFC tag) on nfcpy's ``udp`` driver, for the gate's real NFC driver.

The phone is nfcpy in card emulation: ``ContactlessFrontend.listen`` as an NFC-A target that
announces ISO-DEP (or an NFC-B one, ``technology = "106B"``, as some phones' card emulation is),
then ISO/IEC 14443-4 from the card's side (``IsoDepCard``: RATS → ATS or ATTRIB → its answer,
I-blocks with chaining both ways, R(NAK) presence checks, DESELECT) carrying ISO 7816-4 APDUs.
nfcpy emulates only Type 3 tags itself, so the card's half of ISO-DEP is written here; the
reader's half is nfcpy's own, unchanged.

- ``GT1Phone`` answers the GT1 exchange (DESIGN §4) with a holder key, or misbehaves on
  purpose (``behaviour``): replays a recorded answer, answers junk, is pulled away mid-tap.
- ``NdefTag`` is a Type 4 tag with an NDEF file (one text or URI record), as a static ticket
  written to a sticker or card would be read.

``present(seconds)`` is one tap: the phone comes into the field, is read, stays ``seconds``,
and leaves (it stops answering, as a phone taken away does).
"""

from __future__ import annotations

import logging
import struct
import time
from typing import Any, Callable

import cbor2

log = logging.getLogger(__name__)

GT1_AID = bytes.fromhex("F04741544531")
NDEF_AID = bytes.fromhex("D2760000850101")
OK = b"\x90\x00"
NOT_FOUND = b"\x6a\x82"
WRONG_INS = b"\x6d\x00"
FSCI = 8  # frames up to 256 bytes
FWI = 7  # frame waiting time 4096/13.56 MHz · 2^7 ≈ 39 ms
MAX_INF = 253  # 256 - PCB - 2 bytes of CRC
MAX_STAY = 3.0  # a card the reader never finishes with is taken away after this (beyond the tap)


class IsoDepCard:
    """The card's side of ISO-DEP over an nfcpy frontend activated as a Type A target."""

    ATS = bytes([0x05, 0x70 | FSCI, 0x80, FWI << 4, 0x00])  # FSCI, no bit-rate change, FWI, no NAD/CID

    def __init__(self, frontend: Any, handle_apdu: Callable[[bytes], bytes | None], ats: bytes = ATS) -> None:
        self.frontend = frontend
        self.handle_apdu = handle_apdu  # APDU → response with status word; None: taken away now
        self.ats = ats
        self.gone = False
        self._chained: list[bytes] = []  # a command the reader sends in parts
        self._pending: list[bytes] = []  # the parts of our answer not sent yet

    def serve(self, first: bytes, leaving: Callable[[], bool], poll: float = 0.1) -> str:
        """Answer the reader from its first command (RATS) on, until we leave; returns why it ended."""
        import nfc.clf

        to_send = self._answer(bytes(first))
        while not leaving():
            if self.gone:
                return "taken away mid-exchange"
            try:
                command = self.frontend.exchange(None if to_send is None else bytearray(to_send), poll)
            except nfc.clf.TimeoutError:  # the reader is quiet: stay in the field, say nothing
                to_send = None
                continue
            except nfc.clf.CommunicationError:
                return "reader let go"
            if not command:
                return "reader let go"
            to_send = self._answer(bytes(command))
        return "left the field"

    def _answer(self, command: bytes) -> bytes | None:
        pcb = command[0]
        if pcb == 0xE0:  # RATS → ATS
            return self.ats
        if pcb == 0x1D and len(command) >= 9:  # ATTRIB (Type B activation) → MBLI 0, CID 0
            return b"\x00"
        if pcb & 0xF6 == 0xA2 and self._pending:  # R(ACK): the next part of our answer
            return self._next_block(pcb & 1)
        if pcb & 0xE2 == 0x02:  # I-block
            self._chained.append(command[1:])
            if pcb & 0x10:  # more to come: acknowledge this part
                return bytes([0xA2 | (pcb & 1)])
            apdu = b"".join(self._chained)
            self._chained.clear()
            answer = self.handle_apdu(apdu)
            if answer is None:
                self.gone = True
                return None
            self._pending = [answer[i : i + MAX_INF] for i in range(0, len(answer), MAX_INF)] or [b""]
            return self._next_block(pcb & 1)
        if pcb & 0xF6 == 0xB2:  # R(NAK): a presence check
            return bytes([0xA2 | (pcb & 1)])
        if pcb & 0xF7 == 0xC2:  # S(DESELECT)
            return bytes([pcb])
        return None

    def _next_block(self, number: int) -> bytes:
        part = self._pending.pop(0)
        return bytes([(0x12 if self._pending else 0x02) | number]) + part


class EmulatedCard:
    """Something the reader can tap: listens on nfcpy's udp driver, serves one ISO-DEP session.
    A card of another make changes what it announces (``sel_res``, ``ats``) or how it speaks
    ISO-DEP (``iso_dep``, an ``IsoDepCard`` subclass)."""

    technology = "106A"  # or "106B": announced with SENSB_RES, activated by ATTRIB
    sel_res = 0x20  # SAK: ISO-DEP
    ats = IsoDepCard.ATS
    iso_dep = IsoDepCard

    def __init__(self, port: int, host: str = "localhost", uid: bytes = b"\x08\x12\x34\x56") -> None:
        self.path = f"udp:{host}:{port}"
        self.uid = uid
        self.apdus: list[bytes] = []
        self.last_end = ""
        self.activated_at: float | None = None

    def handle(self, apdu: bytes) -> bytes | None:
        """A card that knows no command (the phone and the tag below know theirs)."""
        return WRONG_INS

    def present(self, seconds: float = 0.5, timeout: float = 5.0) -> bool:
        """One tap: wait up to ``timeout`` for the reader's poll, be read, stay ``seconds`` in
        the field (answering its presence checks), leave. True when the reader activated us."""
        import nfc
        import nfc.clf

        frontend = nfc.ContactlessFrontend(self.path)
        try:
            target = self._local_target()
            deadline = time.monotonic() + timeout
            activation = 0x1D if self.technology == "106B" else 0xE0  # ATTRIB or RATS
            while True:  # until a reader polls and activates us; stray frames are not that
                activated = frontend.listen(target, max(0.05, deadline - time.monotonic()))
                if activated is not None and activated.tt4_cmd and activated.tt4_cmd[0] == activation:
                    break
                if time.monotonic() >= deadline:
                    return False
            self.activated_at = time.monotonic()
            leave_at = [self.activated_at + seconds + MAX_STAY]  # whatever happens, it leaves

            def leaving() -> bool:
                return time.monotonic() >= leave_at[0]

            def handle(apdu: bytes) -> bytes | None:
                self.apdus.append(apdu)
                answer = self.handle(apdu)
                if self.read_complete():
                    leave_at[0] = min(leave_at[0], time.monotonic() + seconds)
                return answer

            self.last_end = self.iso_dep(frontend, handle, self.ats).serve(activated.tt4_cmd, leaving)
            return True
        finally:
            frontend.close()

    def read_complete(self) -> bool:
        """Has the reader got what it came for (from then on, ``seconds`` until we leave)?"""
        return True

    def _local_target(self) -> Any:
        import nfc.clf

        target = nfc.clf.LocalTarget(self.technology)
        if self.technology == "106B":
            # SENSB_RES: PUPI, application data, protocol info (bit rates, FSCI | ISO 14443-4, FWI)
            target.sensb_res = bytearray([0x50, *self.uid[:4], 0, 0, 0, 0, 0x00, FSCI << 4 | 0x01, FWI << 4])
            return target
        target.sens_res = bytearray.fromhex("0400")
        target.sdd_res = bytearray(self.uid)
        target.sel_res = bytearray([self.sel_res])
        return target


def _apdu(apdu: bytes) -> tuple[int, int, bytes]:
    """(CLA·INS as one int, P1P2 ignored, data) of a short APDU."""
    if len(apdu) < 4:
        raise ValueError("short APDU")
    head = apdu[0] << 8 | apdu[1]
    data = b""
    if len(apdu) > 5:
        length = apdu[4]
        data = apdu[5 : 5 + length]
    return head, 0, data


class GT1Phone(EmulatedCard):
    """A phone with a GT1 ticket in its wallet app.

    ``behaviour``: "good"; "replay" (answers with ``recorded`` whatever the challenge);
    "junk" (answers bytes that are not CBOR); "wrong_status" (refuses the challenge);
    "torn" (taken away after the SELECT, before answering); "static" (answers [cose] alone).
    """

    def __init__(self, port: int, cose: bytes, holder_key: Any = None, behaviour: str = "good",
                 recorded: bytes | None = None, clock: Callable[[], float] = time.time, **kw: Any) -> None:
        super().__init__(port, **kw)
        self.cose = cose
        self.holder_key = holder_key  # nacl SigningKey, None for a ticket without "hk"
        self.behaviour = behaviour
        self.recorded = recorded
        self.clock = clock
        self.selected = False
        self.challenges: list[list[Any]] = []
        self.answers: list[bytes] = []

    def read_complete(self) -> bool:
        return bool(self.answers) or self.behaviour in ("torn", "wrong_status") and self.selected

    def handle(self, apdu: bytes) -> bytes | None:
        head, _, data = _apdu(apdu)
        if head == 0x00A4:
            self.selected = data == GT1_AID
            return OK if self.selected else NOT_FOUND
        if head == 0x8010 and self.selected:
            if self.behaviour == "torn":
                return None  # gone before the answer
            if self.behaviour == "wrong_status":
                return b"\x69\x85"
            nonce, gate_id, _t = cbor2.loads(data)
            self.challenges.append([nonce, gate_id, _t])
            answer = self.answer(nonce, gate_id)
            self.answers.append(answer)
            return answer + OK
        return WRONG_INS

    def answer(self, nonce: bytes, gate_id: str) -> bytes:
        if self.behaviour == "replay" and self.recorded is not None:
            return self.recorded
        if self.behaviour == "junk":
            return b"\xff\x00 not a ticket \x9f"
        if self.behaviour == "static" or self.holder_key is None:
            return cbor2.dumps([self.cose])
        from gate.formats.gt1 import parse_claims, parse_sign1  # a wallet app knows its ticket's id

        cti = parse_claims(parse_sign1(self.cose).payload).cti
        drawn_at = int(self.clock())
        message = b"GT1N" + cti + struct.pack(">Q", drawn_at) + nonce + gate_id.encode()
        return cbor2.dumps([self.cose, drawn_at, self.holder_key.sign(message).signature])


class NdefTag(EmulatedCard):
    """A Type 4 tag (NFC Forum T4T v2.0) with one NDEF record: a text, or a URI."""

    def __init__(self, port: int, text: str, uri: bool = False, **kw: Any) -> None:
        super().__init__(port, **kw)
        import ndef

        record = ndef.UriRecord(text) if uri else ndef.TextRecord(text)
        message = b"".join(ndef.message_encoder([record]))
        self.files = {
            0xE104: struct.pack(">H", len(message)) + message,
        }
        # Capability container: mapping 2.0, MLe 59, MLc 52, NDEF file E104 of its size, read-only.
        self.files[0xE103] = bytes.fromhex("000F20003B00340406E104") + struct.pack(">H", len(self.files[0xE104])) + b"\x00\xff"
        self.app_selected = False
        self.file: int | None = None
        self.read_ndef = False

    def read_complete(self) -> bool:
        return self.read_ndef

    def handle(self, apdu: bytes) -> bytes | None:
        head, _, data = _apdu(apdu)
        if head == 0x00A4:
            if apdu[2] == 0x04:  # by name
                self.app_selected = data == NDEF_AID
                return OK if self.app_selected else NOT_FOUND
            if self.app_selected and len(data) == 2 and (fid := int.from_bytes(data, "big")) in self.files:
                self.file = fid
                return OK
            return NOT_FOUND
        if head == 0x00B0 and self.file is not None:
            offset, length = apdu[2] << 8 | apdu[3], apdu[4] if len(apdu) > 4 else 256
            content = self.files[self.file]
            if self.file == 0xE104 and offset + length >= len(content):
                self.read_ndef = True
            return content[offset : offset + length] + OK
        return WRONG_INS

