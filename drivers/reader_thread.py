"""What every reader with a device of its own does: on its own thread, open the device, use it
until it fails or goes away (unplugged, rebooted), and open it again, telling the log once
when it is missing rather than on every attempt.

Each reader also says how it is doing (``status()``, shown by ``gate status``): whether its
device is open, how long ago it last did its work (a line read, an NFC poll) and the last thing
that went wrong, as short text that never holds what was read (no ticket content)."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from typing import Any

log = logging.getLogger(__name__)

MAX_ERROR_TEXT = 120  # status is a summary; the log has the rest


def error_text(exc: BaseException) -> str:
    """An OS error as its reason and code ("No such file or directory (ENOENT)"): the device's
    path is on the status already, and pyserial's message repeats it twice."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code in errno.errorcode:
        return f"{os.strerror(code)} ({errno.errorcode[code]})"
    return str(exc) or type(exc).__name__


class ReaderThread(ABC):
    kind = "reader"  # for log lines: "scanner", "nfc reader"
    open_errors: tuple[type[BaseException], ...] = (OSError, ValueError)
    use_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, device: str, reconnect_interval: float, name: str) -> None:
        self.device = device
        self.reconnect_interval = reconnect_interval
        self.name = name
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_activity: float | None = None  # monotonic
        self._last_error: tuple[float, str] | None = None  # (monotonic, text)

    # what a reader reports
    def note_activity(self) -> None:
        """The reader did its work just now (read a line, polled the field)."""
        self._last_activity = time.monotonic()

    def note_error(self, text: str) -> None:
        """Something went wrong; ``text`` must not hold what was read."""
        self._last_error = (time.monotonic(), text[:MAX_ERROR_TEXT])

    def status(self) -> dict[str, Any]:
        """``connected``, ``last_activity_age_s`` (None: nothing yet) and ``last_error`` (None, or
        the text and ``last_error_age_s``)."""
        now = time.monotonic()
        activity, error = self._last_activity, self._last_error
        status: dict[str, Any] = {
            "connected": self.connected.is_set(),
            "last_activity_age_s": None if activity is None else round(now - activity, 1),
            "last_error": None if error is None else error[1],
        }
        if error is not None:
            status["last_error_age_s"] = round(now - error[0], 1)
        return status

    # what a reader defines
    @abstractmethod
    def open(self) -> Any:
        """Open the device (raise one of ``open_errors`` when it is not there)."""

    @abstractmethod
    def use(self, handle: Any) -> None:
        """Read from the opened device until stopped, or raise one of ``use_errors``."""

    def close(self, handle: Any) -> None:
        handle.close()

    # the thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        announced_missing = False
        while not self._stop.is_set():
            try:
                handle = self.open()
            except self.open_errors as exc:
                self.note_error(f"cannot open: {error_text(exc)}")
                if not announced_missing:
                    log.warning("%s not available device=%s error=%r, retrying", self.kind, self.device, str(exc))
                    announced_missing = True
                self._stop.wait(self.reconnect_interval)
                continue
            announced_missing = False
            log.info("%s connected device=%s", self.kind, self.device)
            self.connected.set()
            try:
                self.use(handle)
            except self.use_errors as exc:
                self.note_error(f"disconnected: {error_text(exc)}")
                log.warning("%s disconnected device=%s error=%r", self.kind, self.device, str(exc))
            finally:
                self.connected.clear()
                try:
                    self.close(handle)
                except Exception:
                    log.debug("%s did not close cleanly device=%s", self.kind, self.device, exc_info=True)
            self._stop.wait(self.reconnect_interval)
