"""``gate bundle make|sign|load|publish`` and ``gate command``: the venue admin's tools.

The admin makes a bundle (or a revocation delta) as plain JSON that can be read and reviewed,
signs it with the admin key (possibly on another, offline machine), and either loads the
signed file on a gate (air-gapped set-up) or publishes it on the venue bus, retained, where
every gate takes it in. docs/bundles.md walks through it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from gate.cli.common import EXIT_DENIED, EXIT_OK, UsageError, load_config, parse_time, signing_key, ticket_keys

PUBLISH_TIMEOUT = 10.0


def cmd_bundle(args: argparse.Namespace) -> int:
    return {"make": _make, "sign": _sign, "load": _load, "publish": _publish}[args.action](args)


def _make(args: argparse.Namespace) -> int:
    from gate.decision import revocation_prefix
    from gate.trust import signed

    venue = args.venue or load_config(args).venue
    version = args.version if args.version is not None else int(time.time())
    revoked = {revocation_prefix(k) for k in ticket_keys(args.revoke, args.revoked)}
    if args.delta:
        if args.documents:
            raise UsageError("bundle make --delta: a delta carries revocations only; documents go in a bundle")
        if args.base is None:
            raise UsageError("bundle make --delta: --base names the bundle version the delta changes")
        restored = {revocation_prefix(k) for k in ticket_keys(args.restore, args.restored)}
        if args.previous:  # cumulative: carry the previous delta's changes over
            before = _read_payload(args.previous, "delta")
            if before["base"] != args.base:
                raise UsageError(f"--previous is a delta for bundle {before['base']}, not {args.base}")
            revoked |= _unpack(before["revoked"]) - restored
            restored |= _unpack(before["restored"]) - revoked
        payload = signed.delta_payload(venue, args.base, version, time.time(), signed.pack_prefixes(revoked),
                                       signed.pack_prefixes(restored - revoked))
    else:
        if args.restore or args.restored or args.previous or args.base is not None:
            raise UsageError("--restore, --restored, --previous and --base are for --delta")
        roster, zones = _read_roster(args.roster) if args.roster else (None, None)
        documents = []
        for path in args.documents:
            try:
                documents.append(json.loads(Path(path).read_bytes()))
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot read trust document {path}: {exc}") from None
        payload = signed.bundle_payload(venue, version, time.time(), documents, signed.pack_prefixes(revoked), roster, zones)
    _write(args.out, json.dumps(payload, separators=(",", ":")).encode() + b"\n")
    summary = {k: v for k, v in payload.items() if k in ("type", "venue", "version", "base")}
    summary["revoked"] = payload["revoked"]["count"]
    if args.delta:
        summary["restored"] = payload["restored"]["count"]
    else:
        summary["documents"] = len(payload["documents"])
        summary["gates"] = len(payload.get("roster", []))
        if payload.get("zones"):
            summary["zones"] = {zone["zone"]: zone["capacity"] for zone in payload["zones"]}
    print(json.dumps(summary), file=sys.stderr if args.out is None else sys.stdout)
    return EXIT_OK


def _read_roster(path: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The venue's gates, and each zone's capacity, from a roster file::

        {"gates": [{"gate": "lane-1", "public_key": "<its identity key's public half>", "zone": "north",
                    "directions": ["in", "out"], "retired": false}, ...],
         "zones": {"north": 5000}}
    """
    from gate.formats.trustdoc import Fields, decode_key
    from gate.trust import signed

    try:
        doc = Fields(json.loads(Path(path).read_bytes()), "roster")
        entries = []
        for gate in doc.objects("gates"):
            entries.append(signed.roster_entry(
                gate.text("gate", max_len=64), decode_key(gate.text("public_key", max_len=100), f"{gate.path}.public_key"),
                zone=gate.text("zone", None, max_len=64), directions=tuple(gate.texts("directions", ["in", "out"])),
                retired=gate.boolean("retired", False), retired_at=_retired_at(gate)))
            gate.done()
        zones = _zone_capacities(doc, {entry["zone"] for entry in entries if "zone" in entry})
        doc.done()
    except (OSError, ValueError) as exc:  # TrustError is a ValueError: the field and what is wrong
        raise UsageError(f"roster {path}: {exc}") from None
    return entries, zones


def _zone_capacities(doc: Any, gate_zones: set[str]) -> dict[str, int]:
    """``"zones": {"north": 5000}``: how many people each zone holds at most. Every zone named
    must be some gate's zone (a misspelt zone would otherwise have no capacity at all)."""
    from gate.trust.signed import MAX_CAPACITY

    table = doc.obj("zones", None)
    if table is None:
        return {}
    zones = {}
    for zone in sorted(table.data):
        capacity = table.get(zone, None)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity <= MAX_CAPACITY:
            raise ValueError(f"{table.path}.{zone}: a capacity is a whole number of people, 1 to {MAX_CAPACITY}")
        if zone not in gate_zones:
            raise ValueError(f"{table.path}.{zone}: no gate of the roster is in zone {zone!r} "
                             f"(the gates' zones: {', '.join(sorted(gate_zones)) or 'none'})")
        zones[zone] = capacity
    table.done()
    return zones


def _retired_at(gate: Any) -> float | None:
    """When a retired gate was retired: its records made before stay the venue's past. Given in
    the roster file (an ISO time or unix seconds: when the lane was stolen or taken out), else now."""
    if not gate.boolean("retired", False):
        return None
    value = gate.get("retired_at", None)
    if value is None:
        return round(time.time(), 3)
    if isinstance(value, str):
        return parse_time(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise ValueError(f"{gate.path}.retired_at: an ISO time (2026-12-01T18:00:00Z) or unix seconds")


def _sign(args: argparse.Namespace) -> int:
    from gate.trust import signed

    key = signing_key(args.key)
    text = _read(args.file).decode("utf-8", "replace").strip()
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{args.file}: not JSON ({exc})") from None
    if not isinstance(payload, dict) or payload.get("type") not in ("bundle", "delta"):
        raise UsageError(f"{args.file}: not a bundle or delta made by gate bundle make")
    _write(args.out, signed.sign(text, key) + b"\n")
    return EXIT_OK


def _load(args: argparse.Namespace) -> int:
    from gate.store import Store, private_database
    from gate.trust import bundles

    config = load_config(args)
    data = _read(args.file).strip()
    private_database(config.database)
    store = Store(config.database, config.gate_id)
    try:
        report = bundles.receive(store, data, config.admin_key, config.venue, config.trust_sources())
    finally:
        store.close()
    print(json.dumps(report.as_dict()))
    return EXIT_DENIED if report.outcome == bundles.Outcome.REFUSED else EXIT_OK


def _publish(args: argparse.Namespace) -> int:
    """Retained on ``bundle`` or ``bundle/delta``: gates that connect later get it too. The
    file is checked against this machine's config (admin key, venue) before it goes out."""
    from gate.sync.messages import Topics
    from gate.trust import signed

    config = load_config(args)
    data = _read(args.file).strip()
    if config.admin_key is None:
        raise UsageError("no [trust] admin_key in the config: cannot check the bundle before publishing it")
    try:
        message = signed.read(data, config.admin_key, config.venue)
    except signed.SignedError as exc:
        raise UsageError(f"{args.file} not published: {exc}") from None
    if isinstance(message, signed.Command):
        raise UsageError(f"{args.file} is a command; gate command sends those")
    settings = _admin_settings(args, config)
    topics = Topics(settings.topic_root, config.gate_id)
    topic = topics.bundle if isinstance(message, signed.Bundle) else topics.bundle_delta
    _publish_once(settings, topic, data, retain=True)
    print(json.dumps({"published": topic, "type": "bundle" if isinstance(message, signed.Bundle) else "delta",
                      "version": message.version, "bytes": len(data)}))
    return EXIT_OK


def cmd_command(args: argparse.Namespace) -> int:
    """Sign a command for one gate, send it, and wait for the gate's answer."""
    from gate.sync.messages import Topics
    from gate.trust import signed

    config = load_config(args)
    if args.action == "set_mode" and args.mode is None:
        raise UsageError("command set_mode: name the mode (normal, free, locked)")
    command = signed.Command(config.venue, args.gate, args.action, time.time(), signed.new_nonce(),
                             args.mode if args.action == "set_mode" else None, args.direction)
    data = signed.sign(signed.command_payload(command), signing_key(args.key))
    if args.print:
        sys.stdout.write(data.decode() + "\n")
        return EXIT_OK
    settings = _admin_settings(args, config)
    topics = Topics(settings.topic_root, args.gate)
    answer = _request(settings, topics.command, data, topics.command_result, command.nonce, args.wait)
    if answer is None:
        print(json.dumps({"ok": False, "error": f"no answer from {args.gate} within {args.wait:g} s (offline?)"}))
        return EXIT_DENIED
    print(json.dumps(answer))
    return EXIT_OK if answer.get("ok") else EXIT_DENIED


# --- helpers ---------------------------------------------------------------------------------


def _read(path: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _write(path: str | None, data: bytes) -> None:
    if path is None or path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    Path(path).write_bytes(data)


def _read_payload(path: str, kind: str) -> dict[str, Any]:
    """A payload made by ``bundle make``, signed or not (``--previous``)."""
    data = json.loads(_read(path))
    if isinstance(data, dict) and "signed" in data:
        data = json.loads(data["signed"])
    if not isinstance(data, dict) or data.get("type") != kind:
        raise UsageError(f"{path}: not a {kind}")
    return data


def _unpack(part: dict[str, Any]) -> set[bytes]:
    import base64

    from gate.decision import PREFIX_BYTES

    raw = base64.b64decode(part["prefixes"])
    return {raw[i : i + PREFIX_BYTES] for i in range(0, len(raw), PREFIX_BYTES)}


ADMIN_USER = "venue-admin"


def _admin_settings(args: argparse.Namespace, config: Any) -> Any:
    """The config's broker, with the admin's credentials, never a lane's: the ACL lets only
    venue-admin publish bundles and commands, and the broker takes the user name as the client
    id (use_username_as_clientid), so a login as lane-3 would throw lane 3 off the bus. The
    user: --username, else a [sync] username that is not the config's gate id (an admin's
    gate.toml), else venue-admin. The password: --password-file, else the config's own only
    for the config's own user."""
    import dataclasses

    if config.sync is None:
        raise UsageError("no [sync] table in the config: which broker?")
    own = config.sync.username if config.sync.username != config.gate_id else ""
    username = args.username or own or ADMIN_USER
    password = config.sync.password if username == config.sync.username else ""
    if args.password_file:
        try:
            password = Path(args.password_file).read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read {args.password_file}: {exc.strerror}") from None
    return dataclasses.replace(config.sync, username=username, password=password)


def _connect(settings: Any, client_id: str) -> Any:
    import threading

    from gate.sync.client import make_client

    client = make_client(settings, client_id, clean_session=True)
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(settings.host, settings.port, keepalive=30)
    except OSError as exc:
        raise UsageError(f"cannot reach the broker {settings.host}:{settings.port}: {exc}") from None
    client.loop_start()
    if not connected.wait(PUBLISH_TIMEOUT) or refused:
        client.loop_stop()
        hint = "" if settings.password else " (no password given: --password-file FILE)"
        raise UsageError(f"broker {settings.host}:{settings.port} refused user {settings.username!r}: "
                         f"{refused[0] if refused else 'no answer'}{hint}")
    return client


def _publish_once(settings: Any, topic: str, data: bytes, retain: bool) -> None:
    client = _connect(settings, f"gate-admin-{int(time.time() * 1000)}")
    try:
        info = client.publish(topic, data, qos=1, retain=retain)
        info.wait_for_publish(PUBLISH_TIMEOUT)
        if not info.is_published():
            raise UsageError(f"the broker did not acknowledge the message on {topic}")
    finally:
        client.disconnect()
        client.loop_stop()


def _request(settings: Any, topic: str, data: bytes, reply_topic: str, nonce: str, wait: float) -> dict[str, Any] | None:
    """Publish ``data`` and wait for the reply that carries ``nonce``."""
    import queue

    answers: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        try:
            answer = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(answer, dict) and answer.get("nonce") == nonce:
            answers.put(answer)

    import threading

    subscribed = threading.Event()
    client = _connect(settings, f"gate-admin-{nonce[:12]}")
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    try:
        deadline = time.monotonic() + wait
        client.subscribe(reply_topic, qos=1)
        if not subscribed.wait(wait):  # listening before the gate can answer
            return None
        client.publish(topic, data, qos=1)
        try:
            return answers.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
    finally:
        client.disconnect()
        client.loop_stop()


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    broker = argparse.ArgumentParser(add_help=False)
    broker.add_argument("--username", help=f"broker user (default: {ADMIN_USER}, or the admin config's own [sync] username; "
                                             "never a lane's: docs/mqtt.md, 'Users')")
    broker.add_argument("--password-file", help="file holding that user's password")

    bundle = sub.add_parser("bundle", help="signed trust bundles and revocation deltas (docs/bundles.md)")
    actions = bundle.add_subparsers(dest="action", required=True, metavar="ACTION")
    make = actions.add_parser("make", parents=[common], help="a bundle or a delta, unsigned, as plain JSON")
    make.add_argument("--out", help="write here instead of stdout")
    make.add_argument("--venue", help="the venue (default: the config's)")
    make.add_argument("--version", type=int, help="bundle or delta version (default: now, in unix seconds)")
    make.add_argument("--documents", nargs="*", default=[], metavar="JSON", help="trust documents to carry")
    make.add_argument("--roster", metavar="JSON", help="the venue's gates and their identity keys (docs/bundles.md)")
    make.add_argument("--revoke", action="append", default=[], metavar="TICKET", help="a ticket to revoke (repeat)")
    make.add_argument("--revoked", action="append", default=[], metavar="FILE", help="a file of tickets to revoke, one per line")
    make.add_argument("--delta", action="store_true", help="a revocation delta instead of a bundle")
    make.add_argument("--base", type=int, help="--delta: the bundle version it changes")
    make.add_argument("--restore", action="append", default=[], metavar="TICKET", help="--delta: un-revoke a ticket")
    make.add_argument("--restored", action="append", default=[], metavar="FILE", help="--delta: a file of tickets to un-revoke")
    make.add_argument("--previous", help="--delta: the previous delta, whose changes this one carries on")
    sign = actions.add_parser("sign", parents=[common], help="sign a bundle or delta with the admin key")
    sign.add_argument("file", help="made by bundle make (- for stdin)")
    sign.add_argument("--key", required=True, help="the admin's private key file")
    sign.add_argument("--out", help="write here instead of stdout")
    load = actions.add_parser("load", parents=[common], help="apply a signed bundle or delta to this gate")
    load.add_argument("file", help="the signed file (- for stdin)")
    publish = actions.add_parser("publish", parents=[common, broker], help="publish a signed bundle or delta, retained")
    publish.add_argument("file", help="the signed file (- for stdin)")
    bundle.set_defaults(fn=cmd_bundle)

    p = sub.add_parser("command", parents=[common, broker], help="send a signed command to a gate and wait for its answer")
    p.add_argument("gate", help="the gate id")
    p.add_argument("action", choices=("set_mode", "open_once", "reload", "end_recovery"))
    p.add_argument("mode", nargs="?", choices=("normal", "free", "locked"), help="set_mode: the mode")
    p.add_argument("--direction", choices=("in", "out"), default="in", help="open_once: which way")
    p.add_argument("--key", required=True, help="the admin's private key file")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the gate's answer")
    p.add_argument("--print", action="store_true", help="print the signed command instead of sending it")
    p.set_defaults(fn=cmd_command)
