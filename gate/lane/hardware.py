"""The small interface between the decision loop and the lane's hardware.

``drivers.gpio`` implements it with gpiozero on a Pi (or on gpiozero's MockFactory pins in the
simulator). Inputs are not polled: the driver calls back into the ``LaneEvents`` it is given,
from whatever thread gpiozero uses, and the decision loop takes it from there.
"""

from __future__ import annotations

from typing import Protocol

LIGHTS = ("green", "red", "amber")


class LaneOutputs(Protocol):
    def set_unlock(self, direction: str, energized: bool) -> None:
        """Energize or release the unlock relay for ``direction`` ("in" or "out")."""

    def set_light(self, color: str, on: bool) -> None:
        """Switch an LED; a colour the lane does not have is ignored."""

    def set_buzzer(self, on: bool) -> None: ...

    def safe(self) -> None:
        """Safe state: every relay released, red on, everything else off. Must not raise."""


class LaneEvents(Protocol):
    """What inputs report (called from driver threads; implementations only enqueue)."""

    def passage(self, direction: str) -> None: ...

    def fire_alarm(self, active: bool) -> None: ...

    def tamper(self, active: bool) -> None: ...
