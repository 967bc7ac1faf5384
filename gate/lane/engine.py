"""From scanned text to a decision: format → signature and proof → one read of what the store
holds about the ticket (and its zone's occupancy) → gate policy. Owned by the decision loop's thread; ``gate verify`` uses it
too. It records nothing: the loop writes the admission.

Any exception while deciding denies the scan with ``error``: the gate never opens on an error.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from gate import formats as fmt
from gate import policy, trust
from gate.decision import IN, Claims, Decision, Denial, Reason
from gate.lane.guesses import WrongCodeLimit
from gate.lane.zones import ZoneWatch
from gate.store import Store

log = logging.getLogger(__name__)

MAX_SCAN_TEXT = 8192
GUESSABLE = ("totp",)  # formats whose codes are short enough to guess: wrong ones are limited per ticket


@dataclass(frozen=True)
class EngineSettings:
    formats: tuple[str, ...] = ("gt1",)
    gate_policy: policy.GatePolicy = policy.GatePolicy()
    proof_max_age: float = 30.0
    proof_max_ahead: float = 5.0
    gate_id: str = ""
    venue: str = ""
    unsynchronized_clock: str = "refuse"  # refuse | admit: time-dependent decisions while NTP is not synced


TRUST_CHECK_INTERVAL = 1.0  # seconds between looks for newly imported trust documents


@dataclass
class TrustSources:
    """Where the engine's trust comes from: config (fixed) and the database (may change)."""

    gt1_keys: dict[bytes, Any] = field(default_factory=dict)
    documents: tuple[trust.TrustDocument, ...] = ()


class DecisionEngine:
    def __init__(self, settings: EngineSettings, sources: TrustSources, store: Store) -> None:
        self.settings = settings
        self.formats = fmt.enabled(settings.formats)
        self.sources = sources
        self.store = store
        self.trust: dict[str, Any] = {}
        self._trust_generation: tuple[int, str] | None = None
        self._trust_checked = float("-inf")
        self.clock_synchronized = True  # the decision loop keeps this up to date (gate.clock.ClockSync)
        self.wrong_codes = WrongCodeLimit()
        self.zones = ZoneWatch(store, settings.gate_id, settings.gate_policy.zone)  # the bus tells it whom it hears (daemon)
        self.refresh_trust(force=True)

    def refresh_trust(self, force: bool = False) -> None:
        """Take in documents imported into the database since the last look (``gate keys
        import`` while the daemon runs). A document that no longer parses is logged and the
        trust in use is kept: a bad import must not leave a lane without keys."""
        now = time.monotonic()
        if not force and now - self._trust_checked < TRUST_CHECK_INTERVAL:
            return
        self._trust_checked = now
        try:
            generation = self.store.trust.generation()
            if generation == self._trust_generation and not force:
                return
            self._trust_generation = generation  # a bad document is reported once, not every second
            stored = trust.parse_stored(self.store.trust.documents())
            self.trust = trust.build([*self.sources.documents, *stored], self.sources.gt1_keys)
        except Exception as exc:  # the lane keeps deciding with the trust it has
            log.error("trust documents not taken in, previous trust kept error=%r", str(exc))
            if force:
                raise
            return
        log.info("trust loaded %s", " ".join(f"{k}=[{v}]" for k, v in trust.summary(self.trust).items()))

    def decide(self, text: str, direction: str, now: float) -> tuple[Decision, Claims | None]:
        try:
            return self._guard_clock(*self._decide(text, direction, now))
        except Exception:
            log.exception("decision failed, scan denied reason=error direction=%s", direction)
            return Decision.deny(Reason.ERROR, "internal error while deciding", direction=direction), None

    def _guard_clock(self, decision: Decision, claims: Claims | None) -> tuple[Decision, Claims | None]:
        """While the clock is not synchronized, a decision that depends on the time is refused
        with ``clock_unsynced`` (or, configured to admit, stands and says so)."""
        if self.clock_synchronized or not policy.depends_on_time(decision, claims):
            return decision, claims
        if self.settings.unsynchronized_clock == "admit":
            return decision.with_details(clock="unsynchronized"), claims
        return Decision.deny(Reason.CLOCK_UNSYNCED, f"this lane's clock is not synchronized (would have been {decision.reason})",
                             claims=claims, format_name=decision.format, direction=decision.direction), None

    def _decide(self, text: str, direction: str, now: float) -> tuple[Decision, Claims | None]:
        text = text.strip()
        if not text:
            return Decision.deny(Reason.UNREADABLE, "empty scan", direction=direction), None
        if len(text) > MAX_SCAN_TEXT or not text.isprintable():
            return Decision.deny(Reason.UNREADABLE, "scan is not printable text of sane length", direction=direction), None
        ticket_format = fmt.identify(text, self.formats)
        if ticket_format is None:
            return Decision.deny(Reason.UNKNOWN_FORMAT, "no enabled format recognises this scan", direction=direction), None
        name = ticket_format.name
        guessable = ticket_format.ticket_key_of(text) if name in GUESSABLE else None
        if guessable is not None and (wait := self.wrong_codes.locked(guessable, now)):
            return Decision.deny(Reason.BAD_SIGNATURE, f"{name}: too many wrong codes for this ticket: refused for {wait:.0f} s",
                                 format_name=name, direction=direction), None
        result = ticket_format.read(text, self._env(now, direction))
        if guessable is not None:
            if isinstance(result, Denial) and result.reason == Reason.BAD_SIGNATURE:
                if self.wrong_codes.wrong(guessable, now):
                    log.warning("wrong codes: ticket locked format=%s ticket=%s seconds=%.0f", name, guessable[:16],
                                self.wrong_codes.lockout)
            elif not isinstance(result, Denial):
                self.wrong_codes.right(guessable)
        return self._verdict(result, name, direction, now)

    def _env(self, now: float, direction: str) -> fmt.Env:
        settings = self.settings
        return fmt.Env(now, self.trust, direction, settings.proof_max_age, settings.proof_max_ahead, settings.gate_id,
                       settings.venue)

    def _verdict(self, result: Claims | Denial, format_name: str, direction: str, now: float) -> tuple[Decision, Claims | None]:
        if isinstance(result, Denial):
            return Decision.deny(result.reason, result.detail, format_name=format_name, direction=direction), None
        return self.judge(result, direction, now), result

    def decide_tap(self, answer: bytes, nonce: bytes, gate_id: str, direction: str, now: float) -> tuple[Decision, Claims | None]:
        """A phone's answer to this gate's NFC challenge (``nonce`` and ``gate_id`` as sent)."""
        try:
            return self._guard_clock(*self._decide_tap(answer, nonce, gate_id, direction, now))
        except Exception:
            log.exception("decision failed, tap denied reason=error direction=%s", direction)
            return Decision.deny(Reason.ERROR, "internal error while deciding", direction=direction), None

    def _decide_tap(self, answer: bytes, nonce: bytes, gate_id: str, direction: str, now: float) -> tuple[Decision, Claims | None]:
        ticket_format = next((f for f in self.formats if f.tap is not None), None)
        if ticket_format is None or ticket_format.tap is None:
            return Decision.deny(Reason.UNKNOWN_FORMAT, "no enabled format reads NFC answers (GT1 does)", direction=direction), None
        name = ticket_format.name
        try:
            parsed = ticket_format.tap.parse(answer)
        except fmt.Unreadable as exc:
            return Decision.deny(Reason.UNREADABLE, f"{name}: {exc}", format_name=name, direction=direction), None
        if parsed.proof_key is not None and self.store.ledger.proof_used(parsed.proof_key):
            # A recorded answer: its signature is over another nonce, but it is known by sight.
            return Decision.deny(Reason.REPLAYED_PROOF, "this exact NFC answer was already used", format_name=name, direction=direction), None
        result = ticket_format.tap.read(parsed, nonce, gate_id, self._env(now, direction))
        return self._verdict(result, name, direction, now)

    def judge(self, claims: Claims, direction: str, now: float) -> Decision:
        """The gate's checks on verified claims: one read of the store (and, for an entry into a
        zone with a capacity, one of the zone's occupancy), then pure policy."""
        state = self.store.ticket_state(claims.ticket_key, claims.proof.key if claims.proof else None)
        zone = self.zones.state() if direction == IN else None
        return policy.judge(claims, state, self.settings.gate_policy, direction, now, zone)
