"""The gate's own rules applied to verified claims: revocation, event, validity window,
product, zone, proof replay, entries and re-entry, and the zone's capacity. Pure functions of
claims, settings, what the store holds about the ticket (``TicketState``) and its zone
(``ZoneState``), and time.
"""

from __future__ import annotations

from dataclasses import dataclass

from gate.decision import IN, Claims, Decision, Denial, Reason

REENTRY_POLICIES = ("deny", "after_exit", "allow")


@dataclass(frozen=True)
class GatePolicy:
    events: frozenset[str] = frozenset()  # empty: any event the keys may sign
    products: frozenset[str] = frozenset()  # empty: any product
    zone: str | None = None  # this gate's zone; tickets listing zones must include it
    reentry: str = "deny"


@dataclass(frozen=True)
class TicketState:
    """What the store holds about one ticket (``Store.ticket_state``, one read per decision)."""

    revoked: bool = False
    entries: int = 0  # admissions in, reverted ones taken out
    exits: int = 0
    proof_used: bool = False  # the proof it came with already opened a gate (and was not reverted)


@dataclass(frozen=True)
class Cut:
    """Since when this lane has not heard some lanes of its zone."""

    occupancy: int  # the zone's occupancy this ledger held when the cut began
    own: int  # this lane's own entries minus exits since the cut began


@dataclass(frozen=True)
class ZoneState:
    """The lane's zone as the ledger and the bus know it at one decision (``gate.lane.zones``).

    ``occupancy`` is entries minus exits of the zone's lanes as this ledger holds them (an
    admission counts from the moment it is recorded, a revert takes it back, exits count when
    their passage is confirmed). ``cut`` is set while the lane does not hear every other lane
    of its zone: then it may admit only its share of the room that was left when the cut began.
    """

    zone: str
    capacity: int
    occupancy: int
    lanes: int  # the zone's lanes on the roster (not retired), this one included
    cut: Cut | None = None


def zone_share(capacity: int, occupancy: int, lanes: int) -> int:
    """What one lane of ``lanes`` may admit (net) while cut off: an equal part of the room left,
    rounded down, so that all of them together never admit more than the room left."""
    return max(0, capacity - occupancy) // max(1, lanes)


def check_zone(zone: ZoneState | None) -> Denial | None:
    """May one more person enter the lane's zone?"""
    if zone is None:
        return None
    if zone.occupancy >= zone.capacity:
        return Denial(Reason.ZONE_FULL, f"zone {zone.zone} holds {zone.occupancy} of {zone.capacity}")
    if zone.cut is not None:
        share = zone_share(zone.capacity, zone.cut.occupancy, zone.lanes)
        if zone.cut.own >= share:
            return Denial(Reason.ZONE_FULL, f"zone {zone.zone}: cut off from some of its {zone.lanes} lanes, this lane's "
                                            f"share ({share} of {zone.capacity - zone.cut.occupancy} left) is used")
    return None


def judge(claims: Claims, state: TicketState, policy: GatePolicy, direction: str, now: float,
          zone: ZoneState | None = None) -> Decision:
    """The gate's checks on verified claims, for any format and any reader. ``zone``: the
    lane's zone when it has a capacity; an entry is refused ``zone_full`` last, after every
    check of the ticket itself (a used ticket is told ``already_used``, not that the zone is full)."""
    if state.revoked:
        return Decision.deny(Reason.REVOKED, "ticket is on the revocation list", claims=claims, direction=direction)
    entries: tuple[int, int] | None = None
    if direction == IN:
        denial = check_ticket(claims, policy, now)
        if denial is None and claims.proof is not None and state.proof_used:
            denial = Denial(Reason.REPLAYED_PROOF, "this exact proof was already used")
        if denial is None:
            denial = check_entry(claims, policy, state)
            entries = (state.entries, entry_limit(claims, policy))
        if denial is None:
            denial = check_zone(zone)
        if denial is not None:
            return Decision.deny(denial.reason, denial.detail, claims=claims, direction=direction)
    details = {"event": claims.event}
    if claims.product:
        details["product"] = claims.product
    if claims.proof:
        details["proof"] = claims.proof.kind
    return Decision(True, Reason.OK, claims.format, claims.ticket_key, direction, details, entries)


def check_ticket(claims: Claims, policy: GatePolicy, now: float) -> Denial | None:
    """Is this ticket good for this gate at this moment (before looking at its use)?"""
    if policy.events and claims.event not in policy.events:
        return Denial(Reason.WRONG_EVENT, f"ticket is for event {claims.event}")
    if claims.not_before is not None and now < claims.not_before:
        return Denial(Reason.NOT_YET_VALID, f"valid from {claims.not_before}")
    if claims.expires is not None and now >= claims.expires:
        return Denial(Reason.EXPIRED, f"expired at {claims.expires}")
    if policy.products and claims.product not in policy.products:
        return Denial(Reason.WRONG_PRODUCT, f"product {claims.product} not admitted here")
    if policy.zone is not None and claims.zones is not None and policy.zone not in claims.zones:
        return Denial(Reason.WRONG_ZONE, f"ticket zones {list(claims.zones)} exclude {policy.zone}")
    return None


def entry_limit(claims: Claims, policy: GatePolicy) -> int:
    """How many entries the ticket has (0 = unlimited).

    A ticket's own ``entries`` wins. Without it, ``deny`` and ``after_exit`` gates admit once and
    ``allow`` gates admit without limit.
    """
    if claims.entries is not None:
        return claims.entries
    return 0 if policy.reentry == "allow" else 1


def check_entry(claims: Claims, policy: GatePolicy, usage: TicketState) -> Denial | None:
    """May this ticket enter once more? Under ``after_exit`` each recorded exit re-arms one entry.

    A ticket system's own re-entry rule (a pretix check-in list's "entry after exit") wins over
    the gate's, as it does on that system's own scanners.
    """
    limit = entry_limit(claims, policy)
    if limit == 0:
        return None
    reentry = claims.reentry or policy.reentry
    used = usage.entries - usage.exits if reentry == "after_exit" else usage.entries
    if used >= limit:
        return Denial(Reason.ALREADY_USED, f"{usage.entries} of {limit} entries used")
    return None


TIME_DENIALS = (Reason.NOT_YET_VALID, Reason.EXPIRED, Reason.STALE_PROOF)
TIME_CODED_FORMATS = ("totp", "eth_qr")  # a code that matches no moment may be a wrong clock


def depends_on_time(decision: Decision, claims: Claims | None) -> bool:
    """Would this decision be different on a clock that is wrong? (The clock guard refuses such
    decisions while the lane's clock is not synchronized.) An admission does when the ticket has
    a validity window or came with a proof drawn at a moment (a rotating code, an NFC answer, a
    TOTP code, a signed timestamp); a refusal does when it was for time, or when the format's
    signature is over the time itself. Refusals for other facts (revoked, already used, wrong
    event) stand whatever the clock says."""
    if decision.accepted:
        return claims is not None and (claims.proof is not None or claims.not_before is not None or claims.expires is not None)
    if decision.reason in TIME_DENIALS:
        return True
    return decision.reason == Reason.BAD_SIGNATURE and decision.format in TIME_CODED_FORMATS
