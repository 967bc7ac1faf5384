"""Zone capacity without a bus: the pure rule (``policy.check_zone`` in ``judge``), the zone's
occupancy as the database keeps it for every record written (a lane's own, a peer's merged, a
ledger migrated from before), the dashboard counting the same records to the same number, and
``ZoneWatch`` noticing a cut and its end on a manual clock."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from gate.dashboard.venue import Venue
from gate.decision import IN, OUT, Claims, Reason, ticket_key
from gate.lane.zones import SETTLE, ZoneWatch
from gate.policy import (
    Cut,
    GatePolicy,
    TicketState,
    ZoneState,
    check_zone,
    judge,
    zone_share,
)
from gate.store import HeldMessage, RosterRow, Store
from gate.store.ledger import ADMISSION, FORCED, FREE_EXIT, PASSAGE, REVERT, Record

ME, PEER, OTHER = "lane-1", "lane-2", "lane-9"
AT = 1_780_000_000.0
CLAIMS = Claims("gt1", ticket_key("gt1", b"t"), event="e")


def zone(occupancy: int, capacity: int = 10, lanes: int = 2, cut: Cut | None = None) -> ZoneState:
    return ZoneState("north", capacity, occupancy, lanes, cut)


# --- the pure rule --------------------------------------------------------------------------------


def test_an_entry_is_refused_zone_full_once_the_zone_holds_its_capacity() -> None:
    assert check_zone(zone(9)) is None
    full = check_zone(zone(10))
    assert full is not None and full.reason == Reason.ZONE_FULL and "10 of 10" in full.detail
    assert check_zone(zone(12)) is not None  # more than full (people let in by staff, forced passages)
    assert check_zone(None) is None  # no capacity for this lane's zone: no rule


def test_a_cut_off_lane_admits_only_its_share_of_the_room_left_when_the_cut_began() -> None:
    # 10 places, 4 taken when the cut began, 2 lanes: 3 each; the zone's own count does not help
    assert check_zone(zone(6, cut=Cut(occupancy=4, own=2))) is None
    denial = check_zone(zone(7, cut=Cut(occupancy=4, own=3)))
    assert denial is not None and denial.reason == Reason.ZONE_FULL and "share (3 of 6 left)" in denial.detail
    assert check_zone(zone(6, cut=Cut(occupancy=4, own=2))) is None
    assert check_zone(zone(5, cut=Cut(occupancy=4, own=1))) is None
    # exits at this lane during the cut give its share back (net), never another lane's
    assert check_zone(zone(5, cut=Cut(occupancy=4, own=2))) is None


@pytest.mark.parametrize("capacity", [1, 2, 7, 10, 101])
@pytest.mark.parametrize("lanes", [1, 2, 3, 4, 40])
def test_all_shares_together_never_exceed_the_room_left(capacity: int, lanes: int) -> None:
    for occupancy in range(capacity + 3):
        share = zone_share(capacity, occupancy, lanes)
        assert share >= 0
        assert occupancy + lanes * share <= max(capacity, occupancy)  # the worst case: every lane uses its share
        assert share == max(0, capacity - occupancy) // lanes  # and no place more is held back than the rounding


def test_judge_says_zone_full_last_and_never_for_an_exit() -> None:
    policy = GatePolicy()
    full = zone(10)
    assert judge(CLAIMS, TicketState(), policy, IN, AT, full).reason == Reason.ZONE_FULL
    assert judge(CLAIMS, TicketState(entries=1), policy, IN, AT, full).reason == Reason.ALREADY_USED
    assert judge(CLAIMS, TicketState(revoked=True), policy, IN, AT, full).reason == Reason.REVOKED
    out = judge(CLAIMS, TicketState(entries=1), policy, OUT, AT, full)
    assert out.accepted
    assert judge(CLAIMS, TicketState(), policy, IN, AT, zone(9)).accepted


# --- the occupancy the database keeps -----------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "gate.db", ME)
    yield store
    store.close()


def net(store: Store, *gates: str) -> int:
    return sum(store.ledger.occupancy(gates or (ME, PEER)).values())


def test_entries_count_from_the_admission_a_revert_takes_one_back_and_exits_count_from_their_passage(store: Store) -> None:
    ledger = store.ledger
    first = ledger.append(ADMISSION, AT, ticket_key="k1", direction=IN)
    assert net(store) == 1  # on its way in: counted before the relay moves
    ledger.append(PASSAGE, AT, ticket_key="k1", direction=IN, ref=first.key)
    assert net(store) == 1
    second = ledger.append(ADMISSION, AT, ticket_key="k2", direction=IN)
    ledger.append(REVERT, AT, ticket_key="k2", direction=IN, ref=second.key)
    assert net(store) == 1  # nobody passed
    leaving = ledger.append(ADMISSION, AT, ticket_key="k1", direction=OUT)
    assert net(store) == 1  # an exit counts when it is confirmed
    ledger.append(PASSAGE, AT, ticket_key="k1", direction=OUT, ref=leaving.key)
    assert net(store) == 0
    exit_back = ledger.append(ADMISSION, AT, ticket_key="k3", direction=OUT)
    ledger.append(REVERT, AT, ticket_key="k3", direction=OUT, ref=exit_back.key)
    assert net(store) == 0  # a reverted exit changes nothing
    ledger.append(FORCED, AT, direction=IN)
    ledger.append(FREE_EXIT, AT, direction=OUT)
    ledger.append(FREE_EXIT, AT, direction=OUT)
    ledger.append(FORCED, AT, direction=OUT)
    assert store.ledger.occupancy([ME]) == {ME: -2}  # more left here than came in here: other lanes let them in


def peer(seq: int, kind: str, direction: str = IN, ref_seq: int | None = None, origin: str = PEER) -> Record:
    return Record(origin, seq, kind, AT + seq, ticket_key=f"p{seq}" if kind == ADMISSION else None, direction=direction,
                  ref_origin=origin if ref_seq else None, ref_seq=ref_seq, epoch="e1", ref_epoch="e1" if ref_seq else None)


def test_peers_records_count_as_they_are_merged_each_under_its_gate(store: Store) -> None:
    store.ledger.append(ADMISSION, AT, ticket_key="mine", direction=IN)
    result = store.ledger.merge([peer(1, ADMISSION), peer(2, ADMISSION), peer(3, REVERT, ref_seq=2), peer(4, ADMISSION),
                                 peer(5, PASSAGE, ref_seq=4), peer(1, ADMISSION, origin=OTHER)], AT)
    assert len(result.added) == 6
    assert store.ledger.occupancy([ME, PEER, OTHER]) == {ME: 1, PEER: 2, OTHER: 1}
    again = store.ledger.merge([peer(1, ADMISSION), peer(4, ADMISSION)], AT)  # duplicates: counted once
    assert again.duplicates == 2 and store.ledger.occupancy([PEER]) == {PEER: 2}
    assert store.ledger.occupancy([]) == {} and store.ledger.occupancy(["nobody"]) == {}


def test_a_ledger_from_before_capacities_is_counted_once_when_it_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = Store(path, ME)
    first = store.ledger.append(ADMISSION, AT, ticket_key="a", direction=IN)
    store.ledger.append(PASSAGE, AT, ticket_key="a", direction=IN, ref=first.key)
    second = store.ledger.append(ADMISSION, AT, ticket_key="b", direction=IN)
    store.ledger.append(REVERT, AT, ticket_key="b", direction=IN, ref=second.key)
    store.ledger.append(ADMISSION, AT, ticket_key="c", direction=IN)
    store.ledger.merge([peer(1, ADMISSION), peer(2, FREE_EXIT, OUT)], AT)
    store.close()
    conn = sqlite3.connect(path)  # as schema 6 left it: no zones, no counts
    conn.executescript("DROP TRIGGER occupancy_on_record; DROP TABLE occupancy; DROP TABLE zones; PRAGMA user_version = 6;")
    conn.close()
    store = Store(path, ME)
    try:
        assert store.ledger.occupancy([ME, PEER]) == {ME: 2, PEER: 0}
        store.ledger.append(ADMISSION, AT, ticket_key="d", direction=IN)
        assert store.ledger.occupancy([ME]) == {ME: 3}
    finally:
        store.close()


def test_the_dashboard_counts_the_same_records_to_the_same_occupancy_against_the_bundle_s_capacity(store: Store) -> None:
    """Once every admission is settled (passed or reverted) the lanes' count and the
    dashboard's agree: they count the same records (gate.dashboard.venue), against the capacity
    the lanes hold to (the bundle's)."""
    ledger = store.ledger
    for n in range(5):
        admitted = ledger.append(ADMISSION, AT, ticket_key=f"k{n}", direction=IN)
        ledger.append(PASSAGE if n != 2 else REVERT, AT, ticket_key=f"k{n}", direction=IN, ref=admitted.key)
    leaving = ledger.append(ADMISSION, AT, ticket_key="k0", direction=OUT)
    ledger.append(PASSAGE, AT, ticket_key="k0", direction=OUT, ref=leaving.key)
    ledger.append(FORCED, AT, direction=IN)
    ledger.merge([peer(1, ADMISSION), peer(2, PASSAGE, ref_seq=1), peer(3, FREE_EXIT, OUT), peer(4, FREE_EXIT, OUT)], AT)
    dashboard = Venue("v", capacity={"north": 100, "south": 7})  # its own config's, for zones the bundle leaves out
    dashboard.on_roster(1, [RosterRow(gate, b"\0" * 32, "north", (IN, OUT), False) for gate in (ME, PEER)], {"north": 3})
    dashboard.on_records(ledger.records())
    shown = {z["zone"]: (z["occupancy"], z["capacity"], z["alarm"]) for z in dashboard.snapshot(AT)["zones"]}
    assert net(store) == 3 and shown == {"north": (3, 3, True), "south": (0, 7, False)}


# --- ZoneWatch: the lane's zone, and whom it hears -----------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def install(store: Store, capacity: int | None, version: int = 1, lanes: tuple[str, ...] = (ME, PEER)) -> None:
    roster = [RosterRow(gate, b"\0" * 32, "north", (IN, OUT), False) for gate in lanes]
    roster.append(RosterRow(OTHER, b"\0" * 32, "south", (IN, OUT), False))
    store.install_bundle(b"", [], HeldMessage(version, 0, AT, f"sha-{version}", 0, 0, 0), AT, lambda _: None,
                         roster=roster, zones={"north": capacity} if capacity else {})


def test_a_lane_that_stops_hearing_a_lane_of_its_zone_keeps_to_its_share_until_it_has_heard_it_again_for_a_while(
    store: Store,
) -> None:
    install(store, 10)
    clock, heard = Clock(), {"now": set()}
    watch = ZoneWatch(store, ME, monotonic=clock)

    def hears(peers: Collection[str] | None) -> None:
        heard["now"] = peers
        watch.tick()

    watch.heard = lambda: heard["now"]
    hears({PEER, OTHER})
    assert watch.cut is None and watch.state() == ZoneState("north", 10, 0, 2)
    for n in range(4):
        store.ledger.append(ADMISSION, AT, ticket_key=f"k{n}", direction=IN)
    hears({OTHER})  # PEER's Last Will: it is not heard
    assert watch.cut is not None and watch.cut.missing == (PEER,)
    for n in range(3):
        assert check_zone(watch.state()) is None
        store.ledger.append(ADMISSION, AT, ticket_key=f"c{n}", direction=IN)
    state = watch.state()
    assert state is not None and state.cut == Cut(4, 3) and check_zone(state) is not None  # (10 − 4) // 2 = 3 used
    hears(None)  # and now the broker too
    hears({PEER})
    clock.now += SETTLE - 0.1
    hears({PEER})
    assert watch.cut is not None, "heard again, but not for long enough to have its records"
    clock.now += 0.2
    hears({PEER})
    assert watch.cut is None and check_zone(watch.state()) is None  # 7 of 10 now
    assert watch.status() == {"zone": "north", "capacity": 10, "occupancy": 7, "lanes": 2}


def test_a_lane_alone_in_its_zone_is_never_cut_off_and_a_zone_without_capacity_has_no_rule(store: Store) -> None:
    install(store, 2, lanes=(ME,))
    watch = ZoneWatch(store, ME, monotonic=Clock())  # heard: None (no bus)
    watch.tick()
    assert watch.cut is None and watch.state() == ZoneState("north", 2, 0, 1)
    install(store, None, version=2)
    watch.refresh(force=True)
    assert watch.state() is None and watch.status() is None


def test_a_lane_without_the_bus_in_a_zone_of_several_lanes_is_cut_off_from_the_start(store: Store) -> None:
    store.ledger.append(ADMISSION, AT, ticket_key="k", direction=IN)
    install(store, 5)
    watch = ZoneWatch(store, ME, monotonic=Clock())
    state = watch.state()
    assert state is not None and state.cut == Cut(1, 0)  # (5 − 1) // 2 = 2 for this lane
    assert watch.status()["cut"] == {"missing": [PEER], "share": 2, "used": 0, "since": 0.0}  # type: ignore[index]

