"""The Raspberry Pi as a lane's hardware (the ``pi`` provider): gpiozero's lgpio pin factory on the
Pi's own GPIO chip (``[gpio] chip``, found by its label when "auto"), the Pi camera through
Picamera2, and the kernel's word on whether NTP has set the clock."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from typing import Any

from gate.clock import ClockSync
from gate.lane.hardware import Listener

log = logging.getLogger(__name__)
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
        self._factory: Any = None

    def gpio_chip(self) -> tuple[int, str]:
        """The chip number the lane opens and its label (``drivers.gpio.pi_chip``); raises
        ``drivers.gpio.ChipNotFound``. Doctor asks the same question."""
        from drivers.gpio import pi_chip

        return pi_chip(self.config.gpio.chip)

    def pin_factory(self) -> Any:
        """lgpio on the chip ``gpio_chip`` names, never gpiozero's guess (gpiozero 2.0.1 takes
        gpiochip4 on any Pi 5, which newer kernels have only as a compatibility link). Made once;
        never closed (``drivers.gpio.lgpio_factory``)."""
        if self._factory is None:
            from drivers.gpio import lgpio_factory

            chip, label = self.gpio_chip()
            self._factory = lgpio_factory(chip)
            log.info("gpio chip=gpiochip%d label=%s", chip, label)
        return self._factory

    def camera_source(self, camera: Any) -> Any:
        from drivers.camera import Picamera2Source

        return Picamera2Source.from_config(camera)

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
