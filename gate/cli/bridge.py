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


def _status(args: argparse.Namespace) -> int:
    """What the running bridge last wrote: broker, pulls, publications, the queue per destination."""
    config = _config(args)
    try:
        status = json.loads(config.status_file.read_text())
    except (OSError, ValueError):
        print(json.dumps({"running": False, "error": f"no status at {config.status_file}: is gate bridge running?"}))
        return EXIT_DENIED
    age = time.time() - float(status.get("at", 0))
    status["running"] = age < STALE_STATUS and status.get("state") == "running"
    status["age_s"] = round(age, 1)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)
    return EXIT_OK if status["running"] else EXIT_DENIED


def _print_status(status: dict[str, Any]) -> None:
    broker = status.get("broker", {})
    print(f"bridge for {status.get('venue')}: {'running' if status['running'] else 'NOT RUNNING'} "
          f"(status {status['age_s']} s old)")
    print(f"  broker     {'connected' if broker.get('connected') else 'DISCONNECTED'}; records {broker.get('records', 0)}, "
          f"refused {broker.get('refused', 0)}; lanes online: {', '.join(broker.get('lanes_online', [])) or '-'}")
    pretix = status.get("pretix", {})
    last = pretix.get("last_pull", {})
    newest = max(last.values()) if last else None
    print(f"  pretix     {'enrolled' if pretix.get('enrolled') else 'NOT ENROLLED'}; last pull "
          f"{f'{time.time() - newest:.0f} s ago' if newest else 'never'}"
          f"{'; error: ' + pretix['last_error'] if pretix.get('last_error') else ''}")
    for event, whys in (pretix.get("unhonoured") or {}).items():
        for why in whys:
            print(f"             {event}: not honoured offline: {why}")
    published = status.get("published", {})
    for kind in ("bundle", "delta"):
        item = published.get(kind)
        if item:
            print(f"  {kind:<10} version {item.get('version')}" + (f", {item['revocations']} revocations" if "revocations" in item else ""))
    for sink, q in sorted((status.get("queue") or {}).items()):
        oldest = q.get("oldest_pending_s")
        print(f"  {sink:<10} pending {q['pending']} (oldest {oldest if oldest is not None else '-'} s), done {q['done']}, "
              f"dead {q['dead']}, skipped {q.get('skipped', 0)}; lag p99 {q.get('lag_p99_s', '-')} s"
              f"{'; last error: ' + q['last_error'] if q.get('last_error') else ''}")


def _check(args: argparse.Namespace) -> int:
    """Live checks: pretix reachable and this device authorised for each event; OPN reachable
    with its key. Exit 1 when one fails."""
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
                    checks.append((f"pretix {ev.slug}", True, f"reachable and authorised at {api.base}, list {ev.checkin_list}"))
                except PretixError as exc:
                    checks.append((f"pretix {ev.slug}", False, str(exc)))
            api.close()
    if config.opn is not None:
        client = OpnClient(config.opn.url, config.opn.api_key)
        why = client.reachable()
        checks.append(("opn", not why, why or f"reachable at {config.opn.url}"))
        client.close()
    for name, ok, detail in checks:
        print(f"  {name:<20} {'ok' if ok else 'FAIL'}  {detail}")
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
    status = actions.add_parser("status", parents=[own], help="the running bridge: broker, pulls, queue, lag")
    status.add_argument("--json", action="store_true")
    actions.add_parser("check", parents=[own], help="live checks: pretix reachable and authorised, OPN reachable")
    bridge.set_defaults(fn=cmd_bridge)
