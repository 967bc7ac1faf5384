"""From scanned text to a decision: format → signature and proof → revocation → gate policy →
ledger. Owned by the decision loop's thread; ``gate verify`` uses it too.

Any exception while deciding denies the scan with ``error``: the gate never opens on an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gate import formats as fmt
from gate import policy
from gate.decision import IN, Claims, Decision, Denial, Reason
from gate.formats import gt1
from gate.ledger import Ledger

log = logging.getLogger(__name__)

MAX_SCAN_TEXT = 8192


@dataclass(frozen=True)
class EngineSettings:
    formats: tuple[str, ...] = ("gt1",)
    gate_policy: policy.GatePolicy = policy.GatePolicy()
    proof_max_age: float = 30.0
    proof_max_ahead: float = 5.0


class DecisionEngine:
    def __init__(
        self,
        settings: EngineSettings,
        gt1_keys: dict[bytes, gt1.IssuerKey],
        ledger: Ledger,
    ) -> None:
        self.settings = settings
        self.formats = fmt.enabled(settings.formats)
        self.gt1_keys = gt1_keys
        self.ledger = ledger
        # Proofs (rotating codes, NFC answers) that opened the gate, until they age out of the
        # window: the same proof shown again is a replay (a screenshot passed back).
        self._used_proofs: dict[tuple[str, str, int], float] = {}

    def decide(self, text: str, direction: str, now: float) -> tuple[Decision, Claims | None]:
        try:
            return self._decide(text, direction, now)
        except Exception:
            log.exception("decision failed, scan denied reason=error direction=%s", direction)
            return Decision.deny(Reason.ERROR, "internal error while deciding", direction=direction), None

    def _decide(self, text: str, direction: str, now: float) -> tuple[Decision, Claims | None]:
        text = text.strip()
        if not text:
            return Decision.deny(Reason.UNREADABLE, "empty scan", direction=direction), None
        if len(text) > MAX_SCAN_TEXT or not text.isprintable():
            return Decision.deny(Reason.UNREADABLE, "scan is not printable text of sane length", direction=direction), None
        ticket_format = fmt.identify(text, self.formats)
        if ticket_format is None:
            return Decision.deny(Reason.UNKNOWN_FORMAT, "no enabled format recognises this scan", direction=direction), None
        env = fmt.Env(now, self.gt1_keys, self.settings.proof_max_age, self.settings.proof_max_ahead)
        result = ticket_format.read(text, env)
        if isinstance(result, Denial):
            return Decision.deny(result.reason, result.detail, format_name=ticket_format.name, direction=direction), None
        return self.judge(result, direction, now), result

    def judge(self, claims: Claims, direction: str, now: float) -> Decision:
        """The gate's checks on verified claims (also used for NFC answers)."""
        if self.ledger.is_revoked(claims.ticket_key):
            return Decision.deny(Reason.REVOKED, "ticket is on the revocation list", claims=claims, direction=direction)
        gate_policy = self.settings.gate_policy
        if direction == IN:
            denial = policy.check_ticket(claims, gate_policy, now)
            if denial is None and claims.proof is not None and self._proof_used(claims, now):
                denial = Denial(Reason.REPLAYED_PROOF, "this exact proof was already used")
            if denial is None:
                denial = policy.check_entry(claims, gate_policy, self.ledger.usage(claims.ticket_key))
            if denial is not None:
                return Decision.deny(denial.reason, denial.detail, claims=claims, direction=direction)
        details = {"event": claims.event}
        if claims.product:
            details["product"] = claims.product
        if claims.proof:
            details["proof"] = claims.proof.kind
        return Decision(True, Reason.OK, claims.format, claims.ticket_key, direction, details)

    # --- proof replay memory (only the loop thread calls these) ----------------------------

    def _proof_key(self, claims: Claims) -> tuple[str, str, int]:
        assert claims.proof is not None
        return (claims.ticket_key, claims.proof.kind, claims.proof.drawn_at)

    def _proof_used(self, claims: Claims, now: float) -> bool:
        for key in [k for k, until in self._used_proofs.items() if until < now]:
            del self._used_proofs[key]
        return self._proof_key(claims) in self._used_proofs

    def remember_proof(self, claims: Claims) -> None:
        if claims.proof is not None:
            until = claims.proof.drawn_at + self.settings.proof_max_age + self.settings.proof_max_ahead
            self._used_proofs[self._proof_key(claims)] = until

    def forget_proof(self, claims: Claims) -> None:
        """An admission was reverted (nobody passed): the holder may show the same code again."""
        if claims.proof is not None:
            self._used_proofs.pop(self._proof_key(claims), None)
