"""``gate run``: wire config, store, engine, hardware and readers into one running lane, and run it.

This module is wiring and lifecycle only. Start order matters for safety: outputs are opened
de-energized, the decision loop starts and shows the idle state, inputs are connected, and only
then are readers started and systemd told READY. Stop order is the reverse, and whatever happens
the outputs end in their safe state.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from gate import __version__
from gate.clock import Clock, SystemClock
from gate.config import Config
from gate.errors import ConfigError, Refused
from gate.field.notify import Notifier
from gate.field.status_view import StatusView
from gate.lane.control import LaneControl, TrustReload
from gate.lane.engine import DecisionEngine
from gate.lane.hardware import HardwareProvider, load_provider
from gate.lane.loop import WAKE, DecisionLoop, FireAlarm, Notice, SetMode
from gate.lane.readers import Readers
from gate.lane.turnstile import TurnstileController
from gate.store import Store, ownership_problem, private_database

if TYPE_CHECKING:  # each imported where it is started: a lane without [sync] or metrics never loads them
    from drivers.gpio import GpioLane
    from gate.field.lane_display import LaneDisplay
    from gate.field.metrics import Metrics
    from gate.field.status_server import StatusServer
    from gate.sync.bundle_worker import BundleWorker
    from gate.sync.client import VenueSync
    from gate.trust.bundles import Report

log = logging.getLogger(__name__)

GIL_SWITCH_INTERVAL = 0.001  # seconds (sys.setswitchinterval)
METRICS_MAX_AGE = 1.0  # seconds: scrapes at any rate read the decision loop at most once a second
EXIT_INSTALLATION = 2  # as a config error: the unit's RestartPreventExitStatus; gate doctor says why
EXIT_CRASHED = 70  # EX_SOFTWARE: systemd restarts us
RESTART_SECTIONS = ("gate_id", "venue", "state_dir", "mode", "log_level", "engine", "turnstile", "gpio", "scanner", "camera",
                    "nfc", "simulator", "sync", "status", "display")


class Daemon:
    """One lane. Its parts are built in ``start`` (none before: a lane that is not started holds
    no pins, files or sockets) and are ``None`` until then."""

    def __init__(self, config: Config, clock: Clock | None = None, notifier: Notifier | None = None,
                 hardware: HardwareProvider | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self.hardware = hardware
        self.store: Store | None = None
        self.engine: DecisionEngine | None = None
        self.lane: GpioLane | None = None
        self.loop: DecisionLoop | None = None
        self.control: LaneControl | None = None
        self.readers: Readers | None = None
        self.view: StatusView | None = None
        self.sync: VenueSync | None = None
        self.bundle_worker: BundleWorker | None = None
        self.status_server: StatusServer | None = None
        self.metrics: Metrics | None = None
        self.display: LaneDisplay | None = None
        self._stop = threading.Event()
        self._reload_requested = threading.Event()

    def start(self) -> None:
        from drivers.gpio import GpioLane  # gpiozero: only when there is a lane to drive

        config = self.config
        # The decision loop shares the interpreter with paho's network thread (verifying peers'
        # records) and the readers: a thread that wants the GIL waits up to this long for one
        # that is busy in Python. 5 ms by default; one scan waited for several such turns.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        private_database(config.database)
        for warning in config.warnings():
            log.warning("config: %s", warning)
        seal = None
        if config.sync is not None and config.sync.identity is not None:
            from nacl.signing import SigningKey

            from gate.trust.records import sealer

            seal = sealer(SigningKey(config.sync.identity), config.venue)
        self.store = store = Store(config.database, config.gate_id, seal=seal)
        store.db.start_checkpointer()  # a WAL checkpoint's fsync never lands inside a scan's commit
        if store.created and config.sync is not None:  # a new or emptied database: learn the venue's past first
            from gate.sync.client import RECOVERING

            store.state.set(RECOVERING, 1)
        self.engine = engine = DecisionEngine(config.engine, config.trust_sources(), store)
        hardware = self.hardware = self.hardware or load_provider(config.hardware, config)
        lane = self.lane = GpioLane(config.gpio, pin_factory=hardware.pin_factory())
        turnstile = TurnstileController(lane, config.turnstile, self.clock)
        loop = self.loop = DecisionLoop(engine, store.ledger, turnstile, self.clock, watchdog=self.notifier.watchdog,
                                        clock_sync=hardware.clock_sync())
        self.readers = Readers(config, loop, hardware, self.clock)
        guard = None
        if config.sync is not None:
            from gate.trust.commands import CommandGuard

            guard = CommandGuard(store.state, config.gate_id, config.venue, config.admin_key, config.command_max_age)
        self.control = LaneControl(loop, engine, store.state, self.clock, guard=guard, read_trust=self._read_trust)
        if config.sync is not None:
            self.sync = self._venue_sync()
        self.view = StatusView(config.gate_id, config.venue, loop, store, self.readers, sync=self.sync)

        self._start_display()  # before the loop starts: the screen hears the first mode and fire alarm
        hardware.attach(loop.listeners)
        loop.start()
        lane.listen(loop)
        if self.bundle_worker is not None and self.sync is not None:
            self.bundle_worker.start()
            self.sync.start()  # connects in the background: the lane decides offline meanwhile
        if lane.fire_alarm_active():
            loop.post(FireAlarm(True))
        mode = self.control.start_mode(config.mode)
        if mode != "normal":
            loop.post(SetMode(mode))
        loop.call(lambda: None)  # the loop has taken its first turn: the lane can decide

        self.readers.start()
        self._light_camera()
        self._start_status()
        log.info("lane ready gate=%s venue=%s version=%s mode=%s formats=%s hardware=%s", config.gate_id, config.venue,
                 __version__, config.mode, ",".join(config.engine.formats), config.hardware)
        hardware.ready()
        self.notifier.ready(f"lane {config.gate_id} ready")

    def _start_status(self) -> None:
        """The status socket and metrics: a lane runs without them (logged) rather than not at all."""
        from gate.field.status_server import StatusServer

        assert self.loop is not None and self.view is not None
        status, view = self.config.status, self.view
        if status.socket:
            try:
                self.status_server = StatusServer(status.socket, self.view.snapshot, requests={"snapshot": self._camera_snapshot})
                self.loop.listeners.append(self.status_server.publish)
            except OSError as exc:
                log.error("status socket not started path=%s error=%r (gate status and doctor cannot see this lane)",
                          status.socket, exc.strerror or str(exc))
        if status.metrics is not None:
            from gate.field.metrics import Metrics

            try:
                self.metrics = Metrics(status.metrics, lambda: view.snapshot(max_age=METRICS_MAX_AGE))
                self.loop.listeners.append(self.metrics.observe)
            except OSError as exc:
                log.error("metrics endpoint not started listen=%s:%d error=%r", *status.metrics, exc.strerror or str(exc))

    def _light_camera(self) -> None:
        """The camera's light ([camera] illumination on [gpio.illumination]), switched from the
        camera's thread; the lane's safe state switches it off."""
        camera, reader, lane = self.config.camera, self.readers.camera if self.readers else None, self.lane
        if camera is None or reader is None or lane is None or camera.illumination == "off":
            return
        from drivers.camera import Illumination

        light = Illumination(lambda on: lane.set_light("illumination", on), camera.illumination, camera.illumination_hold)
        reader.illumination = light
        try:
            light.start()
        except Exception as exc:  # the camera reads without its light rather than not at all
            log.error("camera illumination not switched on error=%r", str(exc))

    def _camera_snapshot(self) -> dict[str, Any]:
        """The camera's newest frame for ``gate camera snapshot`` (the status socket's thread)."""
        camera = self.readers.camera if self.readers is not None else None
        if camera is None:
            problem = self.readers.problems.get("camera") if self.readers is not None else None
            raise LookupError(f"this lane's camera is not running: {problem}" if problem else "this lane has no [camera]")
        return camera.snapshot()  # type: ignore[no-any-return]

    def _start_display(self) -> None:
        """The screen at the lane ([display]): a lane runs without it (logged) rather than not at all."""
        if not self.config.display.enabled:
            return
        from gate.field.lane_display import LaneDisplay

        assert self.loop is not None
        try:
            display = LaneDisplay(self.config.display, self.config.gate_id)
            display.start()
        except OSError as exc:
            log.error("lane display not started port=%d error=%r", self.config.display.port, str(exc))
            return
        self.display = display
        self.loop.listeners.append(display.publish)

    def _venue_sync(self) -> VenueSync:
        """The venue bus and the bundle worker, wired to the loop (started once the loop runs)."""
        from gate.sync.bundle_worker import BundleWorker
        from gate.sync.client import VenueSync

        loop, config, store, control = self.loop, self.config, self.store, self.control
        assert loop is not None and store is not None and control is not None and config.sync is not None
        worker = self.bundle_worker = BundleWorker(
            config.database, config.gate_id, config.admin_key, config.venue, config.trust_sources(), self._bundle_report
        )
        control.on_trust_reloaded.append(worker.trust_reloaded)
        sync = VenueSync(config.sync, config.gate_id, store, venue=config.venue, wake=lambda: loop.post(WAKE),
                         status=self._lane_status, on_bundle=worker.offer, on_command=control.on_command,
                         on_hold=loop.hold_admissions, scans_clear=loop.scans_clear)
        control.end_recovery = sync.end_recovery
        loop.after_turn.append(sync.pump)
        if self.engine is not None:  # zone capacity: a lane that does not hear its zone's lanes admits only its share
            self.engine.zones.heard = sync.heard
            loop.after_turn.append(self.engine.zones.tick)
        sync.on_merged.append(loop.peer_records)
        loop.listeners.append(lambda kind, payload: sync.publish_scan(payload) if kind == "decision" else None)
        return sync

    def _lane_status(self) -> dict[str, Any]:
        """The retained status topic's fields (the sync client asks on the loop's thread)."""
        return self.view.lane_status() if self.view is not None else {}

    def _bundle_report(self, report: Report) -> None:
        """From the bundle worker's thread: tell the lane's listeners, and the status at once."""
        from gate.trust.bundles import Outcome

        if report.outcome == Outcome.REFUSED and self.view is not None:
            self.view.bundle_refused(f"{report.what or 'message'} {report.version}: {report.error}")
        if report.outcome == Outcome.APPLIED and report.what == "bundle" and self.sync is not None:
            self.sync.roster_changed()
        if self.loop is not None:
            self.loop.post(Notice("bundle", report.as_dict()))
        if self.sync is not None:
            self.sync.status_soon()

    def _read_trust(self) -> TrustReload:
        """The config file's trust, read again for a reload (signed command or SIGHUP). Other
        sections take effect at the next restart, and the reload says which changed."""
        from gate import config as config_module

        try:
            new = config_module.load(self.config.path)
        except ConfigError as exc:
            raise Refused("config not reloaded: " + "; ".join(exc.problems)) from None
        changed = tuple(name for name in RESTART_SECTIONS if getattr(new, name) != getattr(self.config, name))
        self.config = dataclasses.replace(self.config, gt1_keys=new.gt1_keys, trust_documents=new.trust_documents,
                                          admin_key=new.admin_key, command_max_age=new.command_max_age)
        return TrustReload(new.trust_sources(), new.admin_key, new.command_max_age, changed)

    def stop(self) -> None:
        self.notifier.stopping()
        if self.readers is not None:
            self.readers.stop()
        loop_busy = False
        if self.loop is not None:
            self.loop.stop()  # falls safe in its own finally
            loop_busy = self.loop.alive  # stuck: the database stays its own (SQLite must not close under it)
        if self.sync is not None:
            self.sync.stop(save_mark=not loop_busy)  # after the loop: its last records had their chance to go out
        if self.bundle_worker is not None:
            self.bundle_worker.stop()
        if self.lane is not None:
            self.lane.safe()  # and once more, in case the loop never ran
        for server in (self.status_server, self.metrics, self.display):
            if server is not None:
                server.close()
        if self.hardware is not None:
            self.hardware.close()
        if self.lane is not None:
            self.lane.close()
        if loop_busy:
            log.error("decision loop still busy at stop: database left open, closed by the process's exit")
        elif self.store is not None:
            self.store.close()
        log.info("lane stopped, outputs safe gate=%s", self.config.gate_id)

    def _reload_on_signal(self) -> None:
        """SIGHUP (``systemctl reload gate``): the same as a signed reload command."""
        assert self.loop is not None and self.control is not None
        try:
            self.loop.call(self.control.reload)
        except (Refused, TimeoutError) as exc:
            log.error("reload failed error=%r", str(exc))
        except Exception:  # a bug in reloading must not stop the lane
            log.exception("reload failed")

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, lambda *_: self._reload_requested.set())
        code = 0
        problem = ownership_problem(self.config.database, os.geteuid())
        if problem:  # restarting cannot fix it (exit 2: the unit does not loop), and it is no crash
            log.critical("the ledger cannot be opened: %s", problem)
            return EXIT_INSTALLATION
        try:
            self.start()
            while not self._stop.wait(0.5):
                if self.loop is not None and not self.loop.alive:
                    log.critical("decision loop died, exiting for a restart")
                    code = EXIT_CRASHED
                    break
                if self._reload_requested.is_set():
                    self._reload_requested.clear()
                    self._reload_on_signal()
        except Exception:
            log.critical("gate crashed", exc_info=True)
            code = EXIT_CRASHED
        finally:
            self.stop()
        return code
