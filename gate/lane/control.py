"""What a running lane can be told to do, in one place: set its mode, let one person through,
reload its trust. Staff reach it through signed commands on the bus (checked here by the
``CommandGuard``: admin key, venue, gate, age, nonce) and through SIGHUP; a commanded mode is
kept in the store and outlives restarts.

Everything here runs on the decision loop's thread (the venue sync calls ``on_command`` from
its pump; SIGHUP goes through ``DecisionLoop.call``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from gate.clock import Clock
from gate.decision import MODES
from gate.errors import Refused, SignedError, TrustError
from gate.lane.engine import DecisionEngine, TrustSources
from gate.lane.loop import DecisionLoop
from gate.store.state import COMMANDED_MODE, State
from gate.trust.commands import CommandGuard, describe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrustReload:
    """The config file's trust, read again: what a reload takes in."""

    sources: TrustSources
    admin_key: bytes | None
    command_max_age: float
    restart_needed: tuple[str, ...] = ()  # config sections that changed and take effect at a restart


class LaneControl:
    def __init__(
        self,
        loop: DecisionLoop,
        engine: DecisionEngine,
        state: State,
        clock: Clock,
        *,
        guard: CommandGuard | None = None,
        read_trust: Callable[[], TrustReload] | None = None,
    ) -> None:
        self.loop = loop
        self.engine = engine
        self.state = state
        self.clock = clock
        self.guard = guard
        self.read_trust = read_trust  # raises Refused when the config cannot be read
        self.on_trust_reloaded: list[Callable[[TrustReload], None]] = []  # the bundle worker
        self.end_recovery: Callable[[str], str] | None = None  # the venue sync's, when the lane has one

    def start_mode(self, configured: str) -> str:
        """The config's mode, unless a signed command set another one (it outlives restarts)."""
        commanded = self.state.get(COMMANDED_MODE, -1)
        if 0 <= commanded < len(MODES) and MODES[commanded] != configured:
            log.warning("mode=%s as a signed command set it (config says %s); a set_mode command changes it",
                        MODES[commanded], configured)
            return MODES[commanded]
        return configured

    def set_mode(self, mode: str) -> str:
        if mode not in MODES:
            raise Refused(f"unknown mode {mode!r}")
        self.loop.set_mode(mode)
        self.state.set(COMMANDED_MODE, MODES.index(mode))
        return f"mode is now {mode}"

    def carry_out(self, action: str, *, mode: str | None = None, direction: str = "in", note: str = "") -> str:
        """A verified command; what was done, or ``Refused``."""
        if action == "set_mode" and mode is not None:
            return self.set_mode(mode)
        if action == "open_once":
            return self.loop.open_once(direction, note)
        if action == "reload":
            return self.reload()
        if action == "end_recovery":
            if self.end_recovery is None:
                raise Refused("this lane is not on a venue bus")
            return self.end_recovery(f"a signed command ({note})")
        raise Refused(f"unknown command {action!r}")

    def reload(self) -> str:
        """Read the config file's trust again (files, GT1 issuers, admin key) and the stored
        documents. A trust that does not build is refused and the previous one kept."""
        if self.read_trust is None:
            raise Refused("this lane cannot reload")
        new = self.read_trust()
        previous = self.engine.sources
        self.engine.sources = new.sources
        try:
            self.engine.refresh_trust(force=True)
        except TrustError as exc:
            self.engine.sources = previous
            raise Refused(f"trust not reloaded, previous kept: {exc}") from None
        if self.guard is not None:
            self.guard.admin_key, self.guard.max_age = new.admin_key, new.command_max_age
        for listener in self.on_trust_reloaded:
            listener(new)
        log.info("reloaded trust restart_needed_for=%s", ",".join(new.restart_needed) or "-")
        return "trust reloaded" + (f"; restart needed for: {', '.join(new.restart_needed)}" if new.restart_needed else "")

    def on_command(self, payload: bytes) -> dict[str, Any]:
        """A signed command from the bus: check it, carry it out; the fields of the reply."""
        if self.guard is None:
            return {"nonce": None, "ok": False, "text": "this lane takes no commands", "kind": "refused"}
        try:
            settings = self.engine.settings
            clock_trusted = self.engine.clock_synchronized or settings.unsynchronized_clock == "admit"
            command = self.guard.check(payload, self.clock.now(), clock_trusted)
        except SignedError as exc:
            log.warning("command refused kind=%s error=%r", exc.kind, str(exc))
            return {"nonce": exc.nonce, "ok": False, "text": str(exc), "kind": exc.kind}
        try:
            done = self.carry_out(command.action, mode=command.mode, direction=command.direction,
                                  note=f"nonce {command.nonce[:16]}")
        except Refused as exc:
            log.warning("command not carried out command=%s error=%r", command.action, str(exc))
            return {"nonce": command.nonce, "ok": False, "text": str(exc), "kind": "refused", **describe(command)}
        log.info("command carried out command=%s result=%r", command.action, done)
        return {"nonce": command.nonce, "ok": True, "text": done, **describe(command)}
