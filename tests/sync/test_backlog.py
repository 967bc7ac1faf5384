"""A lane with a backlog of peers' records: merged in bounded batches between scans, never in
front of one; stopped in the middle of it without harm; and a list of brokers to fail over to."""

from __future__ import annotations

import logging
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from hwsim.broker import Mosquitto, mosquitto_binary
from nacl.signing import SigningKey

from gate.store.ledger import ADMISSION, Record
from gate.sync.opening import Opened
from gate.trust.records import open_record, sealer
from tests.support.lanes import Lane, Tickets, wait_until
from tests.support.venue import KEYS, VENUE, gate_config, holds_roster, publish_roster

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed (scripts/test installs it)")

BACKLOG = 20_000
MESSAGE = 500  # records in one peer message, as a catch-up answer carries them


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    broker = Mosquitto(tmp_path / "broker")
    yield broker
    broker.stop()


def on_the_bus(start_lane: Callable[..., Lane], tmp_path: Path, issuer: SigningKey, broker: Mosquitto, **sync: Any) -> Lane:
    publish_roster(broker, ["gate-a", "gate-b"])
    lane = start_lane(gate_config(tmp_path, issuer, "gate-a", broker, **sync))
    wait_until(lambda: lane.daemon.sync.connected and holds_roster(lane) and len(lane.daemon.sync.roster) == 2, 10)
    return lane


def peer_messages(lane: Lane) -> list[list[Record]]:
    """``BACKLOG`` admissions of gate-b, opened as the network thread opens them, in messages."""
    seal, roster = sealer(KEYS.add("gate-b"), VENUE), lane.daemon.sync.roster
    records = []
    for seq in range(1, BACKLOG + 1):
        record = Record("gate-b", seq, ADMISSION, time.time(), ticket_key=f"{seq:064x}", format="gt1", direction="in", epoch="b1")
        records.append(open_record(*seal(record), roster, VENUE, "gate-b"))
    return [records[i:i + MESSAGE] for i in range(0, BACKLOG, MESSAGE)]


def arrive(lane: Lane, messages: list[list[Record]]) -> None:
    """As paho's network thread hands verified messages to the loop (both ends in one process)."""
    for records in messages:
        lane.daemon.sync._queue_event("records", Opened("gate-b", records, []))


def test_a_scan_is_decided_before_a_backlog_of_peer_records_queued_ahead_of_it(
        start_lane: Callable[..., Lane], tmp_path: Path, issuer: SigningKey, broker: Mosquitto, tickets: Tickets) -> None:
    lane = on_the_bus(start_lane, tmp_path, issuer, broker)
    sync = lane.daemon.sync
    merged_at_decision: list[int] = []
    lane.daemon.loop.listeners.append(
        lambda kind, payload: merged_at_decision.append(sync.counters["merged"]) if kind == "decision" else None)
    messages = peer_messages(lane)

    arrive(lane, messages)  # 20,000 records in the queue, then a person scans
    decision = lane.present(tickets.static())

    assert decision["accepted"], decision
    assert merged_at_decision[0] < BACKLOG // 4, f"the scan waited behind {merged_at_decision[0]} merged records"
    wait_until(lambda: sync.counters["merged"] == BACKLOG, 60)
    assert lane.daemon.store.ledger.count("gate-b") == BACKLOG
    lane.passed(decision)


def test_a_lane_stopped_in_the_middle_of_a_backlog_stops_cleanly_and_keeps_its_database(
        start_lane: Callable[..., Lane], tmp_path: Path, issuer: SigningKey, broker: Mosquitto, tickets: Tickets) -> None:
    lane = on_the_bus(start_lane, tmp_path, issuer, broker)
    decision = lane.present(tickets.static())
    lane.passed(decision)
    arrive(lane, peer_messages(lane))

    lane.stop()

    assert not lane.daemon.loop.alive
    assert not lane.output("unlock_in")
    conn = sqlite3.connect(lane.daemon.config.database)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        held = conn.execute("SELECT COUNT(*) FROM ledger WHERE origin = 'gate-b'").fetchone()[0]
        own = conn.execute("SELECT kind FROM ledger WHERE origin = 'gate-a' ORDER BY seq").fetchall()
    finally:
        conn.close()
    assert held < BACKLOG, "stopped before the whole backlog was merged (the test needs it to be mid-way)"
    assert [k for (k,) in own] == ["admission", "passage"]  # its own records are all there


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_lane_fails_over_to_the_next_broker_of_its_list_and_says_why(
        start_lane: Callable[..., Lane], tmp_path: Path, issuer: SigningKey, broker: Mosquitto, tickets: Tickets,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gate.sync.client")
    dead = free_port()  # nothing listens there: the first broker of the list is down
    publish_roster(broker, ["gate-a", "gate-b"])
    data = gate_config(tmp_path, issuer, "gate-a", broker)
    del data["sync"]["host"], data["sync"]["port"]
    data["sync"]["brokers"] = [f"127.0.0.1:{dead}", f"127.0.0.1:{broker.port}"]
    lane = start_lane(data)

    wait_until(lambda: lane.daemon.sync.connected and holds_roster(lane), 20)

    said = [r.getMessage() for r in caplog.records]
    assert any(f"broker not reached broker=127.0.0.1:{dead} error=connection refused" in m for m in said), said
    assert any(f"broker connected broker=127.0.0.1:{broker.port}" in m for m in said), said
    decision = lane.present(tickets.static())
    assert decision["accepted"]
    lane.passed(decision)
    wait_until(lambda: lane.daemon.sync.outbox_size() == 0, 10)  # its records reached the second broker
