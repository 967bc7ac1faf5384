"""A serial barcode scanner (USB-CDC or UART) through pyserial.

Scanners send each code as a line. This driver frames lines (CR, LF or CRLF), refuses overlong
lines and garbage without stalling, deals with a code that arrives without a terminator, and
reopens the port when the device disappears and comes back (USB unplugged, scanner rebooted).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import serial

from drivers.reader_thread import ReaderThread

log = logging.getLogger(__name__)

TERMINATORS = b"\r\n"


class LineFramer:
    """Bytes in, complete lines out. Pure: no I/O, no clock."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._discarding = False  # inside an overlong line: drop until its terminator
        self.overlong = 0

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        for byte in data:
            if byte in TERMINATORS:
                if self._discarding:
                    self._discarding = False
                elif self._buffer:  # the LF of a CRLF, or a blank line, yields nothing
                    lines.append(bytes(self._buffer))
                self._buffer.clear()
            elif not self._discarding:
                self._buffer.append(byte)
                if len(self._buffer) > self.max_line:
                    self._buffer.clear()
                    self._discarding = True
                    self.overlong += 1
                    log.warning("scanner line longer than %d bytes dropped", self.max_line)
        return lines

    @property
    def partial(self) -> bool:
        return bool(self._buffer) or self._discarding

    def take_partial(self) -> bytes:
        """End the current line where it stands (no terminator came)."""
        data = b"" if self._discarding else bytes(self._buffer)
        self._buffer.clear()
        self._discarding = False
        return data


class SerialScanner(ReaderThread):
    kind = "scanner"
    open_errors = (serial.SerialException, OSError, ValueError)
    use_errors = (serial.SerialException, OSError)

    def __init__(
        self,
        port: str,
        on_line: Callable[[str], None],
        *,
        baudrate: int = 9600,
        max_line: int = 1024,
        line_timeout: float = 0.5,
        unterminated: str = "drop",
        reconnect_interval: float = 1.0,
        name: str = "scanner",
    ) -> None:
        super().__init__(port, reconnect_interval, name)
        self.port = port
        self.on_line = on_line
        self.baudrate = baudrate
        self.max_line = max_line
        self.line_timeout = line_timeout
        self.unterminated = unterminated
        self.lines_read = 0

    def open(self) -> serial.Serial:
        return serial.Serial(self.port, self.baudrate, timeout=0.05, exclusive=True)

    def use(self, port: serial.Serial) -> None:
        framer = LineFramer(self.max_line)
        last_byte = time.monotonic()
        while not self._stop.is_set():
            data = port.read(max(1, min(port.in_waiting, 4096)))
            now = time.monotonic()
            if data:
                last_byte = now
                overlong = framer.overlong
                for line in framer.feed(data):
                    self._deliver(line)
                if framer.overlong != overlong:
                    self.note_error(f"line longer than {self.max_line} bytes dropped")
            elif framer.partial and now - last_byte >= self.line_timeout:
                partial = framer.take_partial()
                if self.unterminated == "accept" and partial:
                    self._deliver(partial)
                else:
                    self.note_error("line without terminator dropped")
                    log.warning("scanner partial line without terminator dropped bytes=%d", len(partial))

    def _deliver(self, line: bytes) -> None:
        self.lines_read += 1
        self.note_activity()
        # Scanned codes are ASCII; anything else is kept visible (U+FFFD) and refused downstream.
        self.on_line(line.decode("utf-8", errors="replace"))
