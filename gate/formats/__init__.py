"""The format registry: which ticket formats a gate reads, recognised from the content itself.

Each format is a module of pure functions that exports a ``TicketFormat``:

- ``recognises(text) -> bool``: cheap, from the shape of the text alone;
- ``read(text, env) -> Claims | Denial``: parse and verify; malformed input is a ``Denial``
  (``unreadable``), never an exception;
- ``ticket_key_of(text) -> str | None``: the ledger key without verifying (``gate revoke``).

and, for its trust material, a ``TrustFormat`` whose ``parse(document)`` reads one JSON trust
document (from config, ``gate keys import`` or a bundle) and whose ``merge(parts)`` combines
several. Modules load on first use, so a gate pays the import time (protobuf, secp256k1) only
for the formats it has enabled. Adding a format means adding a module and a line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from gate.decision import IN, Claims, Denial, ticket_key
from gate.errors import TrustError, Unreadable  # noqa: F401 (the formats raise them: imported from here)

# Registry name → module. The order is the order of recognition: most specific shapes first.
FORMATS: dict[str, str] = {
    "gt1": "gate.formats.gt1:FORMAT",
    "jws": "gate.formats.jws:FORMAT",
    "totp": "gate.formats.totp:FORMAT",
    "eth_qr": "gate.formats.eth_qr:FORMAT",
    "pretix_sig1": "gate.formats.pretix:SIG1",
    "pretix_random": "gate.formats.pretix:RANDOM",
}

# Trust document ``"format"`` → its parser (one pretix document serves both pretix forms).
TRUST_FORMATS: dict[str, str] = {
    "gt1": "gate.formats.gt1:TRUST",
    "pretix": "gate.formats.pretix:TRUST",
    "totp": "gate.formats.totp:TRUST",
    "eth_qr": "gate.formats.eth_qr:TRUST",
    "jws": "gate.formats.jws:TRUST",
}


@dataclass(frozen=True)
class Env:
    """What every format may consult: the time, the direction, and the trust material held.

    ``trust`` maps a trust format name (``TRUST_FORMATS``) to that module's own trust object.
    """

    now: float
    trust: dict[str, Any] = field(default_factory=dict)
    direction: str = IN
    proof_max_age: float = 30.0
    proof_max_ahead: float = 5.0
    gate_id: str = ""
    venue: str = ""


@dataclass(frozen=True)
class TapFormat:
    """How a format reads a phone's answer to this gate's NFC challenge (a nonce and the gate id).

    ``parse(answer)`` reads the answer's shape (``Unreadable`` if it is not one) into an object
    whose ``proof_key`` (or None) names this exact answer, so that a recorded answer is refused
    by sight before ``read(parsed, nonce, gate_id, env)`` verifies it against the challenge.
    """

    parse: Callable[[bytes], Any]
    read: Callable[[Any, bytes, str, Env], Claims | Denial]


@dataclass(frozen=True)
class TicketFormat:
    name: str
    recognises: Callable[[str], bool]
    read: Callable[[str, Env], Claims | Denial]
    ticket_key_of: Callable[[str], str | None]
    # ``gate revoke FORMAT:ID``: the ticket's id as staff have it (default: hex bytes).
    key_of_id: Callable[[str], str | None] | None = None
    tap: TapFormat | None = None  # phones present this format over NFC too

    def ticket_key_of_id(self, ident: str) -> str | None:
        if self.key_of_id is not None:
            return self.key_of_id(ident)
        try:
            return ticket_key(self.name, bytes.fromhex(ident))
        except ValueError:
            return None


@dataclass(frozen=True)
class TrustFormat:
    """How one format's trust documents become the object its ``read`` consults.

    ``parse(document, where)`` raises ``TrustError`` naming what is wrong (``where`` prefixes
    the field paths); ``merge`` combines the parsed parts of several documents (one per event,
    say) into the one object in ``Env.trust``, and raises ``TrustError`` on a contradiction.
    """

    name: str
    parse: Callable[[dict[str, Any], str], Any]
    merge: Callable[[list[Any]], Any]


def _resolve(ref: str) -> Any:
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


def load(name: str) -> TicketFormat:
    return _resolve(FORMATS[name])  # type: ignore[no-any-return]


def enabled(names: list[str] | tuple[str, ...]) -> list[TicketFormat]:
    """The named formats, in recognition order (not config order)."""
    wanted = set(names)
    return [load(name) for name in FORMATS if name in wanted]


def identify(text: str, formats: list[TicketFormat]) -> TicketFormat | None:
    for fmt in formats:
        if fmt.recognises(text):
            return fmt
    return None


def trust_format(name: str) -> TrustFormat:
    return _resolve(TRUST_FORMATS[name])  # type: ignore[no-any-return]
