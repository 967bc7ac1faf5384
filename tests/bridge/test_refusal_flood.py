"""A lane's broker login stolen from a Pi floods ``scans/<gate>`` with refusals: the bridge queues
at most a lane's rate of them and at most a cap in all, counts the rest (per lane and why) on its
status and metrics, logs them once per interval per lane, and the check-ins (the venue's count,
what pretix must get) neither wait behind the refusals nor are capped.

Against a real mosquitto with the shipped ACL and a password per user; the bridge in this process
with its real store (quick tests), or ``gate bridge run`` against a real pretix."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hwsim.broker import Watcher, free_port

from gate.bridge import refusals
from gate.bridge.builder import secret_key
from gate.bridge.config import load
from gate.bridge.intake import RefusalIntake
from gate.bridge.service import Bridge
from gate.bridge.store import DONE, PENDING, BridgeStore, Job, NewJob
from gate.bridge.uploader import Worker
from gate.store.ledger import Record
from gate.sync import messages
from gate.trust.records import sealer
from tests.bridge.helpers import Venue, admit, gate_cli
from tests.bridge.test_pretix import enrol
from tests.support.lanes import wait_until
from tests.support.pretix import PretixServer
from tests.support.venue import KEYS, VENUE

ROOT = f"gate/v2/{VENUE}/"


def scan(gate: str, ticket_key: str, reason: str = "revoked") -> bytes:
    """A refusal as a lane publishes it (gate.sync.messages.encode_scan)."""
    return messages.encode_scan(gate, {"accepted": False, "reason": reason, "format": "pretix_sig1",
                                       "ticket_key": ticket_key, "direction": "in", "source": "scanner",
                                       "latency_ms": 3.0})


def random_key() -> str:
    return os.urandom(32).hex()


def thief(venue: Venue, gate: str) -> Watcher:
    """Someone holding ``gate``'s broker password, on a connection of their own."""
    return Watcher(venue.broker.port, [], username=gate, password=f"pw-{gate}", client_id=f"thief-{gate}")


def check_in(gate: str, ticket_key: str, seq: int) -> bytes:
    """An admission of ``ticket_key`` and its passage, signed by ``gate``'s key, as the lane
    publishes them on ``ledger/<gate>``."""
    seal = sealer(KEYS.gates[gate], VENUE)
    now = time.time()
    admission = Record(gate, seq, "admission", now, ticket_key, "pretix_sig1", "in", epoch="e1")
    passage = Record(gate, seq + 1, "passage", now + 1, ref_origin=gate, ref_seq=seq, epoch="e1", ref_epoch="e1")
    return messages.encode_records(gate, [seal(admission), seal(passage)])


def status_file(bridge: Bridge) -> dict[str, Any]:
    """``status.json`` as ``gate bridge status`` reads it ({} before the first)."""
    try:
        return json.loads(bridge.config.status_file.read_text())
    except (OSError, ValueError):
        return {}


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


@pytest.fixture
def in_process_bridge() -> Iterator[Callable[[Path], Bridge]]:
    started: list[Bridge] = []

    def start(config: Path) -> Bridge:
        bridge = Bridge(load(str(config)))
        bridge.start()
        started.append(bridge)
        wait_until(lambda: bridge.listener.connected.is_set(), 20)
        return bridge

    yield start
    for bridge in started:
        bridge.stop()


def test_a_flood_from_one_lanes_login_is_capped_and_counted_and_every_check_in_is_still_queued(
        make_venue: Callable[[list[str]], Venue], in_process_bridge: Callable[[Path], Bridge],
        caplog: pytest.LogCaptureFixture) -> None:
    venue = make_venue(["lane-a", "lane-b"])
    port = free_port()
    # Small limits, so that the test needs few messages: a burst of 20 per lane (and almost no
    # refill), 30 failed check-ins pending in all. pretix is not enrolled: the jobs stay pending.
    config = venue.bridge_config(None, metrics=f"127.0.0.1:{port}", pretix={
        "events": [{"slug": "democon", "checkin_list": 1}],
        "failed_checkins_rate": 0.01, "failed_checkins_burst": 20, "failed_checkins_max_pending": 30})
    caplog.set_level(logging.WARNING, logger="gate.bridge.intake")
    bridge = in_process_bridge(config)

    def heard() -> int:
        return bridge.listener.counters["scans"]

    flood = [random_key() for _ in range(300)]
    stolen = thief(venue, "lane-a")
    try:
        for key in flood:
            stolen.client.publish(f"{ROOT}scans/lane-a", scan("lane-a", key), qos=0)
        wait_until(lambda: heard() == 300, 30)
        stolen.publish(f"{ROOT}ledger/lane-a", check_in("lane-a", "a1" * 32, 1))  # the flooded lane's own check-in
    finally:
        stolen.close()
    lane_b = thief(venue, "lane-b")  # (lane-b's own login: its refusals and its check-in)
    try:
        own = [random_key() for _ in range(15)]
        for key in own:
            lane_b.publish(f"{ROOT}scans/lane-b", scan("lane-b", key), qos=0)
        wait_until(lambda: heard() == 315, 30)
        lane_b.publish(f"{ROOT}ledger/lane-b", check_in("lane-b", "b1" * 32, 1))
    finally:
        lane_b.close()

    # every check-in is queued, whatever the flood: the records are never capped
    wait_until(lambda: len(bridge.store.jobs("pretix")) == 2, 30)
    assert sorted(j["key"] for j in bridge.store.jobs("pretix")) == ["pretix:lane-a-e1-1", "pretix:lane-b-e1-1"]
    # the refusals: lane-a's burst (20), then lane-b's until the cap (10 of 15)
    queued = bridge.store.jobs(refusals.SINK)
    assert len(queued) == 30 and all(j["state"] == PENDING for j in queued)
    by_gate = {g: [json.loads(j["body"])["ticket_key"] for j in queued if json.loads(j["body"])["gate"] == g]
               for g in ("lane-a", "lane-b")}
    assert by_gate == {"lane-a": flood[:20], "lane-b": own[:10]}

    dropped = {"lane-a": {"rate": 280, "full": 0}, "lane-b": {"rate": 0, "full": 5}}
    assert bridge.status()["failed_checkins"]["dropped"] == dropped
    wait_until(lambda: status_file(bridge).get("failed_checkins", {}).get("dropped") == dropped, 10)  # gate bridge status's
    _, out = gate_cli("bridge", "status", "--bridge-config", str(config))
    assert "flood    lane-a: refusals not queued: 280 over its rate, 0 queue full" in out, out
    assert "flood    lane-b: refusals not queued: 0 over its rate, 5 queue full" in out, out
    wait_until(lambda: 'gate_bridge_failed_checkins_dropped_total{gate="lane-a",why="rate"} 280.0' in scrape(port), 10)
    metrics = scrape(port)
    assert 'gate_bridge_failed_checkins_dropped_total{gate="lane-b",why="full"} 5.0' in metrics
    assert 'gate_bridge_jobs{sink="pretix-failed",state="pending"} 30.0' in metrics

    warnings = [r.getMessage() for r in caplog.records if r.name == "gate.bridge.intake"]
    assert len(warnings) == 2, warnings  # once per lane in the interval, not once per refusal
    assert "gate=lane-a rate=1 full=0" in warnings[0] and "gate=lane-b rate=0 full=1" in warnings[1]
    assert not any(key in message for message in warnings for key in [*flood, *own])


def test_a_lanes_bucket_takes_a_burst_then_its_rate_and_every_lane_has_its_own() -> None:
    now = [1000.0]
    intake = RefusalIntake(clock=lambda: now[0])  # the defaults: 10 a second, 100 at once
    assert sum(intake.allow("lane-a") for _ in range(150)) == 100
    assert intake.allow("lane-b")  # another lane's refusals are not the flooded lane's
    now[0] += 3.0
    assert sum(intake.allow("lane-a") for _ in range(150)) == 30
    now[0] += 3600.0
    assert sum(intake.allow("lane-a") for _ in range(150)) == 100  # never more than the burst
    assert intake.status()["dropped"] == {"lane-a": {"rate": 220, "full": 0}}


def test_a_failed_checkin_upload_that_fails_never_keeps_a_check_in_waiting(tmp_path: Path) -> None:
    """One pretix worker, as the bridge runs it: check-ins first, and the pause a failing
    failed-check-in asks for (pretix's answer to it was an error that may pass) holds only the
    failed check-ins."""
    store = BridgeStore(tmp_path / "bridge.db")
    sent: list[str] = []

    def deliver(jobs: list[Job]) -> float:
        for job in jobs:
            sent.append(job.key)
            if job.sink == refusals.SINK:
                store.failed(job.id, "500 database is locked", time.time() + 3600)
                return 3600.0  # the worker's pause after a failure
            store.done(job.id, "ok")
        return 0.0

    worker = Worker(store, "pretix", deliver, 1, (0, 1), (refusals.SINK,))
    for n in range(5):
        store.add_jobs([NewJob(refusals.SINK, f"{refusals.SINK}:{n}", {"ticket_key": random_key()}, time.time())])
    worker.start()
    try:
        wait_until(lambda: sent, 20)
        checkins = [NewJob("pretix", f"pretix:lane-a-e1-{n}", {"ticket_key": random_key()}, time.time()) for n in (1, 3)]
        store.add_jobs(checkins)
        wait_until(lambda: all(j["state"] == DONE for j in store.jobs("pretix")), 20)
    finally:
        worker.stop()
        worker.join(5)
    assert sent == [f"{refusals.SINK}:0", "pretix:lane-a-e1-1", "pretix:lane-a-e1-3"]  # in their order
    assert [j["state"] for j in store.jobs(refusals.SINK)] == [PENDING] * 5  # held, not given up


# --- against a real pretix (run in the window the brief gives: it loads the machine) ----------

def test_check_ins_are_uploaded_before_a_flood_of_refusals_that_stays_capped(
        make_venue: Callable[[list[str]], Venue], pretix: PretixServer) -> None:
    venue = make_venue(["lane-a", "lane-b"])
    port = free_port()
    list_id = pretix.event("democon")["list"]
    config = venue.bridge_config(None, metrics=f"127.0.0.1:{port}", pretix={
        "events": [{"slug": "democon", "checkin_list": list_id}],
        "failed_checkins_rate": 50.0, "failed_checkins_burst": 100, "failed_checkins_max_pending": 40})
    enrol(venue, pretix, config)
    bridge = venue.start_bridge(config)
    lane_a, lane_b = venue.start_lanes()
    tickets = pretix.event("democon")["tickets"]
    # the thief refuses codes pretix issued (each becomes an upload), every reason, over and over
    keys = [secret_key(t["secret"]) for t in tickets[10:]]
    reasons = sorted(refusals.REASONS)
    stop = threading.Event()
    stolen = thief(venue, "lane-a")

    def flood() -> None:
        n = 0
        while not stop.is_set():
            stolen.client.publish(f"{ROOT}scans/lane-a", scan("lane-a", keys[n % len(keys)], reasons[n // len(keys) % len(reasons)]), qos=0)
            n += 1
            if n % 50 == 0:
                stop.wait(0.05)  # up to ~1,000 a second: far over the rate, without starving this 2-core machine

    flooder = threading.Thread(target=flood, daemon=True)
    started = time.monotonic()
    flooder.start()
    try:
        wait_until(lambda: bridge.queue(refusals.SINK)["pending"] >= 30, 30)  # the flood fills the queue
        for lane, ticket in ((lane_a, tickets[0]), (lane_b, tickets[1]), (lane_a, tickets[2]), (lane_b, tickets[3])):
            admit(lane, ticket["secret"])
        wait_until(lambda: len(pretix.checkins("democon")) == 4, 60)
        wait_until(lambda: bridge.queue("pretix")["done"] == 4, 30)
        assert bridge.queue(refusals.SINK)["pending"] <= 40  # the flood still going: at the cap, not over it
    finally:
        stop.set()
        flooder.join(10)
        stolen.close()
    assert {c["position"] for c in pretix.checkins("democon")} == {t["position"] for t in tickets[:4]}

    flooded = time.monotonic() - started

    store = BridgeStore(config.parent / "state" / "bridge.db")
    failed = store.jobs(refusals.SINK)
    # (a check-in pretix answered with an error that may pass waits its retry, and later jobs go
    # meanwhile, by design: the order is that of the check-ins pretix took at the first try)
    first_try = [job for job in store.jobs("pretix") if job["attempts"] == 1]
    assert first_try
    for job in first_try:  # from the moment a check-in was queued, it went before every refusal
        # then waiting, but for the one upload the (one) worker may have had under way
        overtaking = [r for r in failed if r["done_at"] is not None and job["created_at"] < r["done_at"] < job["done_at"]]
        waiting = [r for r in failed if r["created_at"] < job["created_at"] and (r["done_at"] or 1e12) > job["done_at"]]
        assert len(overtaking) <= 1, (job["key"], len(overtaking))
        assert waiting, "the refusals had all gone: the order proves nothing"
    store.close()
    dropped = bridge.status()["failed_checkins"]["dropped"]
    assert dropped["lane-a"]["rate"] > 0 and dropped["lane-a"]["full"] > 0
    assert "lane-b" not in dropped  # the other lane refused nobody, and lost nothing
    assert 'gate_bridge_failed_checkins_dropped_total{gate="lane-a",why="full"}' in scrape(port)
    warned = sum("refusals not queued" in line for line in bridge.log().splitlines())
    assert 1 <= warned <= 1 + flooded // 60  # once a minute per lane, not once per refusal
    assert not any(t["secret"] in bridge.log() for t in tickets)
