"""The small interfaces between a lane and its hardware, and how the hardware is chosen.

``drivers.gpio`` implements the outputs and inputs with gpiozero, on whatever pin factory the
hardware provider gives it. Inputs are not polled: the driver calls back into the ``LaneEvents``
it is given, from whatever thread gpiozero uses, and the decision loop takes it from there.

A ``HardwareProvider`` is where a lane's hardware comes from, as a pin factory is for gpiozero:
``pi`` (``gate.lane.pi``: gpiozero's own pin factory, Picamera2, the kernel's NTP state) ships with
gate; ``simulator`` ships with the hardware simulator (``hwsim``, its own distribution, never on
a Pi). Providers are found by name in the ``gate.hardware`` entry-point group, so the product
never imports the simulator.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Callable, Protocol

from gate.clock import ClockSync
from gate.errors import GateError

PROVIDER_GROUP = "gate.hardware"
Listener = Callable[[str, dict[str, Any]], None]


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


class HardwareProvider(Protocol):
    """Everything a lane needs from the machine it runs on. Built with the lane's config."""

    def pin_factory(self) -> Any:
        """gpiozero's pin factory for the lane's outputs and inputs (None: gpiozero's default)."""

    def camera_source(self, camera: Any) -> Any:
        """A ``drivers.camera.FrameSource`` for the config's ``[camera]`` table."""

    def clock_sync(self) -> ClockSync:
        """Whether the wall clock is synchronized (NTP)."""

    def attach(self, listeners: list[Listener]) -> None:
        """The lane's outputs exist: connect whatever watches or drives them (the simulated
        turnstile); ``listeners`` hears the decision loop's events."""

    def ready(self) -> None:
        """The lane decides and its readers run."""

    def close(self) -> None: ...


class ProviderMissing(GateError):
    """The config asks for hardware that this installation does not have."""


def provider_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=PROVIDER_GROUP))


def load_provider(name: str, config: Any) -> HardwareProvider:
    """The provider called ``name``, built with ``config``."""
    found = entry_points(group=PROVIDER_GROUP, name=name)
    if not found:
        hint = " (the hardware simulator is not installed here: pip install -e hw-sim)" if name == "simulator" else ""
        raise ProviderMissing(f"no hardware provider {name!r}{hint}; installed: {', '.join(provider_names()) or 'none'}")
    factory = next(iter(found)).load()
    return factory(config)  # type: ignore[no-any-return]
