"""One TOML file, read into typed objects at start-up.

Every option is read when the config is loaded (as Klipper does), so a typo is an error at
start-up and not a surprise at the first scan. Errors name the key and what is wrong; all of
them are collected, so a technician fixes the file in one go. ``gate check-config`` and
``gate run`` exit 2 on any of them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate import trust
from gate.decision import DIRECTIONS, IN, MODES
from gate.errors import ConfigError
from gate.formats import FORMATS, TrustError, gt1
from gate.formats.trustdoc import Fields, decode_key
from gate.lane.engine import EngineSettings, TrustSources
from gate.lane.turnstile import UNLOCK_MODES, TurnstileSettings
from gate.policy import REENTRY_POLICIES, GatePolicy
from gate.trust import TrustDocument

DEFAULT_PATH = "/etc/gate/gate.toml"
_REQUIRED = object()
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
BCM_PINS = range(0, 28)


MAX_CONFIG_BYTES = 1024 * 1024  # a real gate.toml is a few KiB


class _Section:
    """Reads one table; remembers what was read so that leftovers are reported as unknown."""

    def __init__(self, name: str, data: Any, problems: list[str]) -> None:
        self.name = name
        self.problems = problems
        if not isinstance(data, dict):
            problems.append(f"{name}: must be a table")
            data = {}
        self.data = data
        self.read: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.name}.{key}" if self.name else key

    def _error(self, key: str, message: str) -> None:
        self.problems.append(f"{self.key(key)}: {message}")

    problem = _error  # for the other programs' configs that read their tables with this class (TomlTable)

    def get(
        self,
        key: str,
        kind: type,
        default: Any = _REQUIRED,
        *,
        choices: tuple[Any, ...] | None = None,
        minval: float | None = None,
        maxval: float | None = None,
    ) -> Any:
        self.read.add(key)
        if key not in self.data:
            if default is _REQUIRED:
                self._error(key, "required value missing")
            return None if default is _REQUIRED else default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is list:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                self._error(key, f"expected a list of strings, got {value!r}")
                return default if default is not _REQUIRED else []
        elif isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            self._error(key, f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
            return None if default is _REQUIRED else default
        if kind is float and not math.isfinite(value):  # TOML has nan and inf: a timeout of nan never ends
            self._error(key, f"must be a finite number, got {value!r}")
            return None if default is _REQUIRED else default
        if choices is not None and value not in choices:
            self._error(key, f"must be one of {', '.join(map(str, choices))}, got {value!r}")
        if minval is not None and value < minval:
            self._error(key, f"must be at least {minval}, got {value!r}")
        if maxval is not None and value > maxval:
            self._error(key, f"must be at most {maxval}, got {value!r}")
        return value

    def table(self, key: str) -> "_Section | None":
        self.read.add(key)
        if key not in self.data:
            return None
        return type(self)(self.key(key), self.data[key], self.problems)

    def tables(self, key: str) -> list["_Section"]:
        """An array of tables (``[[name.key]]``), each read as strictly."""
        self.read.add(key)
        items = self.data.get(key, [])
        if not isinstance(items, list):
            self._error(key, f"must be an array of tables ([[{self.name}.{key}]])")
            return []
        return [type(self)(f"{self.key(key)}[{i}]", item, self.problems) for i, item in enumerate(items)]

    def path(self, key: str, base: Path, default: Any = _REQUIRED) -> Path | None:
        """A file named relative to the config's folder."""
        value = self.get(key, str, default)
        return (base / value) if value else None

    def finish(self) -> None:
        for key in self.data:
            if key not in self.read:
                self._error(key, "unknown key")



TomlTable = _Section  # gate bridge's config reads its tables with the lane config's own strict reader

@dataclass(frozen=True)
class OutputPin:
    pin: int
    active_high: bool = True


@dataclass(frozen=True)
class InputPin:
    pin: int
    pull_up: bool = True  # contact to ground, as on most turnstile PASS outputs
    bounce: float = 0.02
    normally_closed: bool = False  # fire loop: the contact opens on alarm (and on a cut wire)


# Pins with a job of their own on a Raspberry Pi (docs/technicians.md, "Pins to avoid").
RESERVED_PINS = {0: "the HAT ID EEPROM's I2C (ID_SD)", 1: "the HAT ID EEPROM's I2C (ID_SC)", 2: "I2C SDA (pull-up fitted)",
                 3: "I2C SCL (pull-up fitted)", 14: "the UART's TXD (a serial scanner, the console)",
                 15: "the UART's RXD (a serial scanner, the console)"}


@dataclass(frozen=True)
class GpioConfig:
    pin_factory: str = "default"  # "default": lgpio on a Pi; "mock": simulator
    chip: int | None = None  # /dev/gpiochipN; None ("auto"): the Pi's own controller, by its label (drivers.gpio.pi_chip)
    unlock: dict[str, OutputPin] = field(default_factory=dict)
    lights: dict[str, OutputPin] = field(default_factory=dict)
    buzzer: OutputPin | None = None
    passage: dict[str, InputPin] = field(default_factory=dict)
    fire_alarm: InputPin | None = None
    tamper: InputPin | None = None

    def warnings(self) -> list[str]:
        """Pins that work but are another part's on most Pis (check-config prints them, the lane
        logs them)."""
        return [f"gpio.{name}.pin: GPIO {pin} is {RESERVED_PINS[pin]}; choose another unless that is unused here"
                for name, pin in named_pins(self) if pin in RESERVED_PINS]


@dataclass(frozen=True)
class ScannerConfig:
    """``kind = "serial"``: a scanner in USB-CDC or UART mode on ``port``; ``kind = "hid"``: a USB
    scanner in keyboard mode (its factory setting) on the input device ``device``, typing in
    ``layout`` and ending each code with ``suffix`` (drivers.hid_scanner)."""

    port: str = "/dev/gate-scanner"
    kind: str = "serial"
    device: str = "/dev/gate-scanner-hid"
    layout: str = "us"
    suffix: str = "enter"
    baudrate: int = 9600
    direction: str = IN
    max_line: int = 1024
    line_timeout: float = 0.5
    unterminated: str = "drop"
    reconnect_interval: float = 1.0


@dataclass(frozen=True)
class CameraConfig:
    source: str = "picamera2"  # or "simulator": frames drawn by hw-sim (needs [simulator] enabled)
    index: int = 0
    width: int = 640
    height: int = 480
    fps: float = 30.0
    decoder: str = "zxing"
    symbologies: tuple[str, ...] = ("qr", "pdf417", "aztec")
    region: tuple[int, int, int, int] | None = None  # x, y, width, height in the full frame
    downscale: int = 1
    hold_off: float = 2.0
    direction: str = IN
    # Focus (drivers.camera.CameraControls): a Camera Module 3 starts at 1 dioptre (1 m); tickets
    # are held 10-30 cm away. Cameras without a focus motor ignore these.
    af_mode: str = "manual"  # "manual": the lens stays at lens_position | "continuous": autofocus over af_range
    lens_position: float = 5.0  # dioptres (1 / metres): 5.0 = 20 cm
    af_range: str = "macro"  # "macro" | "normal" | "full" (continuous autofocus only)
    max_exposure_ms: float = 10.0  # longer exposures blur a moving hand; 0: libcamera's own exposure
    stall_seconds: float = 5.0  # no frame for this long: the camera is closed and opened again
    illumination: str = "off"  # [gpio.illumination]: "presence" (on while someone is in front) | "always" | "off"
    illumination_hold: float = 10.0  # seconds the light stays on after the last movement in front of the camera


@dataclass(frozen=True)
class NfcConfig:
    device: str  # nfcpy's path: "usb", "usb:054c:06c1", "tty:AMA0:pn532", "udp:localhost:54321"
    direction: str = IN
    exchange_timeout: float = 1.0
    reconnect_interval: float = 2.0
    poll_interval: float = 0.05  # one poll's start to the next (drivers/nfc_reader.py DEFAULT_POLL_INTERVAL says why)
    targets: tuple[str, ...] = ("106A", "106B")  # nfcpy targets polled, in order (drivers/nfc_reader.py DEFAULT_TARGETS says why)


@dataclass(frozen=True)
class SimulatorConfig:
    enabled: bool = False
    control_socket: str = ""
    walk_time: float = 0.3
    clock_synchronized: bool = True  # the simulated NTP state at start (the control socket flips it)


@dataclass(frozen=True)
class StatusConfig:
    """Where a technician's ``gate status`` and ``gate doctor`` reach the running lane, and the
    optional Prometheus endpoint (loopback only: scrape it through ssh or a local agent)."""

    socket: str = "/run/gate/status.sock"
    metrics: tuple[str, int] | None = None  # (host, port)


@dataclass(frozen=True)
class DisplayConfig:
    """The screen at the lane (gate.field.lane_display): a page on 127.0.0.1:``port`` for Chromium
    in kiosk mode, in the venue's ``language``, welcome in each ticket class's colour."""

    enabled: bool = False
    port: int = 8081
    language: str = "en"
    class_colours: dict[str, str] = field(default_factory=dict)  # ticket class (product) -> "#rrggbb"; "default"
    refused_seconds: float = 3.0
    welcome_seconds: float = 8.0


@dataclass(frozen=True)
class SyncConfig:
    """The venue bus (DESIGN §6). ``password`` is read from ``password_file`` at start-up, so the
    secret is never in the config file that technicians copy around."""

    host: str
    port: int = 1883
    # Failover: the brokers in the order tried ((host, port); the first is host:port). A gate
    # that loses its broker connects to the next (bridged brokers, or an EMQX cluster's nodes).
    brokers: tuple[tuple[str, int], ...] = ()
    topic_root: str = ""  # "gate/v2/<venue>/" unless set
    username: str = ""  # the gate id unless set: the shipped ACL matches on it
    password: str = field(default="", repr=False)
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls: bool = False
    keepalive: int = 15
    status_interval: float = 10.0
    catch_up_interval: float = 30.0
    identity: bytes | None = field(default=None, repr=False)  # this gate's Ed25519 key: signs its ledger records
    # A new (or emptied) database first learns the venue's records, this gate's own past
    # included; "wait": it admits nobody until it has (or a signed end_recovery command);
    # "admit": it admits again after recovery_wait seconds, caught up or not.
    recovery: str = "wait"
    recovery_wait: float = 60.0

    def warnings(self) -> list[str]:
        """What works but should not be so on a real venue (check-config prints it, the lane logs it)."""
        if self.password and not self.tls:
            return ["sync: a password over plain text (tls = false): anyone on the venue network can read it "
                    "and publish as this gate; set ca_file (docs/mqtt.md, 'TLS for the venue bus')"]
        return []

    def lane_problems(self) -> list[str]:
        """What a lane on the bus needs beyond what the admin's tools need."""
        if self.identity is None:
            return ["sync.identity_file: a lane on the venue bus signs its records with its own key "
                    "(gate keygen --out /etc/gate/identity.key; its public half goes into the venue's roster)"]
        return []


@dataclass(frozen=True)
class Config:
    path: str
    gate_id: str
    venue: str
    state_dir: Path
    mode: str
    log_level: str
    engine: EngineSettings
    turnstile: TurnstileSettings
    gpio: GpioConfig
    scanner: ScannerConfig | None
    gt1_keys: dict[bytes, gt1.IssuerKey]
    simulator: SimulatorConfig
    trust_documents: tuple[TrustDocument, ...] = ()
    sync: SyncConfig | None = None
    admin_key: bytes | None = None  # the venue admin's public key: signs bundles and commands
    command_max_age: float = 30.0  # a signed command is carried out within ± this of its issue time
    camera: CameraConfig | None = None
    nfc: NfcConfig | None = None
    status: StatusConfig = StatusConfig()
    display: DisplayConfig = DisplayConfig()

    def trust_sources(self) -> TrustSources:
        return TrustSources(self.gt1_keys, self.trust_documents)

    def warnings(self) -> list[str]:
        """What works but should not be so on a real lane (check-config prints it, the lane logs it)."""
        return [*self.gpio.warnings(), *(self.sync.warnings() if self.sync is not None else [])]

    @property
    def database(self) -> Path:
        return self.state_dir / "gate.db"

    @property
    def hardware(self) -> str:
        """The hardware provider (``gate.lane.hardware``): the simulator's for a simulated lane
        or mock pins, else the Raspberry Pi's."""
        return "simulator" if self.simulator.enabled or self.gpio.pin_factory == "mock" else "pi"


def default_path() -> str:
    return os.environ.get("GATE_CONFIG", DEFAULT_PATH)


def load(path: str | os.PathLike[str]) -> Config:
    path = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except PermissionError:
        raise ConfigError(path, ["not readable by this user"]) from None
    except OSError as exc:
        raise ConfigError(path, [f"cannot be read: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(path, [f"larger than {MAX_CONFIG_BYTES // 1024} KiB: not a gate config"])
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"not UTF-8 text (byte {exc.start})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    return parse(data, path)


def parse(data: dict[str, Any], path: str = "<config>") -> Config:
    problems: list[str] = []
    root = _Section("", data, problems)

    gate = root.table("gate") or _Section("gate", {}, problems)
    gate_id = gate.get("id", str)
    venue = gate.get("venue", str)
    for key, value in (("id", gate_id), ("venue", venue)):
        if value is not None and not _NAME.match(value):
            problems.append(f"gate.{key}: letters, digits, '.', '_' and '-' only (max 64), got {value!r}")
    state_dir = Path(gate.get("state_dir", str, "/var/lib/gate"))
    mode = gate.get("mode", str, "normal", choices=MODES)
    log_level = gate.get("log_level", str, "info", choices=("debug", "info", "warning", "error"))
    gate.finish()

    engine = _read_policy(root.table("policy") or _Section("policy", {}, problems))
    clock_section = root.table("clock") or _Section("clock", {}, problems)
    unsynchronized = clock_section.get("unsynchronized", str, "refuse", choices=("refuse", "admit"))
    clock_section.finish()
    engine = dataclasses.replace(engine, gate_id=gate_id or "", venue=venue or "", unsynchronized_clock=unsynchronized)
    status_section = root.table("status")
    status = _read_status(status_section) if status_section is not None else StatusConfig()
    display_section = root.table("display")
    display = _read_display(display_section) if display_section is not None else DisplayConfig()
    turnstile_section = root.table("turnstile") or _Section("turnstile", {}, problems)
    gpio = _read_gpio(root.table("gpio") or _Section("gpio", {}, problems))
    turnstile = _read_turnstile(turnstile_section, gpio)
    scanner_section = root.table("scanner")
    scanner = _read_scanner(scanner_section) if scanner_section is not None else None
    camera_section, nfc_section = root.table("camera"), root.table("nfc")
    camera = _read_camera(camera_section) if camera_section is not None else None
    nfc = _read_nfc(nfc_section) if nfc_section is not None else None
    gt1_keys, trust_documents, admin_key, command_max_age = _read_trust(root.table("trust"), Path(path).parent, problems)
    sync_section = root.table("sync")
    sync = _read_sync(sync_section, Path(path).parent, gate_id or "", venue or "") if sync_section is not None else None
    sim = root.table("simulator")
    simulator = SimulatorConfig()
    if sim is not None:
        simulator = SimulatorConfig(
            enabled=sim.get("enabled", bool, False),
            control_socket=sim.get("control_socket", str, str(state_dir / "sim.sock")),
            walk_time=sim.get("walk_time", float, 0.3, minval=0.0, maxval=60.0),
            clock_synchronized=sim.get("clock_synchronized", bool, True),
        )
        sim.finish()
    root.finish()

    # Combinations that cannot work.
    if simulator.enabled and gpio.pin_factory != "mock":
        gpio = GpioConfig(**{**gpio.__dict__, "pin_factory": "mock"})
    for name, reader in (("scanner", scanner), ("camera", camera), ("nfc", nfc)):
        if reader is not None and reader.direction not in gpio.unlock:
            problems.append(f"{name}.direction: {reader.direction!r} needs gpio.unlock_{reader.direction}")
    if camera is not None:  # the camera's light: on when wired, unless told otherwise
        lit = "illumination" in gpio.lights
        camera = dataclasses.replace(camera, illumination=camera.illumination or ("presence" if lit else "off"))
        if camera.illumination != "off" and not lit:
            problems.append(f"camera.illumination: {camera.illumination!r} needs the light's pin ([gpio.illumination] pin = ...)")
    if camera is not None and camera.source == "simulator" and not simulator.enabled:
        problems.append("camera.source: 'simulator' needs [simulator] enabled = true")
    for direction in gpio.unlock:
        if direction not in gpio.passage:
            problems.append(f"gpio.passage_{direction}: required when gpio.unlock_{direction} is set")
    if problems:
        raise ConfigError(path, problems)
    return Config(
        path=path,
        gate_id=gate_id,
        venue=venue,
        state_dir=state_dir,
        mode=mode,
        log_level=log_level,
        engine=engine,
        turnstile=turnstile,
        gpio=gpio,
        scanner=scanner,
        gt1_keys=gt1_keys,
        simulator=simulator,
        trust_documents=trust_documents,
        sync=sync,
        admin_key=admin_key,
        command_max_age=command_max_age,
        camera=camera,
        nfc=nfc,
        status=status,
        display=display,
    )


def _read_policy(sec: _Section) -> EngineSettings:
    formats = sec.get("formats", list, ["gt1"])
    for name in formats:
        if name not in FORMATS:
            sec._error("formats", f"unknown format {name!r} (known: {', '.join(FORMATS)})")
    zone = sec.get("zone", str, "")
    settings = EngineSettings(
        formats=tuple(n for n in formats if n in FORMATS),
        gate_policy=GatePolicy(
            events=frozenset(sec.get("events", list, [])),
            products=frozenset(sec.get("products", list, [])),
            zone=zone or None,
            reentry=sec.get("reentry", str, "deny", choices=REENTRY_POLICIES),
        ),
        proof_max_age=sec.get("proof_max_age", float, 30.0, minval=1.0, maxval=600.0),
        proof_max_ahead=sec.get("proof_max_ahead", float, 5.0, minval=0.0, maxval=600.0),
    )
    sec.finish()
    return settings


def _read_turnstile(sec: _Section, gpio: GpioConfig) -> TurnstileSettings:
    settings = TurnstileSettings(
        unlock_mode=sec.get("unlock_mode", str, "pulse", choices=UNLOCK_MODES),
        pulse=sec.get("pulse_ms", int, 300, minval=20, maxval=10_000) / 1000,
        passage_timeout=sec.get("passage_timeout", float, 8.0, minval=0.1, maxval=600.0),
        deny_display=sec.get("deny_display", float, 1.5, minval=0.0, maxval=60.0),
        exit=sec.get("exit", str, "free", choices=("free", "scan")),
        directions=tuple(d for d in DIRECTIONS if d in gpio.unlock),
    )
    sec.finish()
    return settings


def _output(sec: _Section) -> OutputPin:
    pin = OutputPin(sec.get("pin", int, minval=BCM_PINS.start, maxval=BCM_PINS.stop - 1), sec.get("active_high", bool, True))
    sec.finish()
    return pin


def _input(sec: _Section, fire: bool = False) -> InputPin:
    pin = InputPin(
        pin=sec.get("pin", int, minval=BCM_PINS.start, maxval=BCM_PINS.stop - 1),
        pull_up=sec.get("pull_up", bool, True),
        bounce=sec.get("bounce_ms", int, 20, minval=0, maxval=1000) / 1000,
        normally_closed=sec.get("normally_closed", bool, True) if fire else False,
    )
    sec.finish()
    return pin


def _read_gpio(sec: _Section) -> GpioConfig:
    pin_factory = sec.get("pin_factory", str, "default", choices=("default", "mock"))
    chip = _read_chip(sec)
    unlock = {d: _output(t) for d in DIRECTIONS if (t := sec.table(f"unlock_{d}"))}
    if IN not in unlock:
        sec._error("unlock_in", "required table missing (the entry relay)")
    lights = {c: _output(t) for c in ("green", "red", "amber", "illumination") if (t := sec.table(c))}  # illumination: [camera]
    buzzer_table = sec.table("buzzer")
    passage = {d: _input(t) for d in DIRECTIONS if (t := sec.table(f"passage_{d}"))}
    fire_table, tamper_table = sec.table("fire_alarm"), sec.table("tamper")
    gpio = GpioConfig(
        pin_factory=pin_factory,
        chip=chip,
        unlock=unlock,
        lights=lights,
        buzzer=_output(buzzer_table) if buzzer_table else None,
        passage=passage,
        fire_alarm=_input(fire_table, fire=True) if fire_table else None,
        tamper=_input(tamper_table) if tamper_table else None,
    )
    sec.finish()
    used: dict[int, str] = {}
    for name, pin in named_pins(gpio):
        if pin is None:
            continue
        if pin in used:
            sec.problems.append(f"gpio.{name}.pin: pin {pin} is already used by gpio.{used[pin]}.pin")
        else:
            used[pin] = name
    return gpio


def _read_chip(sec: _Section) -> int | None:
    """``chip = "auto"`` (the default: the Pi's own GPIO controller, whatever its number on this
    model and kernel) or the N of /dev/gpiochipN."""
    sec.read.add("chip")
    raw = sec.data.get("chip", "auto")
    if raw == "auto":
        return None
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 63:
        return raw
    sec._error("chip", f'"auto" or the number N of /dev/gpiochipN (0-63), got {raw!r}')
    return None


def load_gpio(path: str | os.PathLike[str]) -> GpioConfig:
    """Only the ``[gpio]`` table of a config file (the installer's boot-time pin defaults need
    the pins, not the trust keys a new lane has not been given yet)."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.loads(f.read(MAX_CONFIG_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, [f"cannot be read: {exc}"]) from None
    problems: list[str] = []
    gpio = _read_gpio(_Section("gpio", data.get("gpio", {}), problems))
    if problems:
        raise ConfigError(path, problems)
    return gpio


def named_pins(gpio: GpioConfig) -> list[tuple[str, int | None]]:
    pins = [(f"unlock_{d}", p.pin) for d, p in gpio.unlock.items()]
    pins += [(c, p.pin) for c, p in gpio.lights.items()]
    pins += [(f"passage_{d}", p.pin) for d, p in gpio.passage.items()]
    pins += [(name, p.pin) for name, p in (("buzzer", gpio.buzzer), ("fire_alarm", gpio.fire_alarm), ("tamper", gpio.tamper)) if p]
    return pins


_SERIAL_ONLY = ("port", "baudrate")
_HID_ONLY = ("device", "layout", "suffix")


def _read_scanner(sec: _Section) -> ScannerConfig:
    from drivers.hid_scanner import LAYOUTS, SUFFIXES  # pure tables: evdev is imported only to open the device

    kind = sec.get("kind", str, "serial", choices=("serial", "hid"))
    for key in _HID_ONLY if kind == "serial" else _SERIAL_ONLY:
        if key in sec.data:
            sec._error(key, f"only for kind = \"{'hid' if kind == 'serial' else 'serial'}\" (this scanner is kind = \"{kind}\")")
            sec.read.add(key)
    serial_port = sec.get("port", str) if kind == "serial" else ""
    scanner = ScannerConfig(
        kind=kind,
        port=serial_port,
        device=sec.get("device", str, "/dev/gate-scanner-hid") if kind == "hid" else "",
        layout=sec.get("layout", str, "us", choices=tuple(LAYOUTS)) if kind == "hid" else "us",
        suffix=sec.get("suffix", str, "enter", choices=tuple(SUFFIXES)) if kind == "hid" else "enter",
        baudrate=sec.get("baudrate", int, 9600, choices=(1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)) if kind == "serial" else 9600,
        direction=sec.get("direction", str, IN, choices=DIRECTIONS),
        max_line=sec.get("max_line", int, 1024, minval=16, maxval=65536),
        line_timeout=sec.get("line_timeout", float, 0.5, minval=0.01, maxval=60.0),
        unterminated=sec.get("unterminated", str, "drop", choices=("drop", "accept")),
        reconnect_interval=sec.get("reconnect_interval", float, 1.0, minval=0.05, maxval=60.0),
    )
    sec.finish()
    return scanner


def _read_camera(sec: _Section) -> CameraConfig:
    from drivers.decoders import DECODER_SYMBOLOGIES, DECODERS, SYMBOLOGIES  # no decoder library imported

    decoder = sec.get("decoder", str, "zxing", choices=DECODERS)
    default_symbologies = list(DECODER_SYMBOLOGIES.get(decoder, SYMBOLOGIES))
    symbologies = sec.get("symbologies", list, default_symbologies)
    for name in symbologies:
        if name not in SYMBOLOGIES:
            sec._error("symbologies", f"unknown symbology {name!r} (known: {', '.join(SYMBOLOGIES)})")
        elif name not in DECODER_SYMBOLOGIES.get(decoder, SYMBOLOGIES):
            sec._error("symbologies", f"the {decoder} decoder cannot read {name} (it reads {', '.join(DECODER_SYMBOLOGIES[decoder])})")
    if not symbologies:
        sec._error("symbologies", "at least one symbology is needed")
    width = sec.get("width", int, 640, minval=64, maxval=4096)
    height = sec.get("height", int, 480, minval=64, maxval=4096)
    region = None
    sec.read.add("region")
    if "region" in sec.data:
        raw = sec.data["region"]
        if not (isinstance(raw, list) and len(raw) == 4 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in raw)):
            sec._error("region", f"expected [x, y, width, height] in pixels, got {raw!r}")
        elif width and height and (raw[2] < 32 or raw[3] < 32 or raw[0] + raw[2] > width or raw[1] + raw[3] > height):
            sec._error("region", f"{raw!r} must lie inside the {width}x{height} frame and be at least 32x32")
        else:
            region = (raw[0], raw[1], raw[2], raw[3])
    camera = CameraConfig(
        source=sec.get("source", str, "picamera2", choices=("picamera2", "simulator")),
        index=sec.get("index", int, 0, minval=0, maxval=15),
        width=width,
        height=height,
        fps=sec.get("fps", float, 30.0, minval=1.0, maxval=120.0),
        decoder=decoder,
        symbologies=tuple(dict.fromkeys(symbologies)),
        region=region,
        downscale=sec.get("downscale", int, 1, minval=1, maxval=4),
        hold_off=sec.get("hold_off", float, 2.0, minval=0.3, maxval=60.0),
        direction=sec.get("direction", str, IN, choices=DIRECTIONS),
        af_mode=sec.get("af_mode", str, "manual", choices=("manual", "continuous")),
        lens_position=sec.get("lens_position", float, 5.0, minval=0.0, maxval=32.0),  # libcamera's LensPosition range
        af_range=sec.get("af_range", str, "macro", choices=("macro", "normal", "full")),
        max_exposure_ms=sec.get("max_exposure_ms", float, 10.0, minval=0.0, maxval=100.0),
        stall_seconds=sec.get("stall_seconds", float, 5.0, minval=1.0, maxval=120.0),
        illumination=sec.get("illumination", str, "", choices=("presence", "always", "off")),  # "": by [gpio.illumination]
        illumination_hold=sec.get("illumination_hold", float, 10.0, minval=0.5, maxval=600.0),
    )
    sec.finish()
    return camera


def _read_nfc(sec: _Section) -> NfcConfig:
    nfc = NfcConfig(
        device=sec.get("device", str),
        direction=sec.get("direction", str, IN, choices=DIRECTIONS),
        exchange_timeout=sec.get("exchange_timeout", float, 1.0, minval=0.05, maxval=10.0),
        reconnect_interval=sec.get("reconnect_interval", float, 2.0, minval=0.1, maxval=60.0),
        poll_interval=sec.get("poll_interval", float, 0.05, minval=0.0, maxval=2.0),
        targets=_nfc_targets(sec),
    )
    sec.finish()
    if nfc.device and not re.match(r"^(usb|tty|udp)(:[A-Za-z0-9._-]*)*$", nfc.device):
        sec._error("device", f"an nfcpy device path such as 'usb', 'usb:054c:06c1', 'tty:AMA0:pn532' or 'udp:localhost:54321', got {nfc.device!r}")
    return nfc


def _nfc_targets(sec: _Section) -> tuple[str, ...]:
    from drivers.nfc_reader import DEFAULT_TARGETS, poll_targets  # no nfcpy imported

    try:
        return poll_targets(sec.get("targets", list, list(DEFAULT_TARGETS)))
    except ValueError as exc:
        sec._error("targets", str(exc).removeprefix("nfc targets: "))
        return DEFAULT_TARGETS


def _read_display(sec: _Section) -> DisplayConfig:
    colours: dict[str, str] = {}
    table = sec.table("colours")
    for name in list(table.data) if table is not None else []:
        value = table.get(name, str)
        if value is not None and not re.match(r"^#[0-9a-fA-F]{6}\Z", value):
            table._error(name, f"a colour as #rrggbb, got {value!r}")
        elif value is not None:
            colours[name] = value
    display = DisplayConfig(
        enabled=sec.get("enabled", bool, True),
        port=sec.get("port", int, 8081, minval=1024, maxval=65535),
        language=sec.get("language", str, "en"),
        class_colours=colours,
        refused_seconds=sec.get("refused_seconds", float, 3.0, minval=0.5, maxval=60.0),
        welcome_seconds=sec.get("welcome_seconds", float, 8.0, minval=0.5, maxval=60.0),
    )
    sec.finish()
    if not re.match(r"^[a-z]{2}\Z", display.language):
        sec._error("language", f"a two-letter language code such as 'en' or 'de', got {display.language!r}")
    return display


def loopback_listen(sec: _Section, key: str) -> tuple[str, int] | None:
    """A metrics endpoint's ``host:port``, on this machine's loopback only (also gate bridge's)."""
    listen = sec.get(key, str, "")
    if not listen:
        return None
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host not in ("127.0.0.1", "::1", "localhost") or not port.isdigit() or not 0 < int(port) < 65536:
        sec._error(key, f"a loopback address and port such as '127.0.0.1:9464', got {listen!r} "
                        "(the endpoint is for a local agent or an ssh tunnel, not the venue network)")
        return None
    return host, int(port)


def _read_status(sec: _Section) -> StatusConfig:
    socket_path = sec.get("socket", str, StatusConfig.socket)
    metrics = loopback_listen(sec, "metrics")
    sec.finish()
    if socket_path and (not socket_path.startswith("/") or len(socket_path.encode()) > 107):
        sec._error("socket", f"an absolute path of at most 107 bytes (a Unix socket), got {socket_path!r}")
    return StatusConfig(socket=socket_path, metrics=metrics)


def _read_brokers(sec: _Section, items: list[str], port: int) -> list[tuple[str, int]]:
    """``brokers = ["mqtt-1.venue.lan", "mqtt-2.venue.lan:8883"]``: a port missing is ``port``'s."""
    brokers: list[tuple[str, int]] = []
    for item in items[:16]:
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
        if not host or any(c in host for c in " /#+:"):
            sec._error("brokers", f"each entry is 'host' or 'host:port', got {str(item)[:60]!r}")
            continue
        if port_text and not (port_text.isdigit() and 1 <= int(port_text) <= 65535):
            sec._error("brokers", f"port of {item[:60]!r} must be 1-65535")
            continue
        brokers.append((host, int(port_text) if port_text else port))
    if len(items) > 16:
        sec._error("brokers", f"at most 16 brokers, got {len(items)}")
    return brokers or [("localhost", port)]


def _read_sync(sec: _Section, base: Path, gate_id: str, venue: str) -> SyncConfig | None:
    enabled = sec.get("enabled", bool, True)
    host = sec.get("host", str, "localhost")
    port = sec.get("port", int, 1883, minval=1, maxval=65535)
    broker_list = sec.get("brokers", list, [])
    topic_root = sec.get("topic_root", str, f"gate/v2/{venue}/")
    username = sec.get("username", str, gate_id)
    password_file = sec.get("password_file", str, "")
    tls = sec.get("tls", bool, False)
    files = {key: sec.get(key, str, "") for key in ("ca_file", "cert_file", "key_file")}
    paths = {key: str(base / name) if name else "" for key, name in files.items()}  # relative to the config
    keepalive = sec.get("keepalive", int, 15, minval=5, maxval=600)
    status_interval = sec.get("status_interval", float, 10.0, minval=0.5, maxval=3600.0)
    catch_up_interval = sec.get("catch_up_interval", float, 30.0, minval=1.0, maxval=3600.0)
    identity_file = sec.get("identity_file", str, "")
    recovery = sec.get("recovery", str, "wait", choices=("wait", "admit"))
    recovery_wait = sec.get("recovery_wait", float, 60.0, minval=0.0, maxval=86400.0)
    sec.finish()
    identity = None
    if identity_file:
        path = base / identity_file
        try:
            identity = decode_key(path.read_text(), f"sync.identity_file {path}")
        except OSError as exc:
            sec._error("identity_file", f"cannot read {path}: {exc.strerror}")
        except TrustError as exc:
            sec._error("identity_file", f"not a private key ({exc}); make one with gate keygen --out FILE")
    if topic_root and (not topic_root.endswith("/") or "+" in topic_root or "#" in topic_root):
        sec._error("topic_root", f"must end with '/' and hold no wildcard, got {topic_root!r}")
    password = ""
    if password_file:
        path = base / password_file
        try:
            password = path.read_text().strip()
        except OSError as exc:
            sec._error("password_file", f"cannot read {path}: {exc.strerror}")
    for key, path in paths.items():
        if path and not Path(path).is_file():
            sec._error(key, f"no such file {path}")
    if (paths["cert_file"] == "") != (paths["key_file"] == ""):
        sec._error("cert_file", "cert_file and key_file go together (a client certificate)")
    brokers = [(host, port)]
    if broker_list:
        if "host" in sec.data:
            sec._error("brokers", "give either host (one broker) or brokers (a list, for failover), not both")
        brokers = _read_brokers(sec, broker_list, port)
    if not enabled:
        return None
    return SyncConfig(
        host=brokers[0][0],
        port=brokers[0][1],
        brokers=tuple(brokers),
        topic_root=topic_root,
        username=username,
        password=password,
        ca_file=paths["ca_file"],
        cert_file=paths["cert_file"],
        key_file=paths["key_file"],
        tls=tls or bool(paths["ca_file"]),
        keepalive=keepalive,
        status_interval=status_interval,
        catch_up_interval=catch_up_interval,
        identity=identity,
        recovery=recovery,
        recovery_wait=recovery_wait,
    )


def _read_trust(
    sec: _Section | None, base: Path, problems: list[str]
) -> tuple[dict[bytes, gt1.IssuerKey], tuple[TrustDocument, ...], bytes | None, float]:
    if sec is None:
        return {}, (), None, 30.0
    issuers = sec.data.get("gt1_issuers", [])
    sec.read.add("gt1_issuers")
    if not isinstance(issuers, list):
        problems.append("trust.gt1_issuers: must be an array of tables ([[trust.gt1_issuers]])")
        issuers = []
    files = sec.get("files", list, [])
    admin_text = sec.get("admin_key", str, "")
    command_max_age = sec.get("command_max_age", float, 30.0, minval=1.0, maxval=3600.0)
    sec.finish()
    admin_key = None
    if admin_text:
        try:
            admin_key = decode_key(admin_text, "trust.admin_key")
        except TrustError as exc:
            problems.append(f"{exc} (the public_key that gate keygen printed for the admin key)")
    keys: dict[bytes, gt1.IssuerKey] = {}
    for i, entry in enumerate(issuers):
        try:
            key = gt1.parse_issuer(Fields(entry, f"trust.gt1_issuers[{i}]"))
            keys = gt1.merge_trust([keys, {key.kid: key}])
        except TrustError as exc:
            problems.append(str(exc))
    documents = []
    for i, name in enumerate(files):
        if not isinstance(name, str):
            problems.append(f"trust.files[{i}]: must be a file path")
            continue
        path = base / name  # relative paths are relative to the config file
        try:
            documents.append(trust.parse_document(path.read_bytes(), str(path)))
        except OSError as exc:
            problems.append(f"trust.files[{i}]: cannot read {path}: {exc.strerror}")
        except TrustError as exc:
            problems.append(f"trust.files[{i}]: {exc}")
    if not problems:
        try:
            trust.build(documents, keys)  # contradictions between documents
        except TrustError as exc:
            problems.append(f"trust: {exc}")
    return keys, tuple(documents), admin_key, command_max_age
