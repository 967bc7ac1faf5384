"""A lane's NTP state, set by a test or the demo instead of read from the host's kernel."""

from __future__ import annotations


class SimulatedClockSync:
    """Implements ``gate.clock.ClockSync``; ``synchronized_now`` is flipped from the control socket."""

    def __init__(self, synchronized: bool = True) -> None:
        self.synchronized_now = synchronized
        self.problem = ""

    def synchronized(self) -> bool:
        return self.synchronized_now
