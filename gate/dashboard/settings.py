"""The dashboard's own config file (``/etc/gate/dashboard.toml``), read strictly: every key is
known and typed, every problem is collected and named, and a typo stops the start-up (as the
lane's ``gate.toml`` does). Secrets come from files named here, never from the file itself:
passwords are stored as scrypt hashes (``gate venue-dashboard hash-password``).

An example with every key: ``config/dashboard.example.toml``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate.config import SyncConfig, TomlTable
from gate.errors import ConfigError
from gate.formats import TrustError
from gate.formats.trustdoc import decode_key

DEFAULT_PATH = "/etc/gate/dashboard.toml"
MAX_BYTES = 256 * 1024
# Seconds between two pushes to a page at least: a change goes out at once when the last push is
# older, and the changes of a busy venue (hundreds a second) are one push per interval. It is
# what a count may wait on the dashboard (issue 21: half of it on average).
PUSH_INTERVAL = 0.05
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_HASH = re.compile(r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+\Z")


@dataclass(frozen=True)
class User:
    name: str
    password_hash: str = field(repr=False)


@dataclass(frozen=True)
class CommandSettings:
    """Signed commands: the admin key on this host (None: every command is refused) and the
    broker user allowed to publish them (``venue-admin``; the monitor user writes nothing)."""

    signing_key: bytes | None = field(default=None, repr=False)
    broker: SyncConfig | None = None
    wait: float = 5.0  # seconds to wait for the lane's answer before the page says "no answer"


@dataclass(frozen=True)
class DashboardConfig:
    path: str
    venue: str
    title: str
    host: str
    port: int
    cert_file: str
    key_file: str
    audit_log: Path
    users: tuple[User, ...]
    bus: SyncConfig  # as venue-monitor: read-only
    admin_key: bytes  # the admin's public key: the bundle (roster, zones) is verified against it
    commands: CommandSettings
    capacity: dict[str, int]  # per zone, until the bundle carries capacities
    alarm_percent: float
    stale_after: float  # seconds without a status before an online lane shows as silent
    session_hours: float
    push_interval: float  # the page is sent the venue's state at most this often (seconds)
    warnings: tuple[str, ...] = ()  # not wrong enough to stop the start: logged by run, printed by check-config

    @property
    def tls(self) -> bool:
        return bool(self.cert_file)

    @property
    def url(self) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "::", "127.0.0.1") else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"


def default_path() -> str:
    return os.environ.get("GATE_DASHBOARD_CONFIG", DEFAULT_PATH)


_Table = TomlTable  # the lane config's strict reader (gate.config): one reader, one set of messages


def _required(root: _Table, key: str) -> _Table:
    """A table the dashboard cannot start without (an empty one, and the problem named, when missing)."""
    table = root.table(key)
    if table is None:
        root.problem(key, "required table missing")
        return _Table(key, {}, root.problems)
    return table


def load(path: str | os.PathLike[str]) -> DashboardConfig:
    path = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(path, [f"cannot be read: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(path, [f"larger than {MAX_BYTES // 1024} KiB: not a dashboard config"])
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    return parse(data, path)


def parse(data: dict[str, Any], path: str = "<dashboard config>") -> DashboardConfig:
    problems: list[str] = []
    warnings: list[str] = []
    base = Path(path).parent
    root = _Table("", data, problems)

    main = _required(root, "dashboard")
    venue = main.get("venue", str)
    if venue is not None and not _NAME.match(venue):
        main.problem("venue", "letters, digits, '.', '_' and '-' only (the lanes' [gate] venue)")
    listen = main.get("listen", str, "127.0.0.1:8080")
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        main.problem("listen", f"'host:port' such as '0.0.0.0:8443', got {listen!r}")
        port = 0
    else:
        port = int(port_text)
    title = main.get("title", str, f"{venue or 'venue'} gates")
    cert_file = _file(main, "cert_file", base)
    key_file = _file(main, "key_file", base)
    if bool(cert_file) != bool(key_file):
        main.problem("cert_file", "cert_file and key_file go together (HTTPS)")
    if key_file:
        _private(key_file, "dashboard.key_file", warnings)
    if port and not cert_file and not _loopback(host):
        warnings.append(f"dashboard.listen: {listen} is reachable from the network without TLS: passwords and "
                        "session cookies cross it in clear (set cert_file and key_file, or listen on 127.0.0.1 "
                        "behind a TLS proxy)")
    audit_log = Path(_path(main, "audit_log", base, "/var/lib/gate-dashboard/audit.log"))
    stale_after = main.get("stale_after", float, 30.0, minval=1.0, maxval=3600.0)
    session_hours = main.get("session_hours", float, 12.0, minval=0.1, maxval=24.0 * 30)
    push_interval = main.get("push_interval", float, PUSH_INTERVAL, minval=0.05, maxval=1.0)
    main.finish()

    users = _users(root, problems)
    bus = _broker(_required(root, "bus"), base, venue or "", "venue-monitor",
                  warnings)

    trust = _required(root, "trust")
    admin_key = b""
    admin_text = trust.get("admin_key", str)
    trust.finish()
    if admin_text:
        try:
            admin_key = decode_key(admin_text, "trust.admin_key")
        except TrustError as exc:
            problems.append(f"{exc} (the public_key that gate keygen printed for the admin key)")

    commands = CommandSettings()
    section = root.table("commands")
    if section is not None:
        key_path = _path(section, "signing_key_file", base, "")
        wait = section.get("wait", float, 5.0, minval=0.5, maxval=60.0)
        broker_data = {k: v for k, v in section.data.items() if k not in ("signing_key_file", "wait")}
        section.read.update(broker_data)
        section.finish()
        signing_key = None
        if key_path and _private(key_path, "commands.signing_key_file", None) is not None:
            # the key that commands every lane: the dashboard's user alone may read it, or no start
            problems.append(f"commands.signing_key_file: {key_path} is open to its group or others "
                            f"(mode {_mode(key_path):o}): chmod 600 {key_path}")
        elif key_path:
            try:
                signing_key = decode_key(Path(key_path).read_text(), "commands.signing_key_file")
            except OSError as exc:
                problems.append(f"commands.signing_key_file: cannot read {key_path}: {exc.strerror}")
            except TrustError as exc:
                problems.append(f"commands.signing_key_file: not a private key ({exc})")
        # the broker for commands: the [bus] settings with the admin user's name and password
        merged = {k: v for k, v in (root.data.get("bus") or {}).items() if k not in ("username", "password_file")}
        merged.update(broker_data)
        merged.setdefault("username", "venue-admin")
        broker = _broker(_Table("commands", merged, problems), base, venue or "", "venue-admin", warnings)
        commands = CommandSettings(signing_key, broker, wait)

    occupancy = root.table("occupancy")
    capacity: dict[str, int] = {}
    alarm_percent = 90.0
    if occupancy is not None:
        alarm_percent = occupancy.get("alarm_percent", float, 90.0, minval=1.0, maxval=100.0)
        caps = occupancy.table("capacity")
        if caps is not None:
            for zone in list(caps.data):
                value = caps.get(zone, int, minval=1, maxval=10_000_000)
                if not _NAME.match(zone):
                    caps.problem(zone, "a zone name as the roster gives it")
                elif value is not None:
                    capacity[zone] = value
            caps.finish()
        occupancy.finish()
    root.finish()

    if problems:
        raise ConfigError(path, problems)
    return DashboardConfig(path=path, venue=venue, title=title, host=host, port=port, cert_file=cert_file,
                           key_file=key_file, audit_log=audit_log, users=users, bus=bus, admin_key=admin_key,
                           commands=commands, capacity=capacity, alarm_percent=alarm_percent, stale_after=stale_after,
                           session_hours=session_hours, push_interval=push_interval, warnings=tuple(warnings))


def _mode(path: str) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0


def _private(path: str, what: str, warnings: list[str] | None) -> str | None:
    """A warning when a secret file is open to its group or others (``mode & 0o077``), added to
    ``warnings`` when given; None when the file is private (or cannot be read: said elsewhere)."""
    mode = _mode(path)
    if not mode & 0o077:
        return None
    warning = f"{what}: {path} is a secret but has mode {mode:o}: chmod 600 {path}"
    if warnings is not None:
        warnings.append(warning)
    return warning


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _path(table: _Table, key: str, base: Path, default: str) -> str:
    name = table.get(key, str, default)
    return str(base / name) if name else ""


def _file(table: _Table, key: str, base: Path) -> str:
    path = _path(table, key, base, "")
    if path and not Path(path).is_file():
        table.problem(key, f"no such file {path}")
    return path


def _users(root: _Table, problems: list[str]) -> tuple[User, ...]:
    root.read.add("users")
    raw = root.data.get("users")
    if not isinstance(raw, list) or not raw:
        problems.append("users: at least one [[users]] table with name and password_hash "
                        "(gate venue-dashboard hash-password makes the hash)")
        return ()
    users, names = [], set()
    for i, item in enumerate(raw):
        table = _Table(f"users[{i}]", item, problems)
        name = table.get("name", str)
        password_hash = table.get("password_hash", str)
        table.finish()
        if name is not None and not _NAME.match(name):
            table.problem("name", "letters, digits, '.', '_' and '-' only")
        if password_hash is not None and not _HASH.match(password_hash):
            table.problem("password_hash", "an scrypt hash made by gate venue-dashboard hash-password (never the password)")
        if name in names:
            table.problem("name", f"{name!r} given twice")
        names.add(name)
        if name and password_hash:
            users.append(User(name, password_hash))
    return tuple(users)


def _broker(table: _Table, base: Path, venue: str, default_user: str, warnings: list[str]) -> SyncConfig:
    host = table.get("host", str, "localhost")
    port = table.get("port", int, 1883, minval=1, maxval=65535)
    username = table.get("username", str, default_user)
    password_file = _file(table, "password_file", base)
    ca_file, cert_file, key_file = (_file(table, key, base) for key in ("ca_file", "cert_file", "key_file"))
    topic_root = table.get("topic_root", str, f"gate/v2/{venue}/")
    keepalive = table.get("keepalive", int, 15, minval=5, maxval=600)
    table.finish()
    if topic_root and (not topic_root.endswith("/") or "+" in topic_root or "#" in topic_root):
        table.problem("topic_root", f"must end with '/' and hold no wildcard, got {topic_root!r}")
    password = ""
    if password_file:
        _private(password_file, f"{table.name}.password_file", warnings)
        try:
            password = Path(password_file).read_text().strip()
        except OSError as exc:
            table.problem("password_file", f"cannot read {password_file}: {exc.strerror}")
    if bool(cert_file) != bool(key_file):
        table.problem("cert_file", "cert_file and key_file go together (a client certificate)")
    if key_file:
        _private(key_file, f"{table.name}.key_file", warnings)
    return SyncConfig(host=host, port=port, brokers=((host, port),), topic_root=topic_root, username=username,
                      password=password, ca_file=ca_file, cert_file=cert_file, key_file=key_file, tls=bool(ca_file),
                      keepalive=keepalive)
