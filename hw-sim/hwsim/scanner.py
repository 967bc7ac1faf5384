"""A simulated serial barcode scanner: a pseudo-terminal whose other end the real pyserial
driver reads, behind a stable symlink as udev would give a real scanner (``/dev/gate-scanner``).
"""

from __future__ import annotations

import os
import select
import time
import tty
from pathlib import Path


class SimulatedScanner:
    def __init__(self, link: str | os.PathLike[str]) -> None:
        self.link = Path(link)
        self._master: int | None = None
        self.plug()

    def plug(self) -> None:
        """Connect the scanner: a new pty appears and the symlink points at it."""
        if self._master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo or line editing before the driver opens it
        path = os.ttyname(slave)
        os.close(slave)
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(path)
        tmp.replace(self.link)
        self._master = master

    def unplug(self) -> None:
        """Pull the cable: the pty goes away (the driver's reads fail) and so does the symlink."""
        if self._master is None:
            return
        self.link.unlink(missing_ok=True)
        os.close(self._master)
        self._master = None

    def wait_until_opened(self, timeout: float = 10.0) -> bool:
        """Until the driver has the port open: before that, what the scanner sends is lost
        (pyserial flushes the input when it opens a port), as with a real scanner."""
        if self._master is None:
            raise RuntimeError("scanner is unplugged")
        poller = select.poll()
        poller.register(self._master, select.POLLIN)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(events & select.POLLHUP for _, events in poller.poll(0)):
                return True  # a pty's master reports hang-up while nobody has the other end open
            time.sleep(0.01)
        return False

    def write(self, data: bytes) -> None:
        if self._master is None:
            raise RuntimeError("scanner is unplugged")
        view = memoryview(data)
        while view:
            written = os.write(self._master, view)
            view = view[written:]

    def scan(self, text: str, terminator: bytes = b"\r\n") -> None:
        """Read a code: the scanner sends its text and its configured suffix."""
        self.write(text.encode() + terminator)

    def close(self) -> None:
        self.unplug()
