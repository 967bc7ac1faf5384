"""The format registry: which ticket formats a gate reads, recognised from the content itself.

Each format is a module with pure functions; an entry here adapts it to one calling
convention, ``read(text, env) -> Claims | Denial``, where ``env`` carries the time and the
trust material. Adding a format means adding a module and one entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gate.decision import Claims, Denial
from gate.formats import gt1


@dataclass(frozen=True)
class Env:
    """What every format may consult: the time and the trust material the gate holds."""

    now: float
    gt1_keys: dict[bytes, gt1.IssuerKey]
    proof_max_age: float = 30.0
    proof_max_ahead: float = 5.0


@dataclass(frozen=True)
class TicketFormat:
    name: str
    recognises: Callable[[str], bool]
    read: Callable[[str, Env], Claims | Denial]
    ticket_key_of: Callable[[str], str | None]


def _read_gt1(text: str, env: Env) -> Claims | Denial:
    return gt1.read(text, gt1.Context(env.now, env.gt1_keys, env.proof_max_age, env.proof_max_ahead))


FORMATS: dict[str, TicketFormat] = {
    gt1.NAME: TicketFormat(gt1.NAME, gt1.recognises, _read_gt1, gt1.ticket_key_of),
}


def enabled(names: list[str] | tuple[str, ...]) -> list[TicketFormat]:
    return [FORMATS[name] for name in names]


def identify(text: str, formats: list[TicketFormat]) -> TicketFormat | None:
    for fmt in formats:
        if fmt.recognises(text):
            return fmt
    return None
