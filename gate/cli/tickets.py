"""``gate keygen``, ``issue`` and ``wallet``: GT1 keys and tickets, as an issuer and a phone make them."""

from __future__ import annotations

import argparse
import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from gate.cli.common import EXIT_OK, UsageError, parse_time, public_key, signing_key


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

    key = signing_key(args.key)
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
        holder_key=public_key(args.holder_key) if args.holder_key else None,
    )
    print(gt1.encode_static(gt1.issue(key, claims)))
    return EXIT_OK


def cmd_wallet(args: argparse.Namespace) -> int:
    from gate.formats import gt1

    holder = signing_key(args.holder_key)
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


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
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
