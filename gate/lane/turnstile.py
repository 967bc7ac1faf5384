"""The turnstile controller (DESIGN §3): relays, lights and buzzer around one passage at a time.

Runs on the decision loop's thread and keeps no clock of its own: it schedules output changes
as deadlines on the injected clock's monotonic time, and the loop calls ``tick()`` when the
next deadline is due. It decides nothing about tickets; it is told "open for this admission"
and reports back what the passage sensor saw and which admissions timed out.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from dataclasses import dataclass
from typing import Any, Callable

from gate.clock import Clock
from gate.decision import IN, MODES, OUT
from gate.lane.hardware import LaneOutputs

log = logging.getLogger(__name__)

UNLOCK_MODES = ("pulse", "level")


@dataclass(frozen=True)
class TurnstileSettings:
    unlock_mode: str = "pulse"
    pulse: float = 0.3
    passage_timeout: float = 8.0
    deny_display: float = 1.5
    exit: str = "free"  # "free": passing out needs no scan; "scan": it does (else forced)
    directions: tuple[str, ...] = (IN, OUT)  # which unlock relays are wired


@dataclass
class Pending:
    """An admission waiting for the passage sensor."""

    direction: str
    admission: Any  # opaque to the controller: the loop's record of the admission (gate.store.ledger.Record)
    deadline: float


# What a passage turned out to be.
CONFIRMED, FORCED, FREE_EXIT, IGNORED = "confirmed", "forced", "free_exit", "ignored"


class TurnstileController:
    def __init__(self, outputs: LaneOutputs, settings: TurnstileSettings, clock: Clock) -> None:
        self.outputs = outputs
        self.settings = settings
        self.clock = clock
        self.mode = "normal"
        self.emergency = False
        self.pending: Pending | None = None
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_ids = itertools.count()
        self._generation = 0  # bumps on every new display, so stale "lights off" timers do nothing
        self._beeps = 0  # bumps on every new beep, so a pattern cut short does not sound on in the next

    # --- scheduling ------------------------------------------------------------------------

    def _after(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (self.clock.monotonic() + delay, next(self._timer_ids), action))

    def next_deadline(self) -> float | None:
        deadlines = [t[0] for t in self._timers[:1]]
        if self.pending is not None:
            deadlines.append(self.pending.deadline)
        return min(deadlines) if deadlines else None

    def tick(self) -> Pending | None:
        """Run due output changes; return the pending admission if its passage timed out."""
        now = self.clock.monotonic()
        while self._timers and self._timers[0][0] <= now:
            heapq.heappop(self._timers)[2]()
        if self.pending is not None and self.pending.deadline <= now:
            expired, self.pending = self.pending, None
            log.info("passage timeout direction=%s", expired.direction)
            self._release(expired.direction)
            self._show_idle()
            return expired
        return None

    # --- displays --------------------------------------------------------------------------

    def _lights(self, green: bool = False, red: bool = False, amber: bool = False) -> None:
        self.outputs.set_light("green", green)
        self.outputs.set_light("red", red)
        self.outputs.set_light("amber", amber)

    def _beep(self, pattern: tuple[float, ...]) -> None:
        """Alternating on/off durations, starting with on; a new beep cuts the previous one short."""
        self._beeps += 1
        beep = self._beeps

        def buzzer(state: bool) -> None:
            if self._beeps == beep:
                self.outputs.set_buzzer(state)

        self.outputs.set_buzzer(True)
        at, on = 0.0, True
        for length in pattern:
            at += length
            on = not on
            self._after(at, lambda state=on: buzzer(state))
        if on:  # an odd-length pattern ends on; always end silent
            self._after(at, lambda: buzzer(False))

    def _show_idle(self) -> None:
        self._generation += 1
        if self.emergency:
            self._lights(green=True, amber=True)
        elif self.mode == "free":
            self._lights(green=True)
        elif self.mode == "locked":
            self._lights(red=True)
        else:
            self._lights()

    def _release(self, direction: str) -> None:
        if direction in self.settings.directions:
            self.outputs.set_unlock(direction, False)

    def _release_all(self) -> None:
        for direction in self.settings.directions:
            self.outputs.set_unlock(direction, False)

    # --- what the loop tells it ------------------------------------------------------------

    def start(self) -> None:
        self._release_all()
        self.outputs.set_buzzer(False)
        self._show_idle()

    @property
    def busy(self) -> bool:
        return self.pending is not None

    def open_for(self, direction: str, admission: Any) -> None:
        """Let one person through in ``direction``; the admission is already recorded."""
        if direction not in self.settings.directions:
            raise ValueError(f"no unlock relay wired for direction {direction!r}")
        self.pending = Pending(direction, admission, self.clock.monotonic() + self.settings.passage_timeout)
        self.outputs.set_unlock(direction, True)
        if self.settings.unlock_mode == "pulse":
            self._after(self.settings.pulse, lambda: self._release(direction) if self.mode != "free" else None)
        self._generation += 1
        self._lights(green=True)
        self._beep((0.12,))

    def show_denied(self) -> None:
        if self.emergency:  # the lane is released: the lights keep showing the way out
            return
        self._generation += 1
        generation = self._generation
        self._lights(red=True)
        self._beep((0.08, 0.08, 0.08, 0.08, 0.08))
        self._after(self.settings.deny_display, lambda: self._show_idle() if self._generation == generation else None)

    def passage(self, direction: str) -> tuple[str, Any]:
        """The sensor saw someone pass: confirm the pending admission, or say what it was."""
        if self.emergency or self.mode == "free":
            return IGNORED, None
        if self.pending is not None and self.pending.direction == direction:
            confirmed, self.pending = self.pending, None
            self._release(direction)
            self._show_idle()
            return CONFIRMED, confirmed.admission
        if direction == OUT and self.settings.exit == "free":
            return FREE_EXIT, None
        return FORCED, None

    def set_emergency(self, active: bool) -> Pending | None:
        """Fire alarm: release everything and show the way out. Returns an admission to revert."""
        if active == self.emergency:
            return None
        self.emergency = active
        interrupted, self.pending = self.pending, None
        self._timers.clear()
        self._release_all()
        self.outputs.set_buzzer(False)
        if not active:
            self._apply_mode()
        self._show_idle()
        return interrupted

    def set_mode(self, mode: str) -> Pending | None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if mode == self.mode:
            return None  # nothing changes: a person being let through goes on
        self.mode = mode
        interrupted = None
        if mode != "normal":
            interrupted, self.pending = self.pending, None
        if not self.emergency:
            self._apply_mode()
            self._show_idle()
        return interrupted

    def _apply_mode(self) -> None:
        energized = self.mode == "free"
        for direction in self.settings.directions:
            self.outputs.set_unlock(direction, energized)

    def safe(self) -> None:
        self._timers.clear()
        self.pending = None
        self.outputs.safe()
