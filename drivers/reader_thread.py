"""What every reader with a device of its own does: on its own thread, open the device, use it
until it fails or goes away (unplugged, rebooted), and open it again, telling the log once
when it is missing rather than on every attempt."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from typing import Any

log = logging.getLogger(__name__)


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
                log.warning("%s disconnected device=%s error=%r", self.kind, self.device, str(exc))
            finally:
                self.connected.clear()
                try:
                    self.close(handle)
                except Exception:
                    log.debug("%s did not close cleanly device=%s", self.kind, self.device, exc_info=True)
            self._stop.wait(self.reconnect_interval)
