"""The ``gate`` command (DESIGN §9). Exit codes: 0 ok / accepted, 1 denied or failed check,
2 bad usage or bad config. Heavy imports stay inside the commands so that start-up is quick.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_DENIED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


def parse_time(text: str) -> int:
    """Unix seconds, or an ISO 8601 date-time (``2026-11-22T20:00:00Z``)."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"not a time: {text!r} (unix seconds or ISO 8601)") from None
    if moment.tzinfo is None:
        raise UsageError(f"time {text!r} needs a timezone (e.g. Z or +01:00)")
    return int(moment.timestamp())


def _load_config(args: argparse.Namespace) -> Any:
    from gate import config

    return config.load(args.config)


def _signing_key(path: str) -> Any:
    from nacl.signing import SigningKey

    from gate.formats.trustdoc import decode_key

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        return SigningKey(decode_key(text, "private key"))
    except ValueError as exc:
        raise UsageError(f"{path}: not a private key ({exc})") from None


def _public_key(text: str) -> bytes:
    """A public key given inline (hex/base64) or as a private key file (its public half)."""
    from gate.formats.trustdoc import decode_key

    if os.path.exists(text):
        return bytes(_signing_key(text).verify_key)
    try:
        return decode_key(text, "key")
    except ValueError as exc:
        raise UsageError(f"holder key {text!r}: {exc}") from None


# --- commands -------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from gate import logsetup
    from gate.daemon import Daemon

    config = _load_config(args)
    logsetup.setup(config.log_level)
    return Daemon(config).run()


def cmd_check_config(args: argparse.Namespace) -> int:
    from gate import trust

    config = _load_config(args)
    print(f"{config.path}: ok (gate {config.gate_id}, venue {config.venue}, formats {', '.join(config.engine.formats)})")
    material = trust.build(list(config.trust_documents), config.gt1_keys)
    for name, line in trust.summary(material).items():
        print(f"  trust {name}: {line}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from gate import ledger as records
    from gate.clock import FixedClock, SystemClock
    from gate.engine import DecisionEngine
    from gate.ledger import Ledger

    config = _load_config(args)
    clock = FixedClock(parse_time(args.at)) if args.at is not None else SystemClock()
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ledger = Ledger(config.database, config.gate_id)
    try:
        engine = DecisionEngine(config.engine, config.trust_sources(), ledger)
        if args.at is None:  # the lane's clock guard; --at names the moment, so the clock is not asked
            from gate.clock import clock_sync

            engine.clock_synchronized = clock_sync(config.simulator).synchronized()
        decision, claims = engine.decide(args.token, args.direction, clock.now())
        if decision.accepted and claims is not None and not args.dry_run:
            record = ledger.append(
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
        ledger.close()
    print(json.dumps(decision.as_dict(), separators=(",", ":")))
    return EXIT_OK if decision.accepted else EXIT_DENIED


def cmd_keygen(args: argparse.Namespace) -> int:
    from nacl.signing import SigningKey

    from gate.formats import gt1

    key = SigningKey.generate()
    public = bytes(key.verify_key)
    info: dict[str, Any] = {"public_key": base64.b64encode(public).decode(), "kid": gt1.kid_for(public).hex()}
    private = base64.b64encode(bytes(key)).decode()
    if args.out:
        path = Path(args.out)
        if path.exists() and not args.force:
            raise UsageError(f"{path} exists; use --force to overwrite a key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(private + "\n")
        info["private_key_file"] = str(path)
    else:
        info["private_key"] = private
    print(json.dumps(info))
    return EXIT_OK


def cmd_issue(args: argparse.Namespace) -> int:
    from gate.formats import gt1

    key = _signing_key(args.key)
    cti = bytes.fromhex(args.id) if args.id else os.urandom(16)
    if not 8 <= len(cti) <= 32:
        raise UsageError("--id must be 8 to 32 bytes of hex")
    claims = gt1.build_claims(
        cti=cti,
        event=args.event,
        issuer=args.issuer,
        product=args.product,
        not_before=parse_time(args.not_before) if args.not_before else None,
        expires=parse_time(args.expires) if args.expires else None,
        issued_at=int(time.time()),
        entries=args.entries,
        zones=args.zone or None,
        holder_key=_public_key(args.holder_key) if args.holder_key else None,
    )
    print(gt1.encode_static(gt1.issue(key, claims)))
    return EXIT_OK


def cmd_wallet(args: argparse.Namespace) -> int:
    from gate.formats import gt1

    holder = _signing_key(args.holder_key)
    try:
        cose = gt1.decode_static(args.ticket.strip())
        while True:
            at = parse_time(args.at) if args.at is not None else int(time.time())
            print(gt1.encode_rotating(cose, holder, at), flush=True)
            if not args.watch:
                return EXIT_OK
            time.sleep(args.interval)
    except gt1.Unreadable as exc:
        raise UsageError(f"--ticket: {exc}") from None
    except KeyboardInterrupt:
        return EXIT_OK


def ticket_keys(refs: list[str], files: list[str] = ()) -> list[str]:  # type: ignore[assignment]
    """Ledger ticket keys for tickets named as scanned text, ``FORMAT:ID_HEX`` or ``key:HEX64``
    (a ticket key itself), given inline or one per line in files (``#`` comments)."""
    from gate import formats

    entries = [(f"entry {i}", ref) for i, ref in enumerate(refs, 1)]
    for path in files:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        entries += [(f"{path}:{i}", line.strip()) for i, line in enumerate(lines, 1)]
    keys, bad = [], []
    enabled = formats.enabled(list(formats.FORMATS))
    for where, ref in entries:
        if not ref or ref.startswith("#"):
            continue
        key = None
        name, _, ident = ref.partition(":")
        if name == "key":
            key = ident.lower() if len(ident) == 64 and all(c in "0123456789abcdefABCDEF" for c in ident) else None
        elif name in formats.FORMATS:  # "gt1:ID_HEX" (format names are lower case, ticket prefixes not)
            key = formats.load(name).ticket_key_of_id(ident)
        else:
            fmt = formats.identify(ref, enabled)
            key = fmt.ticket_key_of(ref) if fmt else None
        if key is None:
            bad.append(f"{where}: not a ticket, FORMAT:ID_HEX or key:HEX64 reference")
        else:
            keys.append(key)
    if bad:
        raise UsageError("; ".join(bad[:20]) + (f"; and {len(bad) - 20} more" if len(bad) > 20 else ""))
    return keys


def cmd_revoke(args: argparse.Namespace) -> int:
    from gate.ledger import Ledger

    config = _load_config(args)
    entries = [(key, args.note) for key in ticket_keys(args.tickets, [args.file] if args.file else [])]
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ledger = Ledger(config.database, config.gate_id)
    try:
        added = ledger.revoke(entries, time.time())
    finally:
        ledger.close()
    print(json.dumps({"revoked": added, "already_revoked": len(entries) - added}))
    return EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    """Trust documents kept in the database; a running daemon takes changes in within a second."""
    from gate import trust
    from gate.formats import TrustError
    from gate.ledger import Ledger

    config = _load_config(args)
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
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ledger = Ledger(config.database, config.gate_id)
    try:
        if args.action == "import":
            replaced = {d.name for d, _ in documents}
            try:  # together with what is already held and the config's: no contradictions
                stored = ledger.trust_documents()
                trust.build([*config.trust_documents, *[d for d in stored if d.name not in replaced], *(d for d, _ in documents)], config.gt1_keys)
            except TrustError as exc:
                raise UsageError(f"trust document refused, nothing imported: {exc}") from None
            for document, body in documents:
                ledger.store_trust_document(document.name, document.format, body, time.time())
                print(json.dumps({"imported": document.name, "format": document.format}))
        elif args.action == "remove":
            for name in args.files:
                print(json.dumps({"removed": name, "found": ledger.remove_trust_document(name)}))
        else:
            for row in ledger.trust_document_list():
                print(json.dumps(row))
    finally:
        ledger.close()
    return EXIT_OK


# --- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from gate import __version__
    from gate.config import default_path

    parser = argparse.ArgumentParser(prog="gate", description="Turnstile controller firmware")
    parser.add_argument("--version", action="version", version=f"gate {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=default_path(), help="config file (default: $GATE_CONFIG or /etc/gate/gate.toml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", parents=[common], help="run the lane (the daemon)").set_defaults(fn=cmd_run)
    sub.add_parser("check-config", parents=[common], help="validate the config file").set_defaults(fn=cmd_check_config)

    p = sub.add_parser("verify", parents=[common], help="decide on one ticket, print the decision as JSON")
    p.add_argument("token", help="the scanned text")
    p.add_argument("--at", help="decide at this time (unix seconds or ISO 8601)")
    p.add_argument("--dry-run", action="store_true", help="record nothing in the ledger")
    p.add_argument("--direction", choices=("in", "out"), default="in")
    p.set_defaults(fn=cmd_verify)

    p = sub.add_parser("keygen", parents=[common], help="make an Ed25519 key pair (issuer or holder)")
    p.add_argument("--out", help="write the private key here (mode 0600)")
    p.add_argument("--force", action="store_true", help="overwrite an existing key file")
    p.set_defaults(fn=cmd_keygen)

    p = sub.add_parser("issue", parents=[common], help="issue a GT1 ticket")
    p.add_argument("--key", required=True, help="issuer private key file")
    p.add_argument("--event", required=True)
    p.add_argument("--id", help="ticket id, hex (default: 16 random bytes)")
    p.add_argument("--issuer")
    p.add_argument("--class", dest="product", help="ticket class / product")
    p.add_argument("--not-before")
    p.add_argument("--expires")
    p.add_argument("--entries", type=int, help="entries allowed (0 = unlimited)")
    p.add_argument("--zone", action="append", help="a zone the ticket may enter (repeat)")
    p.add_argument("--holder-key", help="holder public key (hex/base64) or key file: rotating codes only")
    p.set_defaults(fn=cmd_issue)

    p = sub.add_parser("wallet", parents=[common], help="show a holder-bound ticket's rotating code, as a phone does")
    p.add_argument("--ticket", required=True, help="the GT1: ticket")
    p.add_argument("--holder-key", required=True, help="holder private key file")
    p.add_argument("--at", help="draw at this time instead of now")
    p.add_argument("--watch", action="store_true", help="redraw every --interval seconds")
    p.add_argument("--interval", type=float, default=10.0)
    p.set_defaults(fn=cmd_wallet)

    p = sub.add_parser("revoke", parents=[common], help="revoke tickets (text or FORMAT:ID_HEX)")
    p.add_argument("tickets", nargs="*")
    p.add_argument("--file", help="one ticket or FORMAT:ID_HEX per line")
    p.add_argument("--note", default="", help="why (kept with the revocation)")
    p.set_defaults(fn=cmd_revoke)

    p = sub.add_parser("keys", parents=[common], help="trust documents: import, list, remove (docs/trust-documents.md)")
    p.add_argument("action", choices=("import", "list", "remove"))
    p.add_argument("files", nargs="*", help="JSON trust documents to import, or names to remove")
    p.add_argument("--name", help="import under this name (default: the file name)")
    p.set_defaults(fn=cmd_keys)

    from gate import cli_admin, cli_decode, cli_field

    cli_admin.add_parsers(sub, common)
    cli_decode.add_parsers(sub, common)
    cli_field.add_parsers(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    from gate.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as exc:
        print(f"gate: config error in {exc.path}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"gate: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
