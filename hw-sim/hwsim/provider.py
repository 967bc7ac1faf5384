"""The simulator as a lane's hardware (the ``simulator`` provider of ``gate.lane.hardware``):
gpiozero MockFactory pins that the simulated turnstile watches and drives, a simulated camera,
a simulated NTP state, and the control socket through which tests and the demo reach them.

Registered in hw-sim/pyproject.toml's ``gate.hardware`` entry points; gate finds it by name and
never imports this package.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from hwsim.clock import SimulatedClockSync
from hwsim.pins import make_factory

log = logging.getLogger(__name__)


class SimulatedHardware:
    """Implements ``gate.lane.hardware.HardwareProvider``. With ``[simulator] enabled`` a
    simulated turnstile walks people through and the control socket is served; with only
    ``[gpio] pin_factory = "mock"`` the pins are simulated and nothing drives them."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.factory = make_factory()
        self.clock = SimulatedClockSync(config.simulator.clock_synchronized)
        self.turnstile: Any = None  # hwsim.turnstile.SimulatedTurnstile
        self.control: Any = None  # hwsim.control.ControlServer
        self.camera: Any = None  # hwsim.camera.SimulatedCamera

    def pin_factory(self) -> Any:
        return self.factory

    def camera_source(self, camera: Any) -> Any:
        if camera.source != "simulator":
            from drivers.camera import Picamera2Source

            return Picamera2Source.from_config(camera)
        from hwsim.camera import SimulatedCamera

        self.camera = SimulatedCamera(camera.width, camera.height, camera.fps)
        if self.control is not None:
            self.control.camera = self.camera
        return self.camera

    def clock_sync(self) -> SimulatedClockSync:
        return self.clock

    def attach(self, listeners: list[Callable[[str, dict[str, Any]], None]]) -> None:
        simulator = self.config.simulator
        if not simulator.enabled:
            return
        from hwsim.control import ControlServer
        from hwsim.turnstile import SimulatedTurnstile

        self.turnstile = SimulatedTurnstile(self.factory, self.config.gpio, simulator.walk_time)
        self.turnstile.attach()
        if simulator.control_socket:
            self.control = ControlServer(simulator.control_socket, self.turnstile)
            self.control.clock_sync = self.clock
            self.control.camera = self.camera
            listeners.append(self.control.broadcast)
        log.info("simulated hardware attached socket=%s", simulator.control_socket)

    def ready(self) -> None:
        if self.control is not None:
            self.control.set_ready()

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
        if self.turnstile is not None:
            self.turnstile.close()
