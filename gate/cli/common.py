"""What every ``gate`` command group shares: exit codes, reading the config and key files,
times given on the command line, and naming tickets (text, ``FORMAT:ID_HEX`` or ``key:HEX64``).
Exit codes: 0 ok / accepted, 1 denied or failed check, 2 bad usage or bad config."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from gate.errors import UsageError

EXIT_OK, EXIT_DENIED, EXIT_USAGE = 0, 1, 2

__all__ = ["EXIT_DENIED", "EXIT_OK", "EXIT_USAGE", "UsageError", "load_config", "parse_time", "public_key",
           "signing_key", "ticket_keys"]


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


def load_config(args: argparse.Namespace) -> Any:
    from gate import config

    return config.load(args.config)


def signing_key(path: str) -> Any:
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


def public_key(text: str) -> bytes:
    """A public key given inline (hex/base64) or as a private key file (its public half)."""
    from gate.formats.trustdoc import decode_key

    if os.path.exists(text):
        return bytes(signing_key(text).verify_key)
    try:
        return decode_key(text, "key")
    except ValueError as exc:
        raise UsageError(f"holder key {text!r}: {exc}") from None


MAX_STDIN = 16 * 1024 * 1024  # revocation lists read from standard input
MAX_TICKET = 8 * 1024  # one scanned text (the decision loop's own limit)


def read_stdin_ticket() -> str:
    """One ticket's text from standard input (its first line), so it is not on the command line."""
    text = sys.stdin.readline(MAX_TICKET + 2).rstrip("\r\n")
    if not text:
        raise UsageError("no ticket text on standard input")
    if len(text) > MAX_TICKET:
        raise UsageError(f"ticket text longer than {MAX_TICKET} characters")
    return text


def ticket_keys(refs: list[str], files: list[str] = ()) -> list[str]:  # type: ignore[assignment]
    """Ledger ticket keys for tickets named as scanned text, ``FORMAT:ID_HEX`` or ``key:HEX64``
    (a ticket key itself), given inline or one per line in files (``#`` comments)."""
    from gate import formats

    entries = [(f"entry {i}", ref) for i, ref in enumerate(refs, 1)]
    for path in files:
        try:
            lines = sys.stdin.read(MAX_STDIN).splitlines() if path == "-" else Path(path).read_text().splitlines()
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
