"""The lane's ticket readers (serial scanner, camera, NFC), started from the config's tables and
feeding the decision loop. A reader that cannot start (no camera, no NFC reader, a missing
library) is reported and left out: the lane goes on with the readers it has, rather than not at
all."""

from __future__ import annotations

import logging
from typing import Any, Callable

from gate.clock import Clock
from gate.lane.hardware import HardwareProvider
from gate.lane.loop import DecisionLoop

log = logging.getLogger(__name__)


class Readers:
    def __init__(self, config: Any, loop: DecisionLoop, hardware: HardwareProvider, clock: Clock) -> None:
        """``config``: the lane's ``gate.config.Config`` (its scanner, camera and nfc tables)."""
        self.config = config
        self.loop = loop
        self.hardware = hardware
        self.clock = clock
        self.scanner: Any = None
        self.camera: Any = None
        self.nfc: Any = None
        self.problems: dict[str, str] = {}  # reader → why it is not running

    def start(self) -> None:
        config = self.config
        if config.scanner is not None:
            self._start_scanner()
        if config.camera is not None:
            self._start("camera", self._start_camera)
        if config.nfc is not None:
            self._start("nfc", self._start_nfc)

    def _start(self, name: str, start: Callable[[], None]) -> None:
        try:
            start()
        except Exception as exc:
            self.problems[name] = str(exc)
            log.error("reader not started reader=%s error=%r", name, str(exc))

    def _start_scanner(self) -> None:
        sc, loop = self.config.scanner, self.loop
        if sc.kind == "hid":
            from drivers.hid_scanner import HidScanner  # evdev itself only when the device is opened

            self.scanner = HidScanner(
                sc.device,
                lambda text: loop.scan(text, "scanner", sc.direction),
                layout=sc.layout,
                suffix=sc.suffix,
                max_line=sc.max_line,
                line_timeout=sc.line_timeout,
                unterminated=sc.unterminated,
                reconnect_interval=sc.reconnect_interval,
            )
            self.scanner.start()
            return
        from drivers.serial_scanner import SerialScanner

        self.scanner = SerialScanner(
            sc.port,
            lambda text: loop.scan(text, "scanner", sc.direction),
            baudrate=sc.baudrate,
            max_line=sc.max_line,
            line_timeout=sc.line_timeout,
            unterminated=sc.unterminated,
            reconnect_interval=sc.reconnect_interval,
        )
        self.scanner.start()

    def _start_camera(self) -> None:
        from drivers.camera import CameraReader, Region
        from drivers.decoders import make_decoder

        cam, loop = self.config.camera, self.loop
        decoder = make_decoder(cam.decoder, cam.symbologies)
        camera = CameraReader(
            self.hardware.camera_source(cam),
            decoder,
            lambda text, _symbology, seen_at: loop.scan(text, "camera", cam.direction, received=seen_at),
            region=Region(*cam.region) if cam.region else None,
            downscale=cam.downscale,
            hold_off=cam.hold_off,
        )
        camera.describe = _ticket_format  # a snapshot names the format it read, never the text
        camera.start()
        self.camera = camera  # only a reader that started is stopped and reported
        log.info("camera reading source=%s decoder=%s symbologies=%s", cam.source, cam.decoder, ",".join(cam.symbologies))

    def _start_nfc(self) -> None:
        from drivers.nfc_reader import NfcReader

        nfc, loop = self.config.nfc, self.loop
        reader = NfcReader(
            nfc.device,
            self.config.gate_id,
            lambda text, began: loop.scan(text, "nfc", nfc.direction, received=began),
            lambda answer, nonce, gate_id, began: loop.tap(answer, nonce, gate_id, nfc.direction, received=began),
            exchange_timeout=nfc.exchange_timeout,
            poll_interval=nfc.poll_interval,
            targets=nfc.targets,
            reconnect_interval=nfc.reconnect_interval,
            wall_clock=self.clock.now,
        )
        reader.start()
        self.nfc = reader

    def status(self) -> dict[str, Any]:
        """What each configured reader is doing (status topic, ``gate status``): besides its own
        counts, ``connected``, ``last_activity_age_s`` (its last line, frame or poll) and
        ``last_error`` (short text, never what was read)."""
        readers: dict[str, Any] = {name: {"problem": problem} for name, problem in self.problems.items()}
        if self.scanner is not None:
            readers["scanner"] = {**self.scanner.status(), "lines": self.scanner.lines_read,
                                  "kind": self.config.scanner.kind, "device": self.scanner.device}
            if self.config.scanner.kind == "hid":
                readers["scanner"].update(grabbed=self.scanner.grabbed, unknown_keys=self.scanner.unknown_keys)
        if self.camera is not None:
            readers["camera"] = self.camera.status()
        if self.nfc is not None:
            readers["nfc"] = self.nfc.status()
        return readers

    def stop(self) -> None:
        for reader in (self.scanner, self.camera, self.nfc):
            if reader is not None:
                reader.stop()


def _ticket_format(text: str) -> str | None:
    """The ticket format a code's text is in (any format gate knows), for ``gate camera snapshot``."""
    from gate import formats

    found = formats.identify(text, formats.enabled(tuple(formats.FORMATS)))
    return found.name if found is not None else None
