"""Signed commands from the venue admin (``gates/<gate>/cmd``): set mode, open once, reload.

A command is carried out only when the pinned admin key signed it, for this venue and this
gate, within ``[trust] command_max_age`` seconds of the gate's clock (either way), and its
nonce was never seen before. Nonces are kept in the database, so a command replayed after a
restart is refused too; they are forgotten once any replay of them would be stale anyway.

The gate's clock judges a command's age, so a clock that is wrong lets old commands look new:
while the clock is not synchronized (and the lane's guard refuses then, ``[engine]
unsynchronized``), commands are refused; and the moment before which nonces were forgotten
only moves forward (kept in the database), so a command issued before it is refused even when
the clock went back and it looks fresh.
"""

from __future__ import annotations

import logging
from typing import Any

from gate.errors import SignedError
from gate.store.state import State
from gate.trust import signed
from gate.trust.signed import Command

log = logging.getLogger(__name__)

FORGOTTEN_BEFORE = "command_nonces_forgotten_before"  # state: unix seconds, only ever moves forward


class CommandGuard:
    def __init__(self, state: State, gate_id: str, venue: str, admin_key: bytes | None, max_age: float) -> None:
        self.state = state
        self.gate_id = gate_id
        self.venue = venue
        self.admin_key = admin_key
        self.max_age = max_age

    def check(self, payload: bytes, now: float, clock_trusted: bool = True) -> Command:
        """The command to carry out; ``SignedError`` says why not. Remembers its nonce.
        ``clock_trusted``: False while the clock is not synchronized and the lane's guard refuses."""
        message = signed.read(payload, self.admin_key, self.venue)
        if not isinstance(message, Command):
            raise SignedError("wrong_type", "a bundle or delta sent as a command")
        if message.gate != self.gate_id:
            raise SignedError("wrong_gate", f"command is for gate {message.gate!r}, this is {self.gate_id!r}", message.nonce)
        if not clock_trusted:
            raise SignedError("clock_unsynced", "this gate's clock is not synchronized: a command's age cannot be judged",
                              message.nonce)
        forgotten_before = self.state.get(FORGOTTEN_BEFORE)
        if message.issued_at < forgotten_before:
            raise SignedError("stale", "issued before the commands this gate has forgotten (did its clock go back?)",
                              message.nonce)
        age = now - message.issued_at
        if abs(age) > self.max_age:
            when = f"{age:.0f} s ago" if age > 0 else f"{-age:.0f} s in the future"
            raise SignedError("stale", f"issued {when} by this gate's clock (allowed: {self.max_age:.0f} s)", message.nonce)
        forget_before = max(forgotten_before, int(now - 2 * self.max_age))
        if not self.state.remember_command(message.nonce, message.issued_at, now, forget_before=forget_before):
            raise SignedError("replayed", "this command (its nonce) was already received", message.nonce)
        self.state.set(FORGOTTEN_BEFORE, forget_before)
        return message


def describe(command: Command) -> dict[str, Any]:
    """What a reply or a log line says about a command (no secrets in it)."""
    out: dict[str, Any] = {"command": command.action}
    if command.mode is not None:
        out["mode"] = command.mode
    if command.action == "open_once":
        out["direction"] = command.direction
    return out
