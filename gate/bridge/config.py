"""The bridge's own TOML file (``/etc/gate/bridge.toml``), read strictly at start-up the way
``gate.config`` reads a lane's: every key typed and ranged, unknown keys are errors, every
problem collected and named (``ConfigError``, exit 2), so that a typo fails at start and not
at the first upload. Secrets are read from files named here, never written in it.

    [bridge]
    venue = "arena"
    state_dir = "/var/lib/gate-bridge"        # bridge.db (queue, pulled secrets), the pretix device file
    admin_key_file = "/etc/gate/admin.key"    # signs bundles and deltas: no key, no start
    roster = "/etc/gate/roster.json"          # the venue's gates: verifies their records, goes in every bundle
    documents = ["/etc/gate/trust/gt1.json"]  # other trust documents every bundle carries
    poll_interval = 10                        # seconds between pretix pulls

    [bridge.broker]                           # the venue bus, as the user venue-bridge
    host = "broker.venue.lan"
    port = 8883
    password_file = "/etc/gate/bridge-mqtt.pw"
    ca_file = "/etc/gate/venue-ca.crt"

    [bridge.pretix]                           # url and organizer come from enrolment
    [[bridge.pretix.events]]
    slug = "democon"
    checkin_list = 1

    [bridge.opn]
    url = "https://engine.play.onopen.xyz"
    api_key_file = "/etc/gate/opn.key"
    events = ["democon"]                      # pretix events whose tickets are twinned on OPN
    gt1_tickets = "/etc/gate/opn-gt1.txt"     # and these GT1 tickets (ids, hex, one a line)
    mode = "multi_gate"                       # scannedTicket at admission + checkedInTicket; or single_gate

    [[bridge.webhooks]]
    url = "https://crm.example/hooks/gate"
    secret_file = "/etc/gate/webhook.secret"  # whsec_...
    name = "crm"                              # optional: names its queue (else a hash of the url)

``allow_insecure = true`` (in ``[bridge]``) lets pretix, OPN and webhooks be plain ``http://``
to other hosts than this one; without it only loopback may be.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nacl.signing import SigningKey

from gate.bridge import intake
from gate.bridge.transport import insecure
from gate.config import SyncConfig, TomlTable, loopback_listen
from gate.errors import ConfigError, TrustError
from gate.formats.trustdoc import decode_key

DEFAULT_PATH = "/etc/gate/bridge.toml"
BRIDGE_USER = "venue-bridge"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


_Table = TomlTable  # the lane config's strict reader (gate.config): one reader, one set of messages


@dataclass(frozen=True)
class PretixEventConfig:
    slug: str
    checkin_list: int
    upload: bool = True


@dataclass(frozen=True)
class PretixConfig:
    device_file: Path
    events: tuple[PretixEventConfig, ...]
    timeout: float = 15.0
    workers: int = 1  # concurrent redeem uploads (pretix on SQLite locks with more; on PostgreSQL 2-4 help)
    failed_checkins: bool = True  # the lanes' refusals of pretix tickets go to checkinlists/{id}/failed_checkins/
    # how many refusals are queued (gate.bridge.intake): per lane a second and at once; pending in all
    failed_checkins_rate: float = intake.RATE
    failed_checkins_burst: int = intake.BURST
    failed_checkins_max_pending: int = intake.MAX_PENDING


@dataclass(frozen=True)
class OpnConfig:
    url: str
    api_key: str = field(repr=False)
    events: tuple[str, ...]
    mode: str = "multi_gate"
    batch_size: int = 100
    max_attempts: int = 10
    gt1_tickets: Path | None = None  # GT1 ticket ids (cti, hex), one a line: OPN's ticketId is the id


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: str = field(repr=False)
    max_attempts: int = 20
    name: str = ""  # names the receiver's queue; without it, a hash of the URL does

    @property
    def sink(self) -> str:
        """The receiver's queue (the ``jobs.sink`` of its deliveries): stable across restarts
        whatever the order of ``[[bridge.webhooks]]``, so reordering or removing one receiver
        never hands its pending deliveries to another."""
        if self.name:
            return f"webhook-{self.name}"
        return "webhook-" + hashlib.sha256(self.url.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class BridgeConfig:
    path: str
    venue: str
    state_dir: Path
    admin_key: SigningKey = field(repr=False)
    roster_file: Path
    document_files: tuple[Path, ...]
    poll_interval: float
    log_level: str
    broker: SyncConfig
    pretix: PretixConfig | None
    opn: OpnConfig | None
    webhooks: tuple[WebhookConfig, ...]
    allow_insecure: bool = False  # plain http:// to other hosts than this one (tokens and secrets in the clear)
    metrics: tuple[str, int] | None = None  # Prometheus metrics on this loopback (host, port)

    @property
    def database(self) -> Path:
        return self.state_dir / "bridge.db"

    @property
    def status_file(self) -> Path:
        return self.state_dir / "status.json"


def default_path() -> str:
    import os

    return os.environ.get("GATE_BRIDGE_CONFIG", DEFAULT_PATH)


def load(path: str) -> BridgeConfig:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(path, [f"cannot be read: {exc.strerror or exc}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    return parse(data, path)


def _secret(table: _Table, key: str, base: Path, required: bool = True) -> str:
    path = table.path(key, base) if required else table.path(key, base, "")
    if path is None:
        return ""
    try:
        return path.read_text().strip()
    except OSError as exc:
        table.problem(key, f"cannot read {path}: {exc.strerror}")
        return ""


def _url(table: _Table, key: str, allow_insecure: bool) -> str:
    value = table.get(key, str) or ""
    parts = urlsplit(value)
    if value and (parts.scheme not in ("http", "https") or not parts.hostname):
        table.problem(key, f"must be an http(s) URL, got {value[:80]!r}")
    elif value and (why := insecure(value, allow_insecure)):
        table.problem(key, why)
    return value


def parse(data: dict[str, Any], path: str = "<bridge config>") -> BridgeConfig:
    problems: list[str] = []
    base = Path(path).parent
    root = _Table("", data, problems)
    bridge = root.table("bridge") or _Table("bridge", {}, problems)
    venue = bridge.get("venue", str) or ""
    if venue and not _NAME.match(venue):
        bridge.problem("venue", f"letters, digits, '.', '_' and '-' only, got {venue!r}")
    state_dir = Path(bridge.get("state_dir", str, "/var/lib/gate-bridge"))
    admin_key = None
    key_path = bridge.path("admin_key_file", base)
    if key_path is not None:
        try:
            admin_key = SigningKey(decode_key(key_path.read_text(), "admin key"))
        except OSError as exc:
            bridge.problem("admin_key_file", f"cannot read {key_path}: {exc.strerror} (the bridge signs bundles with "
                                             "the venue admin key; it does not start without it)")
        except TrustError as exc:
            bridge.problem("admin_key_file", f"not a private key ({exc})")
    roster_file = bridge.path("roster", base)
    if roster_file is not None and not roster_file.is_file():
        bridge.problem("roster", f"no such file {roster_file}")
    documents = tuple(base / p for p in bridge.get("documents", list, []))
    for p in documents:
        if not p.is_file():
            bridge.problem("documents", f"no such file {p}")
    poll_interval = bridge.get("poll_interval", float, 10.0, minval=1.0, maxval=3600.0)
    log_level = bridge.get("log_level", str, "info", choices=("debug", "info", "warning", "error"))
    allow_insecure = bridge.get("allow_insecure", bool, False)
    metrics = loopback_listen(bridge, "metrics")

    broker_table = bridge.table("broker") or _Table("bridge.broker", {}, problems)
    host = broker_table.get("host", str, "localhost")
    port = broker_table.get("port", int, 1883, minval=1, maxval=65535)
    username = broker_table.get("username", str, BRIDGE_USER)
    password = _secret(broker_table, "password_file", base, required=False)
    files = {k: broker_table.path(k, base, "") for k in ("ca_file", "cert_file", "key_file")}
    for k, p in files.items():
        if p is not None and not p.is_file():
            broker_table.problem(k, f"no such file {p}")
    topic_root = broker_table.get("topic_root", str, f"gate/v2/{venue}/")
    if not topic_root.endswith("/") or "+" in topic_root or "#" in topic_root:
        broker_table.problem("topic_root", f"must end with '/' and hold no wildcard, got {topic_root!r}")
    keepalive = broker_table.get("keepalive", int, 15, minval=5, maxval=600)
    catch_up = broker_table.get("catch_up_interval", float, 30.0, minval=1.0, maxval=3600.0)
    status_interval = broker_table.get("status_interval", float, 5.0, minval=1.0, maxval=600.0)
    broker_table.finish()
    broker = SyncConfig(host=host, port=port, brokers=((host, port),), topic_root=topic_root, username=username,
                        password=password, ca_file=str(files["ca_file"] or ""), cert_file=str(files["cert_file"] or ""),
                        key_file=str(files["key_file"] or ""), tls=files["ca_file"] is not None, keepalive=keepalive,
                        catch_up_interval=catch_up, status_interval=status_interval)

    pretix = None
    pretix_table = bridge.table("pretix")
    if pretix_table is not None:
        events = []
        for ev in pretix_table.tables("events"):
            slug = ev.get("slug", str) or ""
            if slug and not _NAME.match(slug):
                ev.problem("slug", f"not a pretix event slug: {slug!r}")
            events.append(PretixEventConfig(slug, ev.get("checkin_list", int, minval=1) or 0, ev.get("upload", bool, True)))
            ev.finish()
        if not events:
            pretix_table.problem("events", "name at least one event ([[bridge.pretix.events]] slug, checkin_list)")
        pretix = PretixConfig(pretix_table.path("device_file", base, str(state_dir / "pretix-device.json")) or Path(),
                              tuple(events), pretix_table.get("timeout", float, 15.0, minval=1.0, maxval=300.0),
                              pretix_table.get("workers", int, 1, minval=1, maxval=16),
                              pretix_table.get("failed_checkins", bool, True),
                              pretix_table.get("failed_checkins_rate", float, intake.RATE, minval=0.01, maxval=10000.0),
                              pretix_table.get("failed_checkins_burst", int, intake.BURST, minval=1, maxval=1_000_000),
                              pretix_table.get("failed_checkins_max_pending", int, intake.MAX_PENDING, minval=1,
                                               maxval=10_000_000))
        pretix_table.finish()

    opn = None
    opn_table = bridge.table("opn")
    if opn_table is not None:
        opn = OpnConfig(_url(opn_table, "url", allow_insecure), _secret(opn_table, "api_key_file", base),
                        tuple(opn_table.get("events", list, [])),
                        opn_table.get("mode", str, "multi_gate", choices=("multi_gate", "single_gate")),
                        opn_table.get("batch_size", int, 100, minval=1, maxval=5000),
                        opn_table.get("max_attempts", int, 10, minval=1, maxval=1000),
                        opn_table.path("gt1_tickets", base, ""))
        if opn.gt1_tickets is not None and not opn.gt1_tickets.is_file():
            opn_table.problem("gt1_tickets", f"no such file {opn.gt1_tickets}")
        known = {e.slug for e in pretix.events} if pretix else set()
        for slug in opn.events:
            if slug not in known:
                opn_table.problem("events", f"{slug!r} is not one of [[bridge.pretix.events]] (its tickets' ids come from pretix)")
        opn_table.finish()

    webhooks = []
    for hook in bridge.tables("webhooks"):
        secret = _secret(hook, "secret_file", base)
        from gate.bridge.webhooks import WebhookError, secret_bytes

        try:
            if secret:
                secret_bytes(secret)
        except WebhookError as exc:
            hook.problem("secret_file", str(exc))
        name = hook.get("name", str, "")
        if name and not _NAME.match(name):
            hook.problem("name", f"letters, digits, '.', '_' and '-' only, got {name!r}")
        webhooks.append(WebhookConfig(_url(hook, "url", allow_insecure), secret,
                                      hook.get("max_attempts", int, 20, minval=1, maxval=1000), name))
        if sum(w.sink == webhooks[-1].sink for w in webhooks) > 1:
            hook.problem("name" if name else "url", f"a second receiver with the queue {webhooks[-1].sink!r}: "
                                                     "give each [[bridge.webhooks]] its own url or name")
        hook.finish()
    bridge.finish()
    root.finish()
    if problems:
        raise ConfigError(path, problems)
    assert admin_key is not None and roster_file is not None
    return BridgeConfig(path, venue, state_dir, admin_key, roster_file, documents, poll_interval, log_level, broker,
                        pretix, opn, tuple(webhooks), allow_insecure, metrics)
