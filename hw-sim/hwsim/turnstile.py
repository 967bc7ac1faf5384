"""A simulated turnstile on MockFactory pins.

It watches the unlock relays the gate drives and, when unlocked, lets the next simulated person
walk through: after ``walk_time`` it closes the PASS contact of that direction for a moment, as a
real turnstile's rotation sensor does. People can also balk (never pass), or force their way
through without an unlock. The fire loop and tamper contact are switches a test can flip.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable

from gpiozero.pins.mock import MockFactory

log = logging.getLogger(__name__)

PASS_PULSE = 0.05  # how long the PASS contact stays closed
PASS_GAP = 0.02  # the arm needs a moment before the next rotation: the contact reopens first

OutputListener = Callable[[str, bool], None]


class SimulatedTurnstile:
    def __init__(self, factory: MockFactory, wiring: Any, walk_time: float = 0.3) -> None:
        """``wiring`` is the gate's GPIO wiring (pins and levels of every signal)."""
        self.factory = factory
        self.wiring = wiring
        self.walk_time = walk_time
        self.listeners: list[OutputListener] = []
        self.passages: collections.Counter[str] = collections.Counter()
        self._queue: dict[str, collections.deque[bool]] = {d: collections.deque() for d in wiring.passage}
        # One rotation at a time per direction, as the mechanism allows.
        self._rotation = {d: threading.Lock() for d in wiring.passage}
        self._lock = threading.Lock()
        self._outputs: dict[int, tuple[str, bool]] = {}  # pin → (name, active_high)
        for direction, spec in wiring.unlock.items():
            self._outputs[spec.pin] = (f"unlock_{direction}", spec.active_high)
        for color, spec in wiring.lights.items():
            self._outputs[spec.pin] = (color, spec.active_high)
        if wiring.buzzer is not None:
            self._outputs[wiring.buzzer.pin] = ("buzzer", wiring.buzzer.active_high)
        self._timers: list[threading.Timer] = []

    def attach(self) -> None:
        """Connect to the pins; call after the gate's driver has set its inputs' pulls."""
        for number in self._outputs:
            self.factory.pin(number).watchers.append(self._on_output)
        for spec in self.wiring.passage.values():
            self._set_contact(spec, closed=False)
        if self.wiring.fire_alarm is not None:
            self._set_contact(self.wiring.fire_alarm, closed=self.wiring.fire_alarm.normally_closed)
        if self.wiring.tamper is not None:
            self._set_contact(self.wiring.tamper, closed=False)

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for number in self._outputs:
            watchers = self.factory.pin(number).watchers
            if self._on_output in watchers:
                watchers.remove(self._on_output)

    # --- what the gate drives --------------------------------------------------------------

    def output(self, name: str) -> bool:
        """Is this output active (relay energized, LED lit, buzzer sounding)?"""
        for number, (output_name, active_high) in self._outputs.items():
            if output_name == name:
                return self.factory.pin(number).state == active_high
        raise KeyError(f"no output {name!r} wired")

    def outputs(self) -> dict[str, bool]:
        return {name: self.output(name) for name, _ in self._outputs.values()}

    def _on_output(self, number: int, level: bool) -> None:
        name, active_high = self._outputs[number]
        active = level == active_high
        for listener in list(self.listeners):
            listener(name, active)
        if active and name.startswith("unlock_"):
            direction = name.removeprefix("unlock_")
            with self._lock:
                queue = self._queue.get(direction)
                walks = queue.popleft() if queue else False
            if walks:
                self._later(self.walk_time, lambda: self.pass_through(direction))

    # --- what people and switches do -------------------------------------------------------

    def person(self, direction: str = "in", walks: bool = True) -> None:
        """Queue someone at the turnstile: on the next unlock they pass (or balk)."""
        with self._lock:
            self._queue[direction].append(walks)

    def leave(self, direction: str = "in") -> None:
        """Whoever was waiting gives up (their ticket was refused)."""
        with self._lock:
            self._queue[direction].clear()

    def pass_through(self, direction: str = "in") -> None:
        """Someone rotates the turnstile (a forced passage when it was not unlocked)."""
        spec = self.wiring.passage[direction]
        with self._rotation[direction]:
            self.passages[direction] += 1
            self._set_contact(spec, closed=True)
            time.sleep(PASS_PULSE)
            self._set_contact(spec, closed=False)
            time.sleep(PASS_GAP)

    def set_fire_alarm(self, active: bool) -> None:
        spec = self.wiring.fire_alarm
        self._set_contact(spec, closed=(not active) if spec.normally_closed else active)

    def set_tamper(self, active: bool) -> None:
        self._set_contact(self.wiring.tamper, closed=active)

    def _set_contact(self, spec: Any, closed: bool) -> None:
        """A contact to ground pulls a pulled-up pin low; to 3V3 pulls a pulled-down pin high."""
        pin = self.factory.pin(spec.pin)
        high = (not closed) if spec.pull_up else closed
        pin.drive_high() if high else pin.drive_low()

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        timer = threading.Timer(delay, action)
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()
