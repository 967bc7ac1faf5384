"""gpiozero's own MockFactory, with pins that tell the simulator when an output changes."""

from __future__ import annotations

from typing import Callable

from gpiozero.pins.mock import MockFactory, MockPin

PinWatcher = Callable[[int, bool], None]


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


def make_factory() -> MockFactory:
    return MockFactory(pin_class=WatchedPin)
