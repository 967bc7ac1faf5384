"""Time, injectable so that tests and ``gate verify --at`` can decide at another moment.

Two readings: ``now()`` is wall-clock unix seconds (ticket validity), ``monotonic()`` drives
timers (relay pulses, passage timeouts) and never jumps when NTP steps the clock.
"""

from __future__ import annotations

import time
from typing import Protocol


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
