"""The lane's relays, LEDs, buzzer and contacts on GPIO, through gpiozero.

The pin factory decides where the pins are: gpiozero's default (lgpio on a Raspberry Pi) or a
``MockFactory`` in the simulator and the tests. Nothing here knows which.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Protocol

from gpiozero import DigitalInputDevice, DigitalOutputDevice

log = logging.getLogger(__name__)


class OutputSpec(Protocol):
    pin: int
    active_high: bool


class InputSpec(Protocol):
    pin: int
    pull_up: bool
    bounce: float
    normally_closed: bool


class Wiring(Protocol):
    unlock: Mapping[str, OutputSpec]
    lights: Mapping[str, OutputSpec]
    buzzer: OutputSpec | None
    passage: Mapping[str, InputSpec]
    fire_alarm: InputSpec | None
    tamper: InputSpec | None


class GpioLane:
    """Implements ``gate.lane.hardware.LaneOutputs``; reports inputs to a ``LaneEvents`` once listening."""

    def __init__(self, wiring: Wiring, pin_factory: Any = None) -> None:
        self.wiring = wiring
        self._devices: list[Any] = []

        def output(spec: OutputSpec) -> DigitalOutputDevice:
            device = DigitalOutputDevice(
                spec.pin, active_high=spec.active_high, initial_value=False, pin_factory=pin_factory
            )
            self._devices.append(device)
            return device

        def contact(spec: InputSpec) -> DigitalInputDevice:
            device = DigitalInputDevice(
                spec.pin, pull_up=spec.pull_up, bounce_time=spec.bounce or None, pin_factory=pin_factory
            )
            self._devices.append(device)
            return device

        self.unlock = {direction: output(spec) for direction, spec in wiring.unlock.items()}
        self.lights = {color: output(spec) for color, spec in wiring.lights.items()}
        self.buzzer = output(wiring.buzzer) if wiring.buzzer else None
        self.passage = {direction: contact(spec) for direction, spec in wiring.passage.items()}
        self.fire = contact(wiring.fire_alarm) if wiring.fire_alarm else None
        self.tamper_input = contact(wiring.tamper) if wiring.tamper else None

    def listen(self, events: Any) -> None:
        """Start reporting inputs to ``events`` (a ``gate.lane.hardware.LaneEvents``)."""
        for direction, device in self.passage.items():
            device.when_activated = lambda _d=None, direction=direction: events.passage(direction)
        if self.fire is not None:
            device = self.fire
            device.when_activated = lambda _d=None: events.fire_alarm(self.fire_alarm_active())
            device.when_deactivated = lambda _d=None: events.fire_alarm(self.fire_alarm_active())
        if self.tamper_input is not None:
            self.tamper_input.when_activated = lambda _d=None: events.tamper(True)
            self.tamper_input.when_deactivated = lambda _d=None: events.tamper(False)

    def fire_alarm_active(self) -> bool:
        """A normally-closed loop is in alarm when open, which a cut wire also is."""
        if self.fire is None or self.wiring.fire_alarm is None:
            return False
        closed = self.fire.is_active
        return not closed if self.wiring.fire_alarm.normally_closed else closed

    # --- LaneOutputs -----------------------------------------------------------------------

    def set_unlock(self, direction: str, energized: bool) -> None:
        self.unlock[direction].value = energized

    def set_light(self, color: str, on: bool) -> None:
        light = self.lights.get(color)
        if light is not None:
            light.value = on

    def set_buzzer(self, on: bool) -> None:
        if self.buzzer is not None:
            self.buzzer.value = on

    def safe(self) -> None:
        for name, device in [*self.unlock.items(), *self.lights.items(), ("buzzer", self.buzzer)]:
            if device is None:
                continue
            try:
                device.value = name == "red"
            except Exception:  # a closed or broken pin must not stop the others falling safe
                log.exception("could not set output to safe state output=%s", name)

    def close(self) -> None:
        for device in self._devices:
            try:
                device.close()
            except Exception:
                log.exception("closing GPIO device failed")
