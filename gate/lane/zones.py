"""The lane's zone capacity: how many people the lane's zone holds against its capacity, and
whether the lane hears every other lane of its zone (docs/architecture.md, "Zone capacity").

The capacity comes from the admin's signed bundle (``zones``), the lane's zone and the zone's
other lanes from its roster; the occupancy is entries minus exits of the zone's gates as this
ledger holds them (``Ledger.occupancy``: a row per gate, kept by the database as records are
written, so a decision costs one small read whatever the ledger's size).

A lane that does not hear some lane of its zone (its own broker connection is down, or that
lane's status says offline: a stop, or its Last Will) is **cut off**: from then on it admits at
most its share of the room that was left when the cut began, ``(capacity − occupancy) // lanes``
net (entries minus exits at this lane), so that all the zone's lanes together, each on its own
side of any cut, never admit more than the room that was left. The cut ends when every lane of
the zone has been heard again for ``SETTLE`` seconds: time for their records of the cut to come
in (their outboxes, the catch-up) before the lane trusts its count again.

The rule itself is pure (``gate.policy.check_zone``); this module only reads the store and asks
the bus whom it hears. Everything here runs on the decision loop's thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from gate.policy import Cut, ZoneState, zone_share
from gate.store import Store
from gate.trust.roster import Roster

log = logging.getLogger(__name__)

SETTLE = 5.0  # seconds every lane of the zone must be heard before a cut is over
CHECK_INTERVAL = 1.0  # seconds between looks for a new bundle (roster, capacities)

# The lanes heard now (the peers whose status says online), or None when this lane is not
# connected to the venue bus (or has none).
Heard = Callable[[], Collection[str] | None]


@dataclass(frozen=True)
class CutMark:
    """What the lane knew when the cut began."""

    occupancy: int  # the zone's occupancy
    own: int  # this lane's own entries minus exits
    began: float  # monotonic
    missing: tuple[str, ...]  # the lanes not heard


class ZoneWatch:
    def __init__(self, store: Store, gate_id: str, config_zone: str | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """``config_zone``: the lane's zone when the roster does not name this gate."""
        self.store = store
        self.monotonic = monotonic
        self.gate_id = gate_id
        self.config_zone = config_zone
        self.heard: Heard = lambda: None  # the daemon wires the venue sync here
        self.zone: str | None = None
        self.capacity: int | None = None  # None: no capacity for this lane's zone, no rule
        self.members: frozenset[str] = frozenset()  # gates whose records count (retired ones too)
        self.lanes: frozenset[str] = frozenset()  # lanes that share the capacity (this one included)
        self.cut: CutMark | None = None
        self._whole_since: float | None = None
        self._bundle: str | None = None
        self._checked = float("-inf")
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """Take in a new bundle's roster and capacities (looked for at most once a second)."""
        now = self.monotonic()
        if not force and now - self._checked < CHECK_INTERVAL:
            return
        self._checked = now
        bundle = self.store.trust.held().bundle_sha256
        if bundle == self._bundle and not force:
            return
        self._bundle = bundle
        roster = Roster(self.store.trust.roster())
        zone = roster.zone_of(self.gate_id) or self.config_zone
        capacity = self.store.trust.zones().get(zone) if zone else None
        members = (roster.zone_members(zone) | {self.gate_id}) if zone else frozenset()
        lanes = (roster.zone_lanes(zone) | {self.gate_id}) if zone else frozenset()
        if (zone, capacity, lanes) != (self.zone, self.capacity, self.lanes):
            log.info("zone capacity zone=%s capacity=%s lanes=%d", zone or "-", capacity if capacity is not None else "none",
                     len(lanes))
        if capacity is None or lanes != self.lanes:
            self.cut, self._whole_since = None, None  # the shares were of another zone: counted again
        self.zone, self.capacity, self.members, self.lanes = zone, capacity, members, lanes

    def tick(self) -> None:
        """After every turn of the loop: notice a cut, or its end, when it happens."""
        self.refresh()
        if self.capacity is not None:
            self._follow(self.monotonic())

    def state(self) -> ZoneState | None:
        """The zone as one decision needs it; None when the lane's zone has no capacity."""
        self.refresh()
        if self.capacity is None or self.zone is None:
            return None
        occupancy, own = self._count()
        self._follow(self.monotonic(), (occupancy, own))
        cut = Cut(self.cut.occupancy, own - self.cut.own) if self.cut is not None else None
        return ZoneState(self.zone, self.capacity, occupancy, len(self.lanes), cut)

    def status(self) -> dict[str, object] | None:
        """For the status and the tests: the zone, its capacity and occupancy, and the cut."""
        if self.capacity is None or self.zone is None:
            return None
        occupancy, own = self._count()
        out: dict[str, object] = {"zone": self.zone, "capacity": self.capacity, "occupancy": occupancy, "lanes": len(self.lanes)}
        if self.cut is not None:
            share = zone_share(self.capacity, self.cut.occupancy, len(self.lanes))
            out["cut"] = {"missing": list(self.cut.missing), "share": share, "used": own - self.cut.own,
                          "since": round(self.monotonic() - self.cut.began, 1)}
        return out

    def _count(self) -> tuple[int, int]:
        nets = self.store.ledger.occupancy(self.members)
        return sum(nets.values()), nets.get(self.gate_id, 0)

    def _follow(self, now: float, counts: tuple[int, int] | None = None) -> None:
        peers = self.lanes - {self.gate_id}
        heard = self.heard() if peers else ()
        missing = tuple(sorted(peers)) if heard is None else tuple(sorted(peers.difference(heard)))
        if missing:
            self._whole_since = None
            if self.cut is None:
                occupancy, own = counts if counts is not None else self._count()
                self.cut = CutMark(occupancy, own, now, missing)
                assert self.capacity is not None
                log.warning("zone cut off zone=%s missing=%s occupancy=%d capacity=%d share=%d: this lane admits at most "
                            "its share of the room left until it hears every lane of the zone again", self.zone,
                            ",".join(missing), occupancy, self.capacity, zone_share(self.capacity, occupancy, len(self.lanes)))
            return
        if self.cut is None:
            return
        if self._whole_since is None:
            self._whole_since = now
        elif now - self._whole_since >= SETTLE:
            log.info("zone heard whole again zone=%s after=%.1f s", self.zone, now - self.cut.began)
            self.cut, self._whole_since = None, None
