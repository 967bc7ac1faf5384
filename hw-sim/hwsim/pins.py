"""gpiozero's own MockFactory, with pins that tell the simulator when an output changes."""

from __future__ import annotations

import collections
from time import monotonic
from typing import Callable

from gpiozero.pins.mock import MockFactory, MockPin, PinState

PinWatcher = Callable[[int, bool], None]
STATE_HISTORY = 64  # MockPin keeps every change it ever saw; a lane that runs for hours must not


class WatchedPin(MockPin):
    """A MockPin that calls its watchers with (BCM number, level) on every change of level."""

    def __init__(self, factory: MockFactory, info: object) -> None:
        self.watchers: list[PinWatcher] = []
        super().__init__(factory, info)

    def _change_state(self, value: bool) -> bool:
        changed = super()._change_state(value)
        if changed:
            number = int(str(self.info.name).removeprefix("GPIO"))
            for watcher in list(self.watchers):
                watcher(number, value)
        return changed

    def clear_states(self) -> None:
        """gpiozero's history of changes (``states``, for ``assert_states``), but only the last
        STATE_HISTORY of them: a list of every change grew by ~470 bytes a scan under load."""
        self._last_change = monotonic()
        self.states = collections.deque([PinState(0.0, self._state)], maxlen=STATE_HISTORY)


def make_factory() -> MockFactory:
    return MockFactory(pin_class=WatchedPin)
