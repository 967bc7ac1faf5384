"""``gate bridge run|enrol|status|check``: the venue's back-office link (docs/back-office.md).

The bridge has its own config file (``--bridge-config``, default ``$GATE_BRIDGE_CONFIG`` or
``/etc/gate/bridge.toml``), separate from a lane's ``gate.toml``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from typing import Any

from gate.cli.common import EXIT_DENIED, EXIT_OK, UsageError

STALE_STATUS = 5.0  # seconds: an older status file means the bridge is not running
EXIT_NOT_RUNNING = 3  # gate bridge status: no running bridge (0 fine, 1 something needs attention)
WIDTH = 80  # columns: an ssh terminal


def _config(args: argparse.Namespace) -> Any:
    from gate.bridge import config

    return config.load(args.bridge_config)


def cmd_bridge(args: argparse.Namespace) -> int:
    return {"run": _run, "enrol": _enrol, "status": _status, "check": _check}[args.action](args)


def _run(args: argparse.Namespace) -> int:
    from gate.bridge.service import Bridge
    from gate.field import logsetup
    from gate.field.notify import Notifier

    config = _config(args)
    logsetup.setup(config.log_level)
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would drown the journal
    bridge = Bridge(config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    bridge.start()
    Notifier().ready("bridge running")  # systemd Type=notify (a no-op without NOTIFY_SOCKET)
    while not stop.wait(1.0):
        pass
    bridge.stop()
    return EXIT_OK


def _enrol(args: argparse.Namespace) -> int:
    """Enrol as a pretix device: ``--setup-qr`` (the QR code's text) or ``--url`` and ``--token``
    (an initialization token from pretix's back office). The device file is written 0600."""
    from gate.bridge import pretix

    config = _config(args)
    if config.pretix is None:
        raise UsageError("no [bridge.pretix] table in the bridge config")
    if args.setup_qr:
        url, token = pretix.parse_setup_qr(_read_text(args.setup_qr))
    elif args.url and args.token_file:
        url, token = args.url, _read_text(args.token_file).strip()
    else:
        raise UsageError("bridge enrol: --setup-qr FILE, or --url URL and --token-file FILE")
    try:
        device = pretix.enrol(url, token, allow_insecure=config.allow_insecure)
    except pretix.PretixError as exc:
        print(json.dumps({"enrolled": False, "error": str(exc)}))
        return EXIT_DENIED
    device.save(config.pretix.device_file)
    print(json.dumps({"enrolled": True, "organizer": device.organizer, "device_id": device.device_id,
                      "device_file": str(config.pretix.device_file)}))
    return EXIT_OK


def _read_text(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _read_status(config: Any) -> dict[str, Any] | None:
    """The running bridge's status file, with ``running`` and ``age_s``; None when there is none."""
    try:
        status = json.loads(config.status_file.read_text())
        age = time.time() - float(status.get("at", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    status["running"] = age < STALE_STATUS and status.get("state") == "running"
    status["age_s"] = round(age, 1)
    return status


def _status(args: argparse.Namespace) -> int:
    """What the running bridge last wrote. Exit 0: running, nothing needs attention; 1: running,
    something does (each named, ``!``); 3: not running (no status, or one older than 5 s)."""
    from gate.bridge.health import problems

    config = _config(args)
    status = _read_status(config)
    if status is None:
        print(json.dumps({"running": False, "error": f"no status at {config.status_file}: is gate bridge running?"})
              if args.json else f"bridge: NOT RUNNING (no status at {config.status_file})")
        return EXIT_NOT_RUNNING
    status["problems"] = problems(status) if status["running"] else []
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        for line in status_lines(status):
            print(fit(line))
    if not status["running"]:
        return EXIT_NOT_RUNNING
    return EXIT_DENIED if status["problems"] else EXIT_OK


def fit(line: str, width: int = WIDTH) -> str:
    """A line cut to ``width`` columns (an ssh terminal's 80)."""
    return line if len(line) <= width else line[: width - 1] + "…"


def _ago(at: Any, now: float) -> str:
    if not at:
        return "never"
    age = max(0.0, now - float(at))
    return f"{age:.0f} s ago" if age < 120 else f"{age / 60:.0f} min ago" if age < 7200 else f"{age / 3600:.0f} h ago"


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{value:.2f} s" if value < 10 else f"{value:.0f} s"


def _contact(contact: dict[str, Any]) -> str:
    if contact.get("reachable") is None:
        return "not asked yet"
    if not contact["reachable"]:
        return "NOT REACHABLE"
    return "reachable, authorised" if contact.get("authorised") else "reachable, CREDENTIALS REFUSED"


def status_lines(status: dict[str, Any]) -> list[str]:
    """``gate bridge status`` as text, a line per fact (each fits 80 columns once ``fit``)."""
    now = time.time()
    broker = status.get("broker") or {}
    pretix = status.get("pretix") or {}
    services = status.get("services") or {}
    state = "running" if status["running"] else "NOT RUNNING"
    connected = "connected" if broker.get("connected") else "DISCONNECTED"
    online = len(broker.get("lanes_online", []))
    lines = [f"bridge {status.get('venue')}: {state} (status {status['age_s']} s old)",
             f"  broker   {connected}; records {broker.get('records', 0):,}, refused {broker.get('refused', 0):,}; lanes online {online}"]
    if "pretix" in services:
        lines.append(f"  pretix   {_contact(services['pretix'])}; "
                     f"{'enrolled' if pretix.get('enrolled') else 'NOT ENROLLED'}")
    if "opn" in services:
        lines.append(f"  opn      {_contact(services['opn'])}")
    for kind, pull in sorted((pretix.get("pulls") or {}).items()):
        result = "ok" if pull.get("ok") else f"FAILED, ok {_ago(pull.get('ok_at'), now)}: {pull.get('error')}"
        lines.append(f"  pull     {kind:<24} {_ago(pull.get('at'), now):>10}  {result}")
    for event, whys in (pretix.get("unhonoured") or {}).items():
        for why in whys:
            lines.append(f"  offline  {event}: not honoured: {why}")
    for kind, item in (status.get("published") or {}).items():
        if item:
            lines.append(f"  {kind:<8} version {item.get('version')}"
                         + (f", {item['revocations']:,} revocations" if "revocations" in item else ""))
    window = status.get("lag_window_s", 300)
    for sink, q in sorted((status.get("queue") or {}).items()):
        lines.append(f"  queue    {sink:<14} pending {q['pending']:,} (oldest {_seconds(q.get('oldest_pending_s'))}), "
                     f"dead {q['dead']:,}, done {q['done']:,}")
        lines.append(f"           lag p50 {_seconds(q.get('lag_p50_s'))}, p99 {_seconds(q.get('lag_p99_s'))} "
                     f"({q.get('lag_n', 0):,} in the last {window:.0f} s)")
    for gate, whys in sorted(((status.get("failed_checkins") or {}).get("dropped") or {}).items()):
        lines.append(f"  flood    {gate}: refusals not queued: {whys.get('rate', 0):,} over its rate, "
                     f"{whys.get('full', 0):,} queue full")
    lines += [f"! {problem}" for problem in status.get("problems", [])]
    return lines


def _check(args: argparse.Namespace) -> int:
    """Doctor-style, live: pretix reachable and this device authorised for each event's list;
    OPN reachable with its key; and, from the running bridge's status, the broker, the pulls and
    the queue. Exit 0 when every check passes, 1 when one fails."""
    from gate.bridge.health import problems
    from gate.bridge.opn import OpnClient
    from gate.bridge.pretix import Device, PretixClient, PretixError

    config = _config(args)
    checks: list[tuple[str, bool, str]] = []
    if config.pretix is not None:
        try:
            api = PretixClient(Device.load(config.pretix.device_file), config.pretix.timeout, config.allow_insecure)
        except PretixError as exc:
            checks.append(("pretix", False, str(exc)))
        else:
            for ev in config.pretix.events:
                try:
                    api.checkin_list(ev.slug, ev.checkin_list)
                    checks.append((f"pretix {ev.slug}", True, f"list {ev.checkin_list} read at {api.base}"))
                except PretixError as exc:
                    checks.append((f"pretix {ev.slug}", False, str(exc)))
            api.close()
    if config.opn is not None:
        client = OpnClient(config.opn.url, config.opn.api_key)
        why = client.reachable()
        checks.append(("opn", not why, why or f"reachable at {config.opn.url}"))
        client.close()
    status = _read_status(config)
    if status is None or not status["running"]:
        checks.append(("bridge", False, "not running (no fresh status.json): systemctl status gate-bridge"))
    else:
        found = problems(status)
        checks.append(("bridge", True, f"running, pid {status.get('pid')}"))
        checks += [("bridge", False, problem) for problem in found if not problem.startswith(("pretix:", "opn:"))]
        queue = status.get("queue") or {}
        for sink, q in sorted(queue.items()):
            if not q.get("dead"):
                detail = f"pending {q['pending']:,}, oldest {_seconds(q.get('oldest_pending_s'))}, none dead"
                checks.append((f"queue {sink}", True, detail))
    for name, ok, detail in checks:
        print(fit(f"  {'ok  ' if ok else 'FAIL'}  {name:<16} {detail}"))
    return EXIT_OK if all(ok for _, ok, _ in checks) else EXIT_DENIED


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    from gate.bridge.config import default_path

    bridge = sub.add_parser("bridge", help="the venue's back-office link: pretix, OPN, webhooks (docs/back-office.md)")
    actions = bridge.add_subparsers(dest="action", required=True, metavar="ACTION")
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--bridge-config", default=default_path(),
                     help="the bridge's config (default: $GATE_BRIDGE_CONFIG or /etc/gate/bridge.toml)")
    actions.add_parser("run", parents=[own], help="the bridge daemon")
    enrol = actions.add_parser("enrol", parents=[own], help="enrol as a pretix device (setup QR or initialization token)")
    enrol.add_argument("--setup-qr", metavar="FILE", help="the text of pretix's setup QR code (- for stdin)")
    enrol.add_argument("--url", help="pretix's URL (with --token-file)")
    enrol.add_argument("--token-file", metavar="FILE", help="a file holding the device's initialization token")
    status = actions.add_parser("status", parents=[own], help="the running bridge: services, pulls, queue, lag "
                                "(exit 0 fine, 1 something needs attention, 3 not running)")
    status.add_argument("--json", action="store_true")
    actions.add_parser("check", parents=[own], help="doctor: pretix reachable and authorised, OPN reachable (live), "
                       "and the running bridge's broker, pulls and queue (exit 0 all ok, 1 one failed)")
    bridge.set_defaults(fn=cmd_bridge)
