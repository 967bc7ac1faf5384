"""Zone capacity held offline, with real lanes on a real mosquitto: the admin's bundle gives the
zone a capacity, a lane refuses `zone_full` once the zone's lanes together let that many in
(exits count back), and two lanes cut off from each other admit only their shares of the room
left, so the zone never holds more than its capacity; their counts agree again once they hear
each other (docs/architecture.md, "Zone capacity")."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hwsim.broker import Mosquitto, Watcher, mosquitto_binary
from nacl.signing import SigningKey

from gate.lane.zones import SETTLE
from gate.trust import signed
from tests.support.lanes import Lane, Tickets, wait_until
from tests.support.venue import ADMIN, KEYS, ROOT, VENUE, gate_config, holds_roster

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed (scripts/test installs it)")

ZONE = "north"
GATES = ("zone-a", "zone-b")


def publish_zones(broker: Mosquitto, capacity: int, version: int = 1, lanes: tuple[str, ...] = GATES) -> None:
    """The admin's signed bundle: the lanes in zone north, north holding ``capacity`` people."""
    roster = [signed.roster_entry(gate, bytes(KEYS.add(gate).verify_key), zone=ZONE) for gate in lanes]
    payload = signed.bundle_payload(VENUE, version, time.time(), [], b"", roster, {ZONE: capacity})
    watcher = Watcher(broker.port, [])
    try:
        watcher.publish(f"{ROOT}bundle", signed.sign(payload, ADMIN), retain=True)
    finally:
        watcher.close()


def zone(lane: Lane) -> dict[str, Any]:
    """What the lane knows of its zone (read on its loop, as a decision would)."""
    return lane.daemon.loop.call(lane.daemon.engine.zones.status) or {}


def whole(lane: Lane) -> bool:
    """Connected, holding the zone's capacity, and hearing every lane of the zone."""
    return lane.daemon.sync.connected and bool(zone(lane).get("capacity")) and "cut" not in zone(lane)


@pytest.fixture
def venue(tmp_path: Path, issuer: SigningKey, broker: Mosquitto, start_lane: Callable[..., Lane]) -> Callable[[int], tuple[Lane, Lane]]:
    def start(capacity: int) -> tuple[Lane, Lane]:
        publish_zones(broker, capacity)
        lanes = tuple(start_lane(gate_config(tmp_path, issuer, gate, broker, status_interval=0.5)) for gate in GATES)
        for lane in lanes:
            wait_until(lambda lane=lane: lane.daemon.sync.connected and holds_roster(lane), 15)
        for lane in lanes:  # each has heard the other for SETTLE seconds
            wait_until(lambda lane=lane: whole(lane), 15 + SETTLE)
        return lanes  # type: ignore[return-value]

    return start


def admit(lane: Lane, ticket: str) -> None:
    decision = lane.present(ticket)
    assert decision["accepted"], decision
    lane.passed(decision)
    lane.idle()


def refused_full(lane: Lane, ticket: str) -> dict[str, Any]:
    """The ticket is refused ``zone_full``: red, and the unlock relay does not move."""
    pulses = lane.pulses("unlock_in")
    decision = lane.present(ticket, walks=None)
    assert not decision["accepted"] and decision["reason"] == "zone_full", decision
    assert lane.pulses("unlock_in") == pulses, "the relay moved for a refusal"
    assert not lane.output("green")
    lane.idle()
    return decision


def entries(lanes: tuple[Lane, ...]) -> int:
    """The people the zone really holds: every lane's own admissions in (not reverted) minus its
    exits, read from each ledger file as it is on disk."""
    total = 0
    for lane in lanes:
        rows = [r for r in lane.records() if r["origin"] == lane.daemon.config.gate_id]
        reverted = {(r["ref_epoch"], r["ref_seq"]) for r in rows if r["kind"] == "revert"}
        total += sum(1 for r in rows if r["kind"] == "admission" and r["direction"] == "in" and (r["epoch"], r["seq"]) not in reverted)
        total -= sum(1 for r in rows if r["kind"] == "free_exit" or (r["kind"] == "passage" and r["direction"] == "out"))
    return total


def test_a_full_zone_refuses_zone_full_and_an_exit_lets_the_next_person_in(venue: Callable[[int], tuple[Lane, Lane]],
                                                                          tickets: Tickets) -> None:
    a, b = venue(3)
    admit(a, tickets.static())
    admit(a, tickets.static())
    admit(b, tickets.static())
    for lane in (a, b):
        wait_until(lambda lane=lane: zone(lane)["occupancy"] == 3, 15)
    waiting = tickets.static()
    refused_full(a, waiting)
    refused_full(b, tickets.static())
    assert entries((a, b)) == 3

    b.turnstile.pass_through("out")  # someone leaves through B's free exit
    wait_until(lambda: zone(a)["occupancy"] == 2, 15)
    admit(a, waiting)  # the person refused before now gets in, at the other lane
    wait_until(lambda: zone(b)["occupancy"] == 3, 15)
    refused_full(b, tickets.static())
    assert entries((a, b)) == 3


def test_two_lanes_cut_off_admit_only_their_shares_and_agree_again_when_they_hear_each_other(
    venue: Callable[[int], tuple[Lane, Lane]], tickets: Tickets, broker: Mosquitto
) -> None:
    capacity, before = 11, 4
    a, b = venue(capacity)
    for _ in range(before):
        admit(a, tickets.static())
    wait_until(lambda: zone(b)["occupancy"] == before, 15)

    broker.stop()  # the two lanes no longer hear each other
    for lane in (a, b):
        wait_until(lambda lane=lane: "cut" in zone(lane), 15)
    share = (capacity - before) // len(GATES)
    assert [zone(lane)["cut"]["share"] for lane in (a, b)] == [share, share]
    admitted = {}
    for lane in (a, b):  # a crowd at each lane, more than the zone has room for
        decisions = []
        for _ in range(capacity - before + 1):
            decision = lane.present(tickets.static())
            decisions.append(decision["reason"])
            if decision["accepted"]:
                lane.passed(decision)
            lane.idle()
        admitted[lane.daemon.config.gate_id] = decisions.count("ok")
        assert decisions == ["ok"] * share + ["zone_full"] * (len(decisions) - share), decisions
    held = entries((a, b))
    overshoot = held - capacity
    print(f"cut off: capacity={capacity} before={before} lanes=2 share={share} admitted={admitted} "
          f"held={held} overshoot={overshoot} (bound: 0)")
    assert held == before + 2 * share and overshoot <= 0

    broker.start()
    for lane in (a, b):  # each takes in the other's records of the cut: one count again
        wait_until(lambda lane=lane: zone(lane)["occupancy"] == held, 30)
        wait_until(lambda lane=lane: whole(lane), 30 + SETTLE)
    admit(a, tickets.static())  # the room the shares left over (11 − 10) is used once the lanes agree
    wait_until(lambda: zone(b)["occupancy"] == capacity, 15)
    refused_full(b, tickets.static())
    refused_full(a, tickets.static())
    assert entries((a, b)) == capacity


def test_a_lane_cut_off_alone_keeps_to_its_share_while_the_other_hears_it_go_and_keeps_to_its_own(
    venue: Callable[[int], tuple[Lane, Lane]], tickets: Tickets
) -> None:
    """One lane's bus connection goes (its sync stopped: it says offline, as a clean stop or
    its Last Will would): the broker is up, the other lane stays on it, and both keep to their
    shares; when it is back both count the same."""
    a, b = venue(9)
    admit(b, tickets.static())
    wait_until(lambda: zone(a)["occupancy"] == 1, 15)
    a.daemon.sync.stop(save_mark=False)  # (the loop owns the database: the mark is saved by it later)
    for lane in (a, b):
        wait_until(lambda lane=lane: "cut" in zone(lane), 15)
    assert zone(b)["cut"]["missing"] == ["zone-a"] and zone(a)["cut"]["missing"] == ["zone-b"]
    for lane in (a, b):  # (9 − 1) // 2 = 4 each
        for _ in range(4):
            admit(lane, tickets.static())
        refused_full(lane, tickets.static())
    assert entries((a, b)) == 9

    a.daemon.sync.start()
    for lane in (a, b):
        wait_until(lambda lane=lane: zone(lane)["occupancy"] == 9, 30)
        wait_until(lambda lane=lane: whole(lane), 30 + SETTLE)
    refused_full(a, tickets.static())
    refused_full(b, tickets.static())


def test_a_lane_that_is_down_keeps_its_share_reserved(tmp_path: Path, issuer: SigningKey, broker: Mosquitto,
                                                      start_lane: Callable[..., Lane], tickets: Tickets) -> None:
    """Three lanes on the roster, one never started: the two up hear each other but not it, so
    each keeps to a third of the room (the down lane's third stays unused, never over)."""
    publish_zones(broker, 10, lanes=(*GATES, "zone-c"))
    a, b = (start_lane(gate_config(tmp_path, issuer, gate, broker, status_interval=0.5)) for gate in GATES)
    for lane in (a, b):
        wait_until(lambda lane=lane: lane.daemon.sync.connected and holds_roster(lane) and zone(lane).get("cut"), 15)
        assert zone(lane)["cut"]["missing"] == ["zone-c"] and zone(lane)["cut"]["share"] == 3
    for lane in (a, b):
        for _ in range(3):
            admit(lane, tickets.static())
        refused_full(lane, tickets.static())
    wait_until(lambda: zone(a)["occupancy"] == 6 and zone(b)["occupancy"] == 6, 15)  # they do hear each other
    assert entries((a, b)) == 6
