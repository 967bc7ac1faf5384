"""``gate run``: wire config, ledger, engine, hardware and readers into one running lane.

Start order matters for safety: outputs are opened de-energized, the decision loop starts and
shows the idle state, inputs are connected, and only then are readers started and systemd told
READY. Stop order is the reverse, and whatever happens the outputs end in their safe state.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from gate import __version__
from gate.clock import Clock, SystemClock, clock_sync
from gate.config import Config
from gate.lane.engine import DecisionEngine
from gate.store.ledger import Ledger
from gate.lane.loop import DecisionLoop, FireAlarm, SetMode
from gate.field.notify import Notifier
from gate.field.status_server import StatusServer, decision_summary
from gate.lane.turnstile import MODES, TurnstileController

log = logging.getLogger(__name__)

EXIT_CRASHED = 70  # EX_SOFTWARE: systemd restarts us
COMMANDED_MODE = "commanded_mode"  # sync_state: the index in MODES of the last set_mode command
RESTART_SECTIONS = ("gate_id", "venue", "state_dir", "mode", "log_level", "engine", "turnstile", "gpio", "scanner", "camera",
                    "nfc", "simulator", "sync", "status")
RECENT_DECISIONS = 20  # what gate status shows when it connects


def private_database(path: Path) -> None:
    """The ledger and its WAL and shared-memory files readable by this user alone, whatever the
    umask. SQLite gives the WAL and -shm files the database file's mode, so the database file is
    made 0600 before SQLite opens it (and files an older version left open to others are fixed)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            os.chmod(companion, 0o600)


class Daemon:
    def __init__(self, config: Config, clock: Clock | None = None, notifier: Notifier | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self.pin_factory: Any = None
        self.sim_turnstile: Any = None
        self.sim_control: Any = None
        self.scanner: Any = None
        self.camera: Any = None
        self.sim_camera: Any = None
        self.nfc: Any = None
        self.reader_problems: dict[str, str] = {}  # reader → why it is not running
        self.lane: Any = None
        self.ledger: Ledger | None = None
        self.loop: DecisionLoop | None = None
        self.sync: Any = None
        self.bundle_worker: Any = None
        self.command_guard: Any = None
        self.engine: DecisionEngine | None = None
        self.bundle_refusals = 0
        self.last_refusal = ""
        self.clock_sync: Any = None
        self.status_server: Any = None
        self.metrics: Any = None
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_DECISIONS)
        self.started_at = time.time()
        self._stop = threading.Event()
        self._reload_requested = threading.Event()

    def start(self) -> None:
        config = self.config
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        private_database(config.database)
        self.ledger = Ledger(config.database, config.gate_id)
        engine = self.engine = DecisionEngine(config.engine, config.trust_sources(), self.ledger)

        from drivers.gpio import GpioLane  # gpiozero: only when there is a lane to drive

        if config.gpio.pin_factory == "mock":
            from hwsim.pins import make_factory

            self.pin_factory = make_factory()
        self.lane = GpioLane(config.gpio, pin_factory=self.pin_factory)
        turnstile = TurnstileController(self.lane, config.turnstile, self.clock)
        self.clock_sync = clock_sync(config.simulator)
        self.loop = DecisionLoop(engine, self.ledger, turnstile, self.clock, watchdog=self.notifier.watchdog,
                                 clock_sync=self.clock_sync)
        self.loop.listeners.append(self._remember_decision)
        self.loop.reload = self._reload
        self.loop.on_mode = lambda mode: self.ledger.set_sync_state(COMMANDED_MODE, MODES.index(mode))  # type: ignore[union-attr]
        if config.sync is not None:
            self._start_sync()

        if config.simulator.enabled:
            self._start_simulator()
        self.loop.start()
        self.lane.listen(self.loop)
        if self.lane.fire_alarm_active():
            self.loop.post(FireAlarm(True))
        mode = self._start_mode()
        if mode != "normal":
            self.loop.post(SetMode(mode))
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
        if config.camera is not None:
            self._start_reader("camera", self._start_camera)
        if config.nfc is not None:
            self._start_reader("nfc", self._start_nfc)
        self._start_status()
        log.info(
            "lane ready gate=%s venue=%s version=%s mode=%s formats=%s",
            config.gate_id,
            config.venue,
            __version__,
            config.mode,
            ",".join(config.engine.formats),
        )
        if self.sim_control is not None:
            self.sim_control.set_ready()
        self.notifier.ready(f"lane {config.gate_id} ready")

    def _start_reader(self, name: str, start: Any) -> None:
        """A reader that cannot start (no camera, no NFC reader, a missing library) is reported
        and left out: the lane goes on with the readers it has, rather than not at all."""
        try:
            start()
        except Exception as exc:
            self.reader_problems[name] = str(exc)
            log.error("reader not started reader=%s error=%r", name, str(exc))

    def _start_camera(self) -> None:
        from drivers.camera import CameraReader, Picamera2Source, Region
        from drivers.decoders import make_decoder

        cam, loop = self.config.camera, self.loop
        assert cam is not None and loop is not None
        decoder = make_decoder(cam.decoder, cam.symbologies)
        if cam.source == "simulator":
            from hwsim.camera import SimulatedCamera

            source: Any = SimulatedCamera(cam.width, cam.height, cam.fps)
            self.sim_camera = source
            if self.sim_control is not None:
                self.sim_control.camera = source
        else:
            source = Picamera2Source(cam.width, cam.height, cam.fps, cam.index)
        camera = CameraReader(
            source,
            decoder,
            lambda text, _symbology, seen_at: loop.scan(text, "camera", cam.direction, received=seen_at),
            region=Region(*cam.region) if cam.region else None,
            downscale=cam.downscale,
            hold_off=cam.hold_off,
        )
        camera.start()
        self.camera = camera  # only a reader that started is stopped and reported
        log.info("camera reading source=%s decoder=%s symbologies=%s", cam.source, cam.decoder, ",".join(cam.symbologies))

    def _start_nfc(self) -> None:
        from drivers.nfc_reader import NfcReader

        nfc, loop = self.config.nfc, self.loop
        assert nfc is not None and loop is not None
        reader = NfcReader(
            nfc.device,
            self.config.gate_id,
            lambda text, began: loop.scan(text, "nfc", nfc.direction, received=began),
            lambda answer, nonce, gate_id, began: loop.tap(answer, nonce, gate_id, nfc.direction, received=began),
            exchange_timeout=nfc.exchange_timeout,
            reconnect_interval=nfc.reconnect_interval,
            wall_clock=self.clock.now,
        )
        reader.start()
        self.nfc = reader

    def _start_status(self) -> None:
        """The status socket and metrics: a lane runs without them (logged) rather than not at all."""
        status = self.config.status
        if status.socket:
            try:
                self.status_server = StatusServer(status.socket, self.status_view)
                self.loop.listeners.append(self.status_server.publish)  # type: ignore[union-attr]
            except OSError as exc:
                log.error("status socket not started path=%s error=%r (gate status and doctor cannot see this lane)",
                          status.socket, exc.strerror or str(exc))
        if status.metrics is not None:
            from gate.field.metrics import Metrics

            try:
                self.metrics = Metrics(status.metrics, self.status_view)
                self.loop.listeners.append(self.metrics.observe)  # type: ignore[union-attr]
            except OSError as exc:
                log.error("metrics endpoint not started listen=%s:%d error=%r", *status.metrics, exc.strerror or str(exc))

    def _remember_decision(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "decision":
            self.recent.appendleft(decision_summary(payload, self.clock.now()))

    def lane_status(self) -> dict[str, Any]:
        """What the lane says about itself on the bus and to a technician (on the loop thread)."""
        from gate.trust.bundles import held

        assert self.loop is not None and self.ledger is not None
        return {
            **self.loop.status(),
            "version": __version__,
            "venue": self.config.venue,
            "readers": self.readers_status(),
            "bundle": {**held(self.ledger).as_dict(), "refused": self.bundle_refusals, "last_refusal": self.last_refusal},
        }

    def status_view(self) -> dict[str, Any]:
        """``gate status``'s snapshot (any thread). Answers even when the loop hangs, and says so."""
        view: dict[str, Any] = {"gate": self.config.gate_id, "venue": self.config.venue, "version": __version__,
                                "pid": os.getpid(), "started": round(self.started_at, 3),
                                "uptime": round(time.time() - self.started_at, 1)}
        if self.loop is None or not self.loop.alive:
            return {**view, "problem": "the decision loop is not running"}
        try:
            return {**view, **self.loop.call(self._status_on_loop, timeout=1.0)}
        except TimeoutError:
            return {**view, "problem": "the decision loop is not answering (systemd's watchdog restarts a hung lane)"}

    def _status_on_loop(self) -> dict[str, Any]:
        assert self.ledger is not None
        sync = None
        if self.sync is not None:
            sync = {"connected": self.sync.connected, "broker": f"{self.config.sync.host}:{self.config.sync.port}",  # type: ignore[union-attr]
                    "outbox": self.sync.outbox_size(), "conflicts": self.ledger.conflict_count(), "counters": dict(self.sync.counters)}
        return {**self.lane_status(), "sync": sync, "ledger_seq": self.ledger.last_seq(), "recent": list(self.recent)}

    def readers_status(self) -> dict[str, Any]:
        """What each configured reader is doing (status topic, ``gate status``)."""
        readers: dict[str, Any] = {name: {"problem": problem} for name, problem in self.reader_problems.items()}
        if self.scanner is not None:
            readers["scanner"] = {"connected": self.scanner.connected.is_set(), "lines": self.scanner.lines_read}
        if self.camera is not None:
            readers["camera"] = self.camera.status()
        if self.nfc is not None:
            readers["nfc"] = {"connected": self.nfc.connected.is_set(), "taps": self.nfc.taps, "failed": self.nfc.failed_taps}
        return readers

    def _start_mode(self) -> str:
        """The config's mode, unless a signed command set another one (it outlives restarts)."""
        assert self.ledger is not None
        commanded = self.ledger.sync_state(COMMANDED_MODE, -1)
        if 0 <= commanded < len(MODES) and MODES[commanded] != self.config.mode:
            log.warning("mode=%s as a signed command set it (config says %s); a set_mode command changes it",
                        MODES[commanded], self.config.mode)
            return MODES[commanded]
        return self.config.mode

    def _start_sync(self) -> None:
        from gate.trust.commands import CommandGuard
        from gate.lane.loop import WAKE
        from gate.sync.bundle_worker import BundleWorker
        from gate.sync.client import VenueSync

        loop, config, ledger = self.loop, self.config, self.ledger
        assert loop is not None and ledger is not None and config.sync is not None
        self.sync = VenueSync(
            config.sync,
            config.gate_id,
            ledger,
            wake=lambda: loop.post(WAKE),
            status=self.lane_status,
        )
        loop.sync = self.sync
        self.sync.on_merged.append(loop.peer_records)
        loop.listeners.append(lambda kind, payload: self.sync.publish_scan(payload) if kind == "decision" else None)
        self.bundle_worker = BundleWorker(
            config.database, config.gate_id, config.admin_key, config.venue, config.trust_sources(), self._bundle_report
        )
        self.sync.on_bundle = self.bundle_worker.offer
        self.command_guard = CommandGuard(ledger, config.gate_id, config.venue, config.admin_key, config.command_max_age)
        self.sync.on_command = self._on_command
        self.bundle_worker.start()
        self.sync.start()  # connects in the background: the lane decides offline meanwhile

    def _bundle_report(self, report: Any) -> None:
        """From the bundle worker's thread: tell the lane's listeners, and the status at once."""
        from gate.trust.bundles import Outcome
        from gate.lane.loop import Notice

        if report.outcome == Outcome.REFUSED:
            self.bundle_refusals += 1
            self.last_refusal = f"{report.what or 'message'} {report.version}: {report.error}"[:300]
        if self.loop is not None:
            self.loop.post(Notice("bundle", report.as_dict()))
        if self.sync is not None:
            self.sync.status_soon()

    def _on_command(self, payload: bytes) -> dict[str, Any]:
        """A signed command from the bus (on the loop's thread): check it, carry it out."""
        from gate.trust.commands import describe
        from gate.lane.loop import Refused
        from gate.trust.signed import SignedError

        assert self.loop is not None
        try:
            command = self.command_guard.check(payload, self.clock.now())
        except SignedError as exc:
            log.warning("command refused kind=%s error=%r", exc.kind, str(exc))
            return {"nonce": exc.nonce, "ok": False, "text": str(exc), "kind": exc.kind}
        try:
            done = self.loop.carry_out(command.action, mode=command.mode, direction=command.direction,
                                       note=f"nonce {command.nonce[:16]}")
        except Refused as exc:
            log.warning("command not carried out command=%s error=%r", command.action, str(exc))
            return {"nonce": command.nonce, "ok": False, "text": str(exc), "kind": "refused", **describe(command)}
        log.info("command carried out command=%s result=%r", command.action, done)
        return {"nonce": command.nonce, "ok": True, "text": done, **describe(command)}

    def _reload(self) -> str:
        """Read the config file's trust again (files, GT1 issuers, admin key) and the database's
        documents, on the loop's thread. Other sections take effect at the next restart."""
        from gate import config as config_module
        from gate.formats import TrustError
        from gate.lane.loop import Refused

        assert self.engine is not None
        try:
            new = config_module.load(self.config.path)
        except config_module.ConfigError as exc:
            raise Refused("config not reloaded: " + "; ".join(exc.problems)) from None
        previous = self.engine.sources
        self.engine.sources = new.trust_sources()
        try:
            self.engine.refresh_trust(force=True)
        except TrustError as exc:
            self.engine.sources = previous
            raise Refused(f"trust not reloaded, previous kept: {exc}") from None
        if self.bundle_worker is not None:
            self.bundle_worker.sources, self.bundle_worker.admin_key = new.trust_sources(), new.admin_key
            self.command_guard.admin_key, self.command_guard.max_age = new.admin_key, new.command_max_age
        changed = [name for name in RESTART_SECTIONS if getattr(new, name) != getattr(self.config, name)]
        self.config = dataclasses.replace(self.config, gt1_keys=new.gt1_keys, trust_documents=new.trust_documents,
                                          admin_key=new.admin_key, command_max_age=new.command_max_age)
        log.info("reloaded trust restart_needed_for=%s", ",".join(changed) or "-")
        return "trust reloaded" + (f"; restart needed for: {', '.join(changed)}" if changed else "")

    def _start_simulator(self) -> None:
        from hwsim.control import ControlServer
        from hwsim.turnstile import SimulatedTurnstile

        assert self.loop is not None
        self.sim_turnstile = SimulatedTurnstile(self.pin_factory, self.config.gpio, self.config.simulator.walk_time)
        self.sim_turnstile.attach()
        if self.config.simulator.control_socket:
            self.sim_control = ControlServer(self.config.simulator.control_socket, self.sim_turnstile)
            self.sim_control.clock_sync = self.clock_sync
            self.loop.listeners.append(self.sim_control.broadcast)
        log.info("simulated hardware attached socket=%s", self.config.simulator.control_socket)

    def stop(self) -> None:
        self.notifier.stopping()
        for reader in (self.scanner, self.camera, self.nfc):
            if reader is not None:
                reader.stop()
        if self.loop is not None:
            self.loop.stop()  # falls safe in its own finally
        if self.sync is not None:
            self.sync.stop()  # after the loop: its last records had their chance to go out
        if self.bundle_worker is not None:
            self.bundle_worker.stop()
        if self.lane is not None:
            self.lane.safe()  # and once more, in case the loop never ran
        for server in (self.status_server, self.metrics):
            if server is not None:
                server.close()
        if self.sim_control is not None:
            self.sim_control.close()
        if self.sim_turnstile is not None:
            self.sim_turnstile.close()
        if self.lane is not None:
            self.lane.close()
        if self.ledger is not None:
            self.ledger.close()
        log.info("lane stopped, outputs safe gate=%s", self.config.gate_id)

    def _reload_on_signal(self) -> None:
        """SIGHUP (``systemctl reload gate``): the same as a signed reload command."""
        from gate.lane.loop import Refused

        assert self.loop is not None
        try:
            self.loop.call(self._reload)
        except (Refused, TimeoutError) as exc:
            log.error("reload failed error=%r", str(exc))

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, lambda *_: self._reload_requested.set())
        code = 0
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
