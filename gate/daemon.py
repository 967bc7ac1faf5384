"""``gate run``: wire config, ledger, engine, hardware and readers into one running lane.

Start order matters for safety: outputs are opened de-energized, the decision loop starts and
shows the idle state, inputs are connected, and only then are readers started and systemd told
READY. Stop order is the reverse, and whatever happens the outputs end in their safe state.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from gate import __version__
from gate.clock import Clock, SystemClock
from gate.config import Config
from gate.engine import DecisionEngine, TrustSources
from gate.ledger import Ledger
from gate.loop import DecisionLoop, FireAlarm, SetMode
from gate.notify import Notifier
from gate.turnstile import TurnstileController

log = logging.getLogger(__name__)

EXIT_CRASHED = 70  # EX_SOFTWARE: systemd restarts us


class Daemon:
    def __init__(self, config: Config, clock: Clock | None = None, notifier: Notifier | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self.pin_factory: Any = None
        self.sim_turnstile: Any = None
        self.sim_control: Any = None
        self.scanner: Any = None
        self.lane: Any = None
        self.ledger: Ledger | None = None
        self.loop: DecisionLoop | None = None
        self.sync: Any = None
        self._stop = threading.Event()

    def start(self) -> None:
        config = self.config
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ledger = Ledger(config.database, config.gate_id)
        os.chmod(config.database, 0o600)
        engine = DecisionEngine(config.engine, TrustSources(config.gt1_keys, config.trust_documents), self.ledger)

        from drivers.gpio import GpioLane  # gpiozero: only when there is a lane to drive

        if config.gpio.pin_factory == "mock":
            from hwsim.pins import make_factory

            self.pin_factory = make_factory()
        self.lane = GpioLane(config.gpio, pin_factory=self.pin_factory)
        turnstile = TurnstileController(self.lane, config.turnstile, self.clock)
        self.loop = DecisionLoop(engine, self.ledger, turnstile, self.clock, watchdog=self.notifier.watchdog)
        if config.sync is not None:
            self._start_sync()

        if config.simulator.enabled:
            self._start_simulator()
        self.loop.start()
        self.lane.listen(self.loop)
        if self.lane.fire_alarm_active():
            self.loop.post(FireAlarm(True))
        if config.mode != "normal":
            self.loop.post(SetMode(config.mode))
        self.loop.call(lambda: None)  # the loop has taken its first turn: the lane can decide

        if config.scanner is not None:
            from drivers.serial_scanner import SerialScanner

            sc = config.scanner
            self.scanner = SerialScanner(
                sc.port,
                lambda text: self.loop.scan(text, "scanner", sc.direction),  # type: ignore[union-attr]
                baudrate=sc.baudrate,
                max_line=sc.max_line,
                line_timeout=sc.line_timeout,
                unterminated=sc.unterminated,
                reconnect_interval=sc.reconnect_interval,
            )
            self.scanner.start()
        log.info(
            "lane ready gate=%s venue=%s version=%s mode=%s formats=%s",
            config.gate_id,
            config.venue,
            __version__,
            config.mode,
            ",".join(config.engine.formats),
        )
        self.notifier.ready(f"lane {config.gate_id} ready")

    def _start_sync(self) -> None:
        from gate.loop import WAKE
        from gate.sync.client import VenueSync

        loop, config = self.loop, self.config
        assert loop is not None and self.ledger is not None and config.sync is not None
        self.sync = VenueSync(
            config.sync,
            config.gate_id,
            self.ledger,
            wake=lambda: loop.post(WAKE),
            status=lambda: {**loop.status(), "version": __version__, "venue": config.venue},
        )
        loop.sync = self.sync
        self.sync.on_merged.append(loop.peer_records)
        loop.listeners.append(lambda kind, payload: self.sync.publish_scan(payload) if kind == "decision" else None)
        self.sync.start()  # connects in the background: the lane decides offline meanwhile

    def _start_simulator(self) -> None:
        from hwsim.control import ControlServer
        from hwsim.turnstile import SimulatedTurnstile

        assert self.loop is not None
        self.sim_turnstile = SimulatedTurnstile(self.pin_factory, self.config.gpio, self.config.simulator.walk_time)
        self.sim_turnstile.attach()
        if self.config.simulator.control_socket:
            self.sim_control = ControlServer(self.config.simulator.control_socket, self.sim_turnstile)
            self.loop.listeners.append(self.sim_control.broadcast)
        log.info("simulated hardware attached socket=%s", self.config.simulator.control_socket)

    def stop(self) -> None:
        self.notifier.stopping()
        if self.scanner is not None:
            self.scanner.stop()
        if self.loop is not None:
            self.loop.stop()  # falls safe in its own finally
        if self.sync is not None:
            self.sync.stop()  # after the loop: its last records had their chance to go out
        if self.lane is not None:
            self.lane.safe()  # and once more, in case the loop never ran
        if self.sim_control is not None:
            self.sim_control.close()
        if self.sim_turnstile is not None:
            self.sim_turnstile.close()
        if self.lane is not None:
            self.lane.close()
        if self.ledger is not None:
            self.ledger.close()
        log.info("lane stopped, outputs safe gate=%s", self.config.gate_id)

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        code = 0
        try:
            self.start()
            while not self._stop.wait(0.5):
                if self.loop is not None and not self.loop.alive:
                    log.critical("decision loop died, exiting for a restart")
                    code = EXIT_CRASHED
                    break
        except Exception:
            log.critical("gate crashed", exc_info=True)
            code = EXIT_CRASHED
        finally:
            self.stop()
        return code
