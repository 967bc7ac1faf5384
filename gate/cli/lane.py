"""``gate run``, ``check-config``, ``verify``, ``revoke`` and ``keys``: a lane and what it holds."""

from __future__ import annotations

import argparse
import base64
import faulthandler
import json
import time
from pathlib import Path
from typing import Any

from gate.cli.common import EXIT_DENIED, EXIT_OK, UsageError, load_config, parse_time, read_stdin_ticket, ticket_keys


def cmd_run(args: argparse.Namespace) -> int:
    from gate.daemon import Daemon
    from gate.field import logsetup

    config = load_lane_config(args)
    logsetup.setup(config.log_level)
    # systemd's watchdog kills a hung lane with SIGABRT: every thread's stack goes to the journal
    # first, so the hang leaves a trace (and so do SIGSEGV and friends).
    faulthandler.enable()
    return Daemon(config).run()


def load_lane_config(args: argparse.Namespace) -> Any:
    """The config of a lane (``gate run``, ``check-config``): what the admin's tools need and more."""
    from gate.errors import ConfigError

    config = load_config(args)
    problems = config.sync.lane_problems() if config.sync is not None else []
    if problems:
        raise ConfigError(config.path, problems)
    return config


def cmd_identity(args: argparse.Namespace) -> int:
    """This lane's entry for the venue's roster (``gate bundle make --roster``): its id and the
    public half of its identity key, which signs its ledger records."""
    from nacl.signing import SigningKey

    config = load_config(args)
    if config.sync is None or config.sync.identity is None:
        raise UsageError("no [sync] identity_file in the config: this lane has no identity key (install-pi.sh makes one)")
    public = SigningKey(config.sync.identity).verify_key
    entry: dict[str, Any] = {"gate": config.gate_id, "public_key": base64.b64encode(bytes(public)).decode(),
                             "directions": sorted(config.gpio.unlock)}
    if config.engine.gate_policy.zone:
        entry["zone"] = config.engine.gate_policy.zone
    print(json.dumps(entry))
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from gate import trust

    config = load_lane_config(args)
    print(f"{config.path}: ok (gate {config.gate_id}, venue {config.venue}, formats {', '.join(config.engine.formats)})")
    material = trust.build(list(config.trust_documents), config.gt1_keys)
    for name, line in trust.summary(material).items():
        print(f"  trust {name}: {line}")
    for warning in config.warnings():
        print(f"  warning: {warning}")  # works, but should not be so on a venue: exit 0 all the same
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from gate.clock import FixedClock, SystemClock
    from gate.lane.engine import DecisionEngine
    from gate.lane.hardware import load_provider
    from gate.store import Store, private_database
    from gate.store import ledger as records

    config = load_config(args)
    if args.token == "-":  # ticket text on the command line is readable by every user (/proc/*/cmdline)
        args.token = read_stdin_ticket()
    clock = FixedClock(parse_time(args.at)) if args.at is not None else SystemClock()
    private_database(config.database)
    store = Store(config.database, config.gate_id)
    try:
        engine = DecisionEngine(config.engine, config.trust_sources(), store)
        if args.at is None:  # the lane's clock guard; --at names the moment, so the clock is not asked
            engine.clock_synchronized = load_provider(config.hardware, config).clock_sync().synchronized()
        decision, claims = engine.decide(args.token, args.direction, clock.now())
        if decision.accepted and claims is not None and not args.dry_run:
            record = store.ledger.append(
                records.ADMISSION,
                clock.now(),
                ticket_key=claims.ticket_key,
                format=claims.format,
                direction=args.direction,
                details={"source": "cli"},
                proof_key=claims.proof.key if claims.proof else None,
            )
            decision.details["recorded_seq"] = record.seq
    finally:
        store.close()
    print(json.dumps(decision.as_dict(), separators=(",", ":")))
    return EXIT_OK if decision.accepted else EXIT_DENIED


def cmd_revoke(args: argparse.Namespace) -> int:
    from gate.store import Store, private_database

    config = load_config(args)
    files = [args.file] if args.file else []
    if "-" in args.tickets:  # ticket text on the command line is readable by every user (/proc/*/cmdline)
        files.append("-")
    refs = [ref for ref in args.tickets if ref != "-"]
    entries = [(key, args.note) for key in ticket_keys(refs, files)]
    private_database(config.database)
    store = Store(config.database, config.gate_id)
    try:
        added = store.revocations.revoke(entries, time.time())
    finally:
        store.close()
    print(json.dumps({"revoked": added, "already_revoked": len(entries) - added}))
    return EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    """Trust documents kept in the database; a running daemon takes changes in within a second."""
    from gate import trust
    from gate.formats import TrustError
    from gate.store import Store, private_database

    config = load_config(args)
    documents = []
    if args.action == "import":
        if not args.files:
            raise UsageError("keys import: name at least one trust document (JSON file)")
        for path in args.files:
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise UsageError(f"cannot read {path}: {exc.strerror}") from None
            name = args.name if args.name and len(args.files) == 1 else Path(path).name
            try:
                documents.append((trust.parse_document(data, name), data.decode()))
            except TrustError as exc:
                raise UsageError(f"trust document refused, nothing imported: {exc}") from None
    private_database(config.database)
    store = Store(config.database, config.gate_id)
    try:
        if args.action == "import":
            replaced = {d.name for d, _ in documents}
            try:  # together with what is already held and the config's: no contradictions
                stored = trust.parse_stored(store.trust.documents())
                trust.build([*config.trust_documents, *[d for d in stored if d.name not in replaced], *(d for d, _ in documents)], config.gt1_keys)
            except TrustError as exc:
                raise UsageError(f"trust document refused, nothing imported: {exc}") from None
            for document, body in documents:
                store.trust.store_document(document.name, document.format, body, time.time())
                print(json.dumps({"imported": document.name, "format": document.format}))
        elif args.action == "remove":
            for name in args.files:
                print(json.dumps({"removed": name, "found": store.trust.remove_document(name)}))
        else:
            for row in store.trust.document_list():
                print(json.dumps(row))
    finally:
        store.close()
    return EXIT_OK


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    sub.add_parser("run", parents=[common], help="run the lane (the daemon)").set_defaults(fn=cmd_run)
    sub.add_parser("check-config", parents=[common], help="validate the config file").set_defaults(fn=cmd_check_config)

    p = sub.add_parser("verify", parents=[common], help="decide on one ticket, print the decision as JSON")
    p.add_argument("token", help="the scanned text; - reads it from standard input (out of the process list)")
    p.add_argument("--at", help="decide at this time (unix seconds or ISO 8601)")
    p.add_argument("--dry-run", action="store_true", help="record nothing in the ledger")
    p.add_argument("--direction", choices=("in", "out"), default="in")
    p.set_defaults(fn=cmd_verify)

    sub.add_parser("identity", parents=[common], help="this lane's entry for the venue's roster (its record-signing key)").set_defaults(
        fn=cmd_identity)

    p = sub.add_parser("revoke", parents=[common], help="revoke tickets (text or FORMAT:ID_HEX)")
    p.add_argument("tickets", nargs="*", help="scanned text or FORMAT:ID_HEX; - reads them from standard input, one per line")
    p.add_argument("--file", help="one ticket or FORMAT:ID_HEX per line")
    p.add_argument("--note", default="", help="why (kept with the revocation)")
    p.set_defaults(fn=cmd_revoke)

    # Each action a parser of its own, so that options go anywhere (keys import --config F FILE).
    keys = sub.add_parser("keys", help="trust documents: import, list, remove (docs/trust-documents.md)")
    actions = keys.add_subparsers(dest="action", required=True, metavar="import|list|remove")
    p = actions.add_parser("import", parents=[common], help="import JSON trust documents")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--name", help="import under this name (default: the file name)")
    p.set_defaults(fn=cmd_keys)
    actions.add_parser("list", parents=[common], help="list the documents held").set_defaults(fn=cmd_keys, files=[], name=None)
    p = actions.add_parser("remove", parents=[common], help="remove documents by name")
    p.add_argument("files", nargs="+", metavar="NAME")
    p.set_defaults(fn=cmd_keys, name=None)
