"""The Raspberry Pi as a lane's hardware (the ``pi`` provider): gpiozero's default pin factory
(lgpio), the Pi camera through Picamera2, and the kernel's word on whether NTP has set the clock."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any

from gate.clock import ClockSync
from gate.lane.hardware import Listener

_MAX_ERROR_SYNCED_US = 16_000_000  # the kernel's ceiling for maxerror: "unsynchronized"


class _Timex(ctypes.Structure):  # struct timex, up to maxerror; the rest is padding
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("rest", ctypes.c_byte * 256)]


class KernelClockSync:
    """Asks the kernel, as ``timedatectl``'s *System clock synchronized* does: adjtimex(2)'s
    estimated maximum error is under 16 s once an NTP client (timesyncd, chrony) disciplines the
    clock. Works with any NTP client; needs no privilege (a read, ``modes = 0``)."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.problem = ""  # why the kernel could not be asked (then: not synchronized)

    def synchronized(self) -> bool:
        timex = _Timex()
        if self._libc.adjtimex(ctypes.byref(timex)) < 0:
            self.problem = f"adjtimex: {os.strerror(ctypes.get_errno())}"
            return False
        return timex.maxerror < _MAX_ERROR_SYNCED_US


class PiHardware:
    """Implements ``gate.lane.hardware.HardwareProvider`` on a Raspberry Pi."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self._clock_sync: ClockSync | None = None

    def pin_factory(self) -> Any:
        return None  # gpiozero picks: lgpio on a Pi

    def camera_source(self, camera: Any) -> Any:
        from drivers.camera import Picamera2Source

        return Picamera2Source(camera.width, camera.height, camera.fps, camera.index)

    def clock_sync(self) -> ClockSync:
        if self._clock_sync is None:
            self._clock_sync = KernelClockSync()
        return self._clock_sync

    def attach(self, listeners: list[Listener]) -> None:
        pass  # the real turnstile is wired to the pins

    def ready(self) -> None:
        pass

    def close(self) -> None:
        pass
