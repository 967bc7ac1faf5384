"""Time, injectable so that tests and ``gate verify --at`` can decide at another moment.

Two readings: ``now()`` is wall-clock unix seconds (ticket validity), ``monotonic()`` drives
timers (relay pulses, passage timeouts) and never jumps when NTP steps the clock.
"""

from __future__ import annotations

import time
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class FixedClock:
    """Wall-clock time pinned to one instant (``gate verify --at``); timers still run."""

    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at

    def monotonic(self) -> float:
        return time.monotonic()


class ClockSync(Protocol):
    """Whether the wall clock is known to be right. A Pi has no real-time clock: until NTP has
    set it, it runs from the last shutdown (fake-hwclock) or from 1970."""

    def synchronized(self) -> bool: ...


_MAX_ERROR_SYNCED_US = 16_000_000  # the kernel's ceiling for maxerror: "unsynchronized"


class KernelClockSync:
    """Asks the kernel, as ``timedatectl``'s *System clock synchronized* does: adjtimex(2)'s
    estimated maximum error is under 16 s once an NTP client (timesyncd, chrony) disciplines the
    clock. Works with any NTP client; needs no privilege (a read, ``modes = 0``)."""

    def __init__(self) -> None:
        import ctypes
        import ctypes.util

        class Timex(ctypes.Structure):  # struct timex, up to maxerror; the rest is padding
            _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                        ("maxerror", ctypes.c_long), ("rest", ctypes.c_byte * 256)]

        self._timex = Timex
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._byref, self._errno = ctypes.byref, ctypes.get_errno
        self.problem = ""  # why the kernel could not be asked (then: not synchronized)

    def synchronized(self) -> bool:
        timex = self._timex()
        if self._libc.adjtimex(self._byref(timex)) < 0:
            import os

            self.problem = f"adjtimex: {os.strerror(self._errno())}"
            return False
        return timex.maxerror < _MAX_ERROR_SYNCED_US


def clock_sync(simulator: Any = None) -> ClockSync:
    """The kernel's view; on a simulated lane (``simulator``: the config's ``[simulator]``, when
    enabled) the simulator's, so that a test or the demo decides whether "NTP" synchronized."""
    if simulator is None or not simulator.enabled:
        return KernelClockSync()
    from hwsim.clock import SimulatedClockSync

    return SimulatedClockSync(simulator.clock_synchronized)
