"""``gate doctor``: what a technician at the lane needs to know, one check per line.

Each check returns a ``Check``: ``ok``, ``warn`` (the lane runs, but look at this), ``fail`` (the
lane cannot do its job) or ``skip`` (not configured), with what was seen and what to do: a hint
that fits an 80-column ssh (``HINT_MAX``) and, for ``gate doctor --verbose``, the details. When
the lane is running, its own view (readers, clock, broker connection) is read from its status
socket and devices it holds are not opened a second time; when it is stopped, doctor opens the
configured devices itself, so a lane can be checked before it is ever started.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gate.config import Config
from gate.store.db import ownership_problem

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
DISK_FAIL_BYTES = 64 * 2**20
DISK_WARN_BYTES = 512 * 2**20
BUNDLE_OLD_SECONDS = 7 * 86400
BOOT_BEGIN, BOOT_END = "# >>> gate:", "# <<< gate"  # install-pi.sh's block in config.txt
SANE_EPOCH = 1767225600  # 2026-01-01: a clock before this has never been set (no RTC on a Pi)
HINT_MAX = 80  # a hint is one line on an 80-column terminal; the rest goes into Check.more


@dataclass(frozen=True)
class Check:
    name: str
    result: str
    detail: str
    fix: str = ""  # what to do, at most HINT_MAX characters
    more: str = ""  # the why and the long form of the fix (gate doctor --verbose)

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class Doctor:
    def __init__(self, config: Config, *, click: bool = False, broker_timeout: float = 5.0) -> None:
        self.config = config
        self.click = click
        self.broker_timeout = broker_timeout
        self.lane: dict[str, Any] | None = None  # the running lane's status, if one answers
        self.dev = "/dev"  # where the GPIO chips are (tests point it elsewhere)
        self.boot_configs = ("/boot/firmware/config.txt", "/boot/config.txt")  # the firmware's, newest release first
        self.service_user = SERVICE_USER  # who runs the lane (gate.service's User=)

    def run(self) -> list[Check]:
        checks = [self.check_lane()]
        for check in (self.check_clock, self.check_gpio, self.check_boot_pins, self.check_relay_click, self.check_scanner, self.check_camera,
                      self.check_nfc, self.check_broker, self.check_trust, self.check_bundle, self.check_database,
                      self.check_disk):
            try:
                checks.append(check())
            except Exception as exc:  # a check that breaks is a finding, not a crash
                checks.append(Check(check.__name__.removeprefix("check_"), FAIL, f"the check itself failed: {exc!r}",
                                    "the other checks may say why (a corrupt ledger breaks several)"))
        return [c for c in checks if c is not None]

    # --- the lane --------------------------------------------------------------------------

    def check_lane(self) -> Check:
        from gate.field.status_server import read_status

        path = self.config.status.socket
        if not path:
            return Check("lane", WARN, "no status socket configured ([status] socket): the running lane cannot be seen")
        try:
            self.lane = read_status(path)
        except PermissionError:
            return Check("lane", WARN, f"not allowed to read {path}", "sudo gate doctor, or join gate-status: sudo usermod -aG gate-status $USER",
                         "the status socket is mode 0660, group gate-status (install-pi.sh --technician USER adds one); "
                         "log in again after joining")
        except (OSError, ValueError):
            return Check("lane", WARN, "not running (no answer on the status socket); devices are checked directly",
                         "sudo systemctl start gate; journalctl -u gate -e shows why it stopped")
        if "problem" in self.lane:
            return Check("lane", FAIL, f"running (pid {self.lane.get('pid')}) but {self.lane['problem']}",
                         "journalctl -u gate -e; systemd restarts a lane whose loop hangs")
        state = f"running (pid {self.lane.get('pid')}), mode {self.lane.get('mode')}, up {duration_text(self.lane.get('uptime', 0))}"
        if self.lane.get("emergency"):
            return Check("lane", FAIL, state + ", FIRE LOOP OPEN: every scan refused",
                         "the fire panel's contact is open: an alarm, or a cut wire",
                         "the fire loop is normally closed: open means alarm, and so does a broken wire")
        return Check("lane", OK, state)

    def check_clock(self) -> Check:
        from gate.lane.hardware import load_provider

        config = self.config
        if self.lane is not None and "clock" in self.lane:
            synchronized, seen = bool(self.lane["clock"]["synchronized"]), "the lane's"
        else:
            probe = load_provider(config.hardware, config).clock_sync()
            synchronized, seen = probe.synchronized(), "the kernel's" if config.hardware == "pi" else "the simulator's"
        now = time.time()
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(now))
        if now < SANE_EPOCH:
            return Check("clock", FAIL, f"{when}: the clock has never been set", "connect the Pi to the venue's NTP server")
        if synchronized:
            return Check("clock", OK, f"{when}, synchronized ({seen} view)")
        guard = config.engine.unsynchronized_clock
        effect = ("tickets whose decision depends on the time are REFUSED (clock_unsynced)" if guard == "refuse"
                  else "time-dependent tickets are admitted on an unchecked clock ([clock] unsynchronized = \"admit\")")
        return Check("clock", FAIL if guard == "refuse" else WARN, f"{when}, NOT synchronized ({seen} view): {effect}",
                     "is the venue's NTP server reachable? timedatectl timesync-status",
                     "chronyc tracking where chrony keeps the time; a Pi has no real-time clock: it waits for NTP at every boot")

    # --- hardware --------------------------------------------------------------------------

    def check_gpio(self) -> Check:
        gpio = self.config.gpio
        pins = ", ".join(f"{name} {pin}" for name, pin in _pins(self.config))
        if gpio.pin_factory == "mock":
            return Check("gpio", OK, f"simulated pins (MockFactory): {pins}")
        # The chip the lane will open ([gpio] chip, or the Pi's own controller found by its
        # label), not just any /dev/gpiochip*: a Pi 5 has several, and only one is the header's.
        from drivers.gpio import PI_GPIO_LABELS, ChipNotFound
        from gate.lane.pi import PiHardware

        try:
            number, label = PiHardware(self.config).gpio_chip()
        except ChipNotFound as exc:
            return Check("gpio", FAIL, str(exc), "`gpiodetect` lists the chips; [gpio] chip = \"auto\" finds a Pi's own",
                         "run as root (sudo gate doctor) to see every chip")
        chip = f"{self.dev}/gpiochip{number}"
        what = f"{chip} [{label}]" + (f" ({PI_GPIO_LABELS[label]})" if label in PI_GPIO_LABELS else "")
        if not os.access(chip, os.R_OK | os.W_OK):
            return Check("gpio", FAIL, f"{what} not accessible to this user", "add the user to the gpio group (install-pi.sh does)")
        if label not in PI_GPIO_LABELS:
            return Check("gpio", WARN, f"{what} is not a Raspberry Pi's GPIO controller: the header's BCM pins are elsewhere: {pins}",
                         "[gpio] chip = \"auto\", unless the lane's pins really are on this chip")
        if self.lane is not None:
            return Check("gpio", OK, f"held by the running lane on {what}: {pins}")
        with opened_lane(self.config) as lane:
            fire = " fire loop OPEN (alarm or cut wire)" if lane.fire_alarm_active() else ""
        if fire:
            return Check("gpio", FAIL, f"pins claimed on {what} ({pins});{fire}", "close the fire loop: normally closed, open = alarm")
        return Check("gpio", OK, f"pins claimed on {what}, left at their safe levels: {pins}")

    def check_boot_pins(self) -> Check | None:
        """config.txt's gpio= lines (install-pi.sh) hold the outputs safe from early boot until
        the lane starts; without them, or with lines from an older [gpio], the relay inputs are
        at the firmware's defaults (inputs with pulls) for the seconds of every boot."""
        from drivers.gpio import boot_lines

        if self.config.gpio.pin_factory == "mock":
            return None
        found = next((Path(p) for p in self.boot_configs if Path(p).is_file()), None)
        if found is None:
            return Check("boot pins", SKIP, "no config.txt (/boot/firmware): not a Raspberry Pi")
        wanted = boot_lines(self.config.gpio)
        text = found.read_text(errors="replace")
        held = None
        if BOOT_BEGIN in text:
            block = text.split(BOOT_BEGIN, 1)[1].split(BOOT_END, 1)[0]
            held = [line.strip() for line in block.splitlines() if line.strip().startswith("gpio=")]
        fix = "sudo scripts/install-pi.sh writes them (they take effect at the next boot)"
        if held is None:
            return Check("boot pins", WARN, f"{found} sets no safe levels: from power-on until the lane starts, the outputs "
                                            "are inputs and only the wiring's pull resistors hold the relays", fix)
        if held != wanted:
            missing = sorted(set(wanted) - set(held))
            return Check("boot pins", WARN, f"{found} holds levels for another [gpio]: wanted {' '.join(missing) or '(fewer lines)'}", fix)
        return Check("boot pins", OK, f"{found}: {' '.join(wanted)}")

    def check_relay_click(self) -> Check | None:
        if not self.click:
            return None
        if self.lane is not None:
            return Check("relay click", SKIP, "the running lane owns the relays", "sudo systemctl stop gate, then gate doctor --click")
        with opened_lane(self.config) as lane:
            pulse = self.config.turnstile.pulse
            clicked = []
            for direction in lane.unlock:
                lane.set_unlock(direction, True)
                lane.set_light("green", True)
                lane.set_buzzer(True)
                time.sleep(pulse)
                lane.safe()
                clicked.append(f"unlock_{direction}")
                time.sleep(0.5)
        simulated = " (simulated pins: nothing moves)" if self.config.gpio.pin_factory == "mock" else ""
        return Check("relay click", OK, f"pulsed {', '.join(clicked)} for {pulse * 1000:.0f} ms with green and buzzer{simulated}",
                     "each relay should have unlocked once; if not: active_high, the wiring")

    def _reader(self, name: str) -> dict[str, Any] | None:
        return None if self.lane is None else self.lane.get("readers", {}).get(name, {"problem": "not started by the lane"})

    def check_scanner(self) -> Check:
        scanner = self.config.scanner
        if scanner is None:
            return Check("scanner", SKIP, "no [scanner]")
        if scanner.kind == "hid":
            return self._check_hid_scanner()
        reader = self._reader("scanner")
        if reader is not None:
            if reader.get("connected"):
                return Check("scanner", OK, f"{scanner.port}: open in the lane, {reader.get('lines', 0)} lines read")
            return Check("scanner", FAIL, f"{scanner.port}: the lane cannot open it", _SERIAL_FIX, _serial_more(scanner.port))
        if not os.path.exists(scanner.port):
            return Check("scanner", FAIL, f"{scanner.port}: no such device", _SERIAL_FIX, _serial_more(scanner.port))
        import serial

        try:
            serial.Serial(scanner.port, scanner.baudrate, timeout=0).close()
        except (serial.SerialException, OSError) as exc:
            return Check("scanner", FAIL, f"{scanner.port}: cannot open: {exc}", _SERIAL_FIX, _serial_more(scanner.port))
        return Check("scanner", OK, f"{scanner.port} opens at {scanner.baudrate} baud")

    def _check_hid_scanner(self) -> Check:
        """A keyboard-mode scanner: the input device is there, is a keyboard, and can be grabbed
        (nobody else holds it, so its keystrokes reach only the lane)."""
        scanner = self.config.scanner
        assert scanner is not None
        where = f"{scanner.device} (keyboard mode, layout {scanner.layout}, suffix {scanner.suffix})"
        reader = self._reader("scanner")
        if reader is not None:
            if reader.get("connected"):
                grab = "grabbed" if reader.get("grabbed") else "NOT grabbed: keystrokes also reach the console"
                unknown = f", {reader['unknown_keys']} keys outside the layout (check [scanner] layout)" if reader.get("unknown_keys") else ""
                return Check("scanner", OK if reader.get("grabbed") and not unknown else WARN,
                             f"{where}: open in the lane, {grab}, {reader.get('lines', 0)} lines read{unknown}")
            return Check("scanner", FAIL, f"{where}: the lane cannot open it", _HID_FIX, _HID_MORE)
        if not os.path.exists(scanner.device):
            return Check("scanner", FAIL, f"{where}: no such device", _HID_FIX, _HID_MORE)
        from drivers.hid_scanner import KEY_ENTER, HidUnavailable, open_evdev

        try:
            device = open_evdev(scanner.device)
        except HidUnavailable as exc:
            return Check("scanner", FAIL, str(exc), "sudo apt install python3-evdev (install-pi.sh does)")
        except OSError as exc:
            return Check("scanner", FAIL, f"{where}: cannot open: {exc}", _HID_FIX, _HID_MORE)
        try:
            keys = device.capabilities().get(1, [])  # EV_KEY
            if KEY_ENTER not in keys:
                return Check("scanner", FAIL, f"{where}: {device.name!r} is not a keyboard", _HID_FIX, _HID_MORE)
            try:
                device.grab()
                device.ungrab()
            except OSError as exc:
                return Check("scanner", FAIL, f"{where}: {device.name!r} is held by another program ({exc})",
                             "stop the program that reads it (a lane still running?)", f"sudo fuser -v {scanner.device} names it")
            return Check("scanner", OK, f"{where}: {device.name!r} opens and can be grabbed")
        finally:
            device.close()

    def check_camera(self) -> Check:
        camera = self.config.camera
        if camera is None:
            return Check("camera", SKIP, "no [camera]")
        reader = self._reader("camera")
        if reader is not None:
            if "problem" in reader:
                return Check("camera", FAIL, reader["problem"], "docs/readers.md: camera")
            return _camera_in_lane(camera.source, reader)
        if camera.source == "simulator":
            return Check("camera", OK, "simulated camera")
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]

            found = Picamera2.global_camera_info()
        except Exception as exc:
            return Check("camera", FAIL, f"picamera2 not usable: {exc}", "sudo apt install python3-picamera2, then rerun install-pi.sh",
                         "the lane's virtualenv sees the system's packages (--system-site-packages), as install-pi.sh makes it")
        if len(found) <= camera.index:
            return Check("camera", FAIL, f"camera {camera.index} not found ({len(found)} connected)",
                         "check the ribbon cable, then: rpicam-hello --list-cameras",
                         "the ribbon's contacts face the board's connector contacts; power off before reseating it")
        return Check("camera", OK, f"camera {camera.index}: {found[camera.index].get('Model', '?')}")

    def check_nfc(self) -> Check:
        nfc = self.config.nfc
        if nfc is None:
            return Check("nfc", SKIP, "no [nfc]")
        reader = self._reader("nfc")
        if reader is not None:
            if reader.get("connected"):
                return Check("nfc", OK, f"{nfc.device}: open in the lane, {reader.get('taps', 0)} taps")
            return Check("nfc", FAIL, f"{nfc.device}: {reader.get('problem', 'the lane cannot open the reader')}", _NFC_FIX, _NFC_MORE)
        import nfc as nfcpy

        try:
            frontend = nfcpy.ContactlessFrontend(nfc.device)
        except (IOError, OSError) as exc:
            return Check("nfc", FAIL, f"{nfc.device}: {exc}", _NFC_FIX, _NFC_MORE)
        try:
            return Check("nfc", OK, f"{nfc.device}: {frontend.device}")
        finally:
            frontend.close()

    # --- venue, trust and storage ----------------------------------------------------------

    def check_broker(self) -> Check:
        sync = self.config.sync
        if sync is None:
            return Check("broker", SKIP, "no [sync]: a lone lane")
        who = f" as {sync.username or '(anonymous)'}{' over TLS' if sync.tls else ''}"
        where = f"{sync.host}:{sync.port}{who}"
        lane = ""
        if self.lane is not None and self.lane.get("sync"):
            lane_sync = self.lane["sync"]
            if lane_sync["connected"]:
                # The lane's own connection proves its user and password. A second login as the
                # lane's user would throw the lane off the bus: the broker takes the user name as
                # the client id (use_username_as_clientid, docs/mqtt.md).
                broker = lane_sync.get("broker") or f"{sync.host}:{sync.port}"
                return Check("broker", OK, f"{broker}{who}: the lane is connected (its own connection), outbox {lane_sync['outbox']}")
            lane = f"; the lane is NOT connected, outbox {lane_sync['outbox']}"
        problem = probe_broker(self.config, self.broker_timeout)
        if problem:
            return Check("broker", FAIL, f"{where}: {problem}{lane}",
                         "is mosquitto running there? are [sync] username and password_file right?",
                         "on the broker: systemctl status mosquitto, and the lane's user in its password file "
                         "(docs/mqtt.md); the lane's unit allows only the brokers install-pi.sh found in the config "
                         "(IPAddressAllow=): rerun it after changing them")
        return Check("broker", OK, f"{where}: connected{lane}")

    def _lane_uid(self) -> int:
        """Who runs the lane: the service user when doctor runs as root and it exists, else this user."""
        import pwd

        if os.geteuid() == 0:
            try:
                return pwd.getpwnam(self.service_user).pw_uid
            except KeyError:
                pass
        return os.geteuid()

    def _state_unreadable(self, name: str) -> Check | None:
        """The ledger is the gate user's alone (0700): another user cannot look at it."""
        state = Path(self.config.state_dir)
        if state.exists() and not os.access(state, os.R_OK | os.X_OK):
            return Check(name, WARN, f"{state} is not readable by this user", "sudo gate doctor")
        return None

    def check_trust(self) -> Check:
        from gate import trust
        from gate.store import Store

        config = self.config
        stored: list[Any] = []
        if (unreadable := self._state_unreadable("trust")) is not None:
            return unreadable
        if config.database.exists():
            with closing(Store(config.database, config.gate_id, read_only=True)) as store:
                stored = trust.parse_stored(store.trust.documents())
        material = trust.build([*config.trust_documents, *stored], config.gt1_keys)
        lines = trust.summary(material)
        missing = [name for name in config.engine.formats if _trust_name(name) not in material]
        detail = "; ".join(f"{name}: {line}" for name, line in lines.items()) or "no keys"
        if missing:
            return Check("trust", FAIL, f"no keys for {', '.join(missing)}: every such ticket is refused unknown_key ({detail})",
                         "gate keys import FILE, [trust] in the config, or a signed bundle",
                         "docs/trust-documents.md: which document each format's keys come in")
        return Check("trust", OK, detail)

    def check_bundle(self) -> Check:
        from gate.store import Store

        config = self.config
        if (unreadable := self._state_unreadable("bundle")) is not None:
            return unreadable
        if not config.database.exists():
            return Check("bundle", SKIP if config.admin_key is None else WARN, "no database yet")
        with closing(Store(config.database, config.gate_id, read_only=True)) as store:
            bundle = store.trust.held()
        if bundle.bundle_version == 0:
            if config.admin_key is None:
                return Check("bundle", SKIP, "no admin key: trust comes from the config and gate keys import")
            return Check("bundle", WARN, "no signed bundle received yet", "the venue admin: gate bundle publish (docs/bundles.md)")
        age = time.time() - bundle.issued_at
        detail = (f"version {bundle.bundle_version}, signed {duration_text(age)} ago, {bundle.revoked} revoked"
                  + (f"; delta {bundle.delta_version}" if bundle.delta_version else ""))
        if age > BUNDLE_OLD_SECONDS:
            return Check("bundle", WARN, detail + ": older than a week", "is the admin still publishing? is the broker reachable?")
        return Check("bundle", OK, detail)

    def check_database(self) -> Check:
        path = self.config.database
        if (unreadable := self._state_unreadable("database")) is not None:
            return unreadable
        if (owned := ownership_problem(path, self._lane_uid())):
            return Check("database", FAIL, owned.split(" (fix: ")[0], owned.split(" (fix: ")[1].rstrip(")"),
                         "the lane runs as its own user; files root made (sudo gate bundle load before the first start, "
                         "recovery steps run as root) keep it from writing its ledger: not a corrupt database")
        if not path.exists():
            return Check("database", WARN, f"{path}: none yet (the lane creates it at its first start)")
        from gate.store.db import StoreError, inspect

        try:
            problems, records = inspect(path)
        except StoreError as exc:
            return Check("database", FAIL, f"{path}: {exc}", _DB_FIX, _DB_MORE)
        if problems:
            return Check("database", FAIL, f"{path}: integrity check failed: {'; '.join(problems)[:300]}", _DB_FIX, _DB_MORE)
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            return Check("database", WARN, f"{path}: intact, {records} records, but mode {mode:o}", f"chmod 600 {path}")
        return Check("database", OK, f"{path}: intact, {records} records")

    def check_disk(self) -> Check:
        where = Path(self.config.state_dir)
        while not where.exists():
            where = where.parent
        free = shutil.disk_usage(where).free
        detail = f"{free / 2**30:.1f} GiB free on {where}"
        if free < DISK_FAIL_BYTES:
            return Check("disk", FAIL, detail, "free space (sudo journalctl --vacuum-size=100M) or use a bigger card",
                         "below 64 MiB the ledger cannot grow: admissions cannot be recorded")
        if free < DISK_WARN_BYTES:
            return Check("disk", WARN, detail, "free some space before the next event")
        return Check("disk", OK, detail)


def probe_broker(config: Config, timeout: float) -> str:
    """Connect with the lane's credentials; '' when the broker accepted them, else why not.
    Only while the lane itself is not connected: the shipped broker config takes the user name
    as the client id, so this login would throw a connected lane off the bus."""
    import threading

    from gate.sync.client import make_client

    assert config.sync is not None
    answer: list[str] = []
    done = threading.Event()

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        answer.append("" if not reason.is_failure else f"refused: {reason}")
        done.set()

    client = make_client(config.sync, f"{config.gate_id}-doctor-{os.getpid()}", clean_session=True)
    client.on_connect = on_connect
    try:
        client.connect(config.sync.host, config.sync.port, keepalive=max(5, int(timeout)))
    except (OSError, ValueError) as exc:
        return f"cannot connect: {exc}"
    client.loop_start()
    try:
        if not done.wait(timeout):
            return f"no answer within {timeout:.0f} s"
        return answer[0]
    finally:
        client.disconnect()
        client.loop_stop()


class opened_lane:
    """The lane's GPIO devices, outputs de-energized, for the length of a ``with``."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def __enter__(self) -> Any:
        from drivers.gpio import GpioLane
        from gate.lane.hardware import load_provider

        self.hardware = load_provider(self.config.hardware, self.config)
        if self.config.hardware == "pi" and not os.access(".", os.W_OK):  # lgpio puts its notification pipes in the working directory
            import tempfile

            os.chdir(tempfile.gettempdir())
        self.lane = GpioLane(self.config.gpio, pin_factory=self.hardware.pin_factory())
        return self.lane

    def __exit__(self, *exc: Any) -> None:
        self.lane.safe()
        self.lane.close()
        self.hardware.close()


def _pins(config: Config) -> list[tuple[str, int]]:
    from gate.config import named_pins

    return [(name, pin) for name, pin in named_pins(config.gpio) if pin is not None]


def _trust_name(format_name: str) -> str:
    return "pretix" if format_name.startswith("pretix") else format_name


_SERIAL_FIX = "plug the scanner in; ls -l /dev/serial/by-id/; install-pi.sh --scanner VID:PID"


def _serial_more(port: str) -> str:
    return (f"ls -l {port}: the udev rule from install-pi.sh names known scanners /dev/gate-scanner, the gate "
            "user's alone (0600); install-pi.sh --scanner VID:PID (from lsusb) adds another; a UART scanner: "
            "the gate user must be in the dialout group")


def _camera_in_lane(source: str, reader: dict[str, Any]) -> Check:
    """The running lane's camera: frames coming (and how old the last one is), stalls and restarts."""
    age = reader.get("last_activity_age_s")
    counts = f"{reader.get('frames', 0)} frames, {reader.get('codes', 0)} codes read"
    restarts = f"; {reader.get('stalls', 0)} stalls, {reader.get('restarts', 0)} restarts" if reader.get("restarts") else ""
    if reader.get("connected") is False:
        last = "never a frame" if age is None else f"last frame {duration_text(age)} ago"
        return Check("camera", FAIL, f"{source}: no frames ({last}): {reader.get('last_error') or 'not open'}{restarts}",
                     "check the ribbon cable; journalctl -u gate -e (the lane keeps trying)",
                     "the lane opens the camera again and again until it works (docs/readers.md: camera)")
    shown = f"{source}: {counts}, last frame {age:.1f} s ago{restarts}" if age is not None else f"{source}: {counts}"
    if restarts:
        return Check("camera", WARN, f"{shown} (last: {reader.get('last_error')})", "a camera that stalls again and again: "
                     "check the ribbon cable and power supply")
    return Check("camera", OK, shown)


def duration_text(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


_HID_FIX = "plug the scanner in; ls -l /dev/input/by-id/; install-pi.sh --scanner VID:PID"
_HID_MORE = ("ls -l /dev/gate-scanner-hid: the udev rule from install-pi.sh names known scanners, the gate user's "
             "alone (0600); install-pi.sh --scanner VID:PID (from lsusb) adds another")
_NFC_FIX = "does lsusb show the reader? python3 -m nfc names what it finds"
_NFC_MORE = ("the kernel's own NFC drivers must not hold it (/etc/modprobe.d/gate-nfc.conf from install-pi.sh); "
             "the udev rule gives the reader to the gate user (0600, /dev/gate-nfc)")
SERVICE_USER = "gate"
_DB_FIX = "stop the lane, copy gate.db, then sqlite3 gate.db .recover (see --verbose)"
_DB_MORE = ("sudo systemctl stop gate; keep a copy of the file; sqlite3 gate.db .recover | sqlite3 recovered.db; "
            "put recovered.db in its place (owned by gate); with venue sync the other gates hold every record "
            "this lane published")
