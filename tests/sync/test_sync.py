"""Venue sync through a real mosquitto: one ledger across the gates, nothing lost in outages."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any, Callable

import pytest
from hwsim.broker import Mosquitto, Watcher, mosquitto_binary
from nacl.signing import SigningKey

from tests.support.lanes import Lane, Tickets, wait_until
from tests.support.venue import ROOT, gate_config, holds_roster, publish_roster, venue_acl

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed (scripts/test installs it)")





GATES = ["gate-a", "gate-b", "gate-c"]


@pytest.fixture
def venue(tmp_path: Path, issuer: SigningKey, broker: Mosquitto, start_lane: Callable[..., Lane]) -> Callable[..., Lane]:
    configs: dict[str, dict[str, Any]] = {}
    publish_roster(broker, GATES)

    def start(gate_id: str, connected: bool = True, **sync: Any) -> Lane:
        configs.setdefault(gate_id, gate_config(tmp_path, issuer, gate_id, broker, **sync))
        lane = start_lane(configs[gate_id])
        if connected:
            wait_until(lambda: lane.daemon.sync.connected and holds_roster(lane), 10)
        return lane

    return start


def ledger_rows(lane: Lane, origin: str, kind: str | None = None) -> list[sqlite3.Row]:
    return [r for r in lane.records(kind) if r["origin"] == origin]


def admit(lane: Lane, ticket: str) -> None:
    """Someone is let in and walks through: returns once the passage is in the ledger (the
    lights go back to idle a moment before the loop writes it)."""
    decision = lane.present(ticket)
    assert decision["accepted"], decision
    lane.passed(decision)
    lane.idle()


def test_a_ticket_admitted_at_a_is_already_used_at_b(venue: Callable[..., Lane], tickets: Tickets) -> None:
    a, b = venue("gate-a"), venue("gate-b")
    ticket = tickets.static()
    admit(a, ticket)
    wait_until(lambda: ledger_rows(b, "gate-a", "admission"), 5)

    decision = b.present(ticket, walks=None)
    assert (decision["accepted"], decision["reason"]) == (False, "already_used")
    assert b.pulses("unlock_in") == 0
    # and the other way round: B's records reach A
    other = tickets.static()
    admit(b, other)
    wait_until(lambda: ledger_rows(a, "gate-b", "admission"), 5)
    assert a.present(other, walks=None)["reason"] == "already_used"


def test_records_on_the_bus_carry_no_ticket_text(venue: Callable[..., Lane], tickets: Tickets, broker: Mosquitto) -> None:
    watcher = Watcher(broker.port, [ROOT + "#"])
    a = venue("gate-a")
    ticket = tickets.static()
    admit(a, ticket)
    wait_until(lambda: watcher.on(ROOT + "ledger/gate-a") and watcher.on(ROOT + "scans/gate-a"), 5)
    everything = b"".join(p for _, p, _ in watcher.messages)
    assert ticket[4:].encode() not in everything and ticket[4:20].encode() not in everything
    records = [json.loads(r["signed"]) for p in watcher.on(ROOT + "ledger/gate-a") for r in json.loads(p)["records"]]
    admission = next(r for r in records if r["kind"] == "admission")
    assert admission["ticket_key"] == a.records("admission")[0]["ticket_key"]  # the SHA-256 key
    watcher.close()


def test_broker_down_while_a_admits_100_then_back_b_has_all_of_them(
    venue: Callable[..., Lane], tickets: Tickets, broker: Mosquitto
) -> None:
    a, b = venue("gate-a"), venue("gate-b")
    broker.stop()
    wait_until(lambda: not a.daemon.sync.connected and not b.daemon.sync.connected, 10)

    for _ in range(100):
        admit(a, tickets.static())  # the lane keeps deciding offline
    assert len(a.records("admission")) == 100
    assert a.daemon.sync.outbox_size() >= 200  # admissions and passages, waiting

    broker.start()
    wait_until(lambda: len(ledger_rows(b, "gate-a")) == 200, 30)
    rows = ledger_rows(b, "gate-a")
    assert sorted(r["seq"] for r in rows) == list(range(1, 201))  # none lost, none twice
    assert {r["kind"] for r in rows} == {"admission", "passage"}
    wait_until(lambda: a.daemon.sync.outbox_size() == 0, 10)


def test_a_gate_that_was_stopped_catches_up_when_it_starts(
    venue: Callable[..., Lane], tickets: Tickets, broker: Mosquitto
) -> None:
    a, b = venue("gate-a"), venue("gate-b")
    b.stop()
    broker.stop()  # and the broker forgets B's session: only the catch-up request can help
    broker.start()
    wait_until(lambda: a.daemon.sync.connected, 15)
    shown = [tickets.static() for _ in range(5)]
    for ticket in shown:
        admit(a, ticket)

    b = venue("gate-b")
    wait_until(lambda: len(ledger_rows(b, "gate-a", "admission")) == 5, 15)
    assert b.present(shown[0], walks=None)["reason"] == "already_used"


def test_two_gates_cut_off_admit_one_ticket_both_keep_working_and_report_it(
    venue: Callable[..., Lane], tickets: Tickets, broker: Mosquitto
) -> None:
    a, b = venue("gate-a", status_interval=0.5), venue("gate-b", status_interval=0.5)
    broker.stop()
    wait_until(lambda: not a.daemon.sync.connected and not b.daemon.sync.connected, 10)
    copied = tickets.static()
    admit(a, copied)
    admit(b, copied)  # B cannot know: the screenshot gets in twice, and that must be reported

    broker.start()
    watcher = Watcher(broker.port, [ROOT + "gates/+/status"])
    for lane, gate in ((a, "gate-a"), (b, "gate-b")):
        wait_until(lambda: lane.daemon.store.ledger.conflict_count() == 1, 15)
        wait_until(lambda: any(json.loads(p).get("conflicts") == 1 for p in watcher.on(f"{ROOT}gates/{gate}/status")), 10)
    # both keep working
    admit(a, tickets.static())
    admit(b, tickets.static())
    assert a.present(copied, walks=None)["reason"] == "already_used"
    watcher.close()


def test_a_re_entry_the_gate_knew_about_is_no_conflict(
    venue: Callable[..., Lane], tickets: Tickets
) -> None:
    a, b = venue("gate-a"), venue("gate-b")
    ticket = tickets.static(entries=2)
    admit(a, ticket)
    wait_until(lambda: ledger_rows(b, "gate-a", "admission"), 5)
    admit(b, ticket)  # its second entry, with A's first known
    wait_until(lambda: ledger_rows(a, "gate-b", "admission"), 5)
    assert a.daemon.store.ledger.conflict_count() == 0 and b.daemon.store.ledger.conflict_count() == 0
    assert a.present(ticket, walks=None)["reason"] == "already_used"


def _sealed(record: dict[str, Any], signature: bytes = b"\x00" * 64, origin: str = "gate-a") -> bytes:
    """A ledger message carrying ``record`` as its signed text, with ``signature``."""
    text = json.dumps({"v": 2, "venue": "test-venue", "origin": "gate-a", "epoch": "e1", "seq": 1, "kind": "admission",
                       "at": 1, **record})
    return json.dumps({"v": 2, "origin": origin, "records": [{"signed": text, "sig": base64.b64encode(signature).decode()}]}).encode()


MALFORMED: list[tuple[str, bytes]] = [
    ("ledger/gate-a", b"not json"),
    ("ledger/gate-a", b"\xff\xfe"),
    ("ledger/gate-a", b"[]"),
    ("ledger/gate-a", b'{"v": 2, "origin": "gate-a", "records": []}'),
    ("ledger/gate-a", b'{"v": 1, "origin": "gate-a", "records": [{"seq": 1, "kind": "admission", "at": 1}]}'),
    ("ledger/gate-a", _sealed({}, origin="gate-x")),
    ("ledger/gate-a", _sealed({"seq": 0})),
    ("ledger/gate-a", _sealed({"kind": "party"})),
    ("ledger/gate-a", _sealed({"ticket_key": "RAW-SECRET"})),
    ("ledger/gate-a", _sealed({"extra": 1})),
    ("ledger/gate-a", _sealed({"at": float("nan")})),
    ("ledger/gate-a", _sealed({"details": {"a": [1]}})),
    ("ledger/gate-a", _sealed({})),  # well formed, not signed by gate-a's key
    ("ledger/gate-a", _sealed({}, signature=b"short")),
    ("ledger/gate-a", b"[" * 100_000),
    ("ledger/gate-a", b'{"v": 2, "origin": "gate-a", "records": [' + b'{"signed": "{}", "sig": ""},' * 600 + b"1]}"),
    ("ledger/gate-b", _sealed({}, origin="gate-b")),
    ("ledger/../gate-a", b"{}"),
    ("sync/request/gate-a", b'{"v": 2, "marks": [["gate-b", "e1", -1]]}'),
    ("sync/request/gate-a", b'{"v": 2, "marks": {}}'),
    ("sync/request/gate-a", b"\x00" * 10),
]


def test_malformed_messages_are_ignored_and_the_gate_goes_on(
    venue: Callable[..., Lane], tickets: Tickets, broker: Mosquitto
) -> None:
    a, b = venue("gate-a"), venue("gate-b")
    watcher = Watcher(broker.port, [])
    for topic, payload in MALFORMED:
        watcher.publish(ROOT + topic, payload)
    wait_until(lambda: b.daemon.sync.counters["refused"] >= len(MALFORMED) - 2, 10)
    assert b.records() == []  # nothing of it entered B's ledger
    # (the forged gate-b record was sent on B's own topic: B ignores its own topic)

    ticket = tickets.static()
    admit(a, ticket)
    wait_until(lambda: ledger_rows(b, "gate-a", "admission"), 5)
    assert b.present(ticket, walks=None)["reason"] == "already_used"
    watcher.close()




def test_with_the_shipped_acl_gate_b_cannot_write_into_a_s_ledger(
    tmp_path: Path, issuer: SigningKey, tickets: Tickets, start_lane: Callable[..., Lane]
) -> None:
    import subprocess

    passwords = tmp_path / "passwd"
    for i, user in enumerate(("gate-a", "gate-b", "venue-admin")):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwords), user, f"pw-{user}"], check=True)
    broker = Mosquitto(tmp_path / "broker", password_file=passwords, acl_file=venue_acl(tmp_path))
    try:
        lanes = {}
        publish_roster(broker, ["gate-a", "gate-b"], username="venue-admin", password="pw-venue-admin")
        for gate in ("gate-a", "gate-b"):
            (tmp_path / f"{gate}.pw").write_text(f"pw-{gate}\n")
            data = gate_config(tmp_path, issuer, gate, broker, password_file=str(tmp_path / f"{gate}.pw"))
            lanes[gate] = start_lane(data)
            wait_until(lambda: lanes[gate].daemon.sync.connected and holds_roster(lanes[gate]), 10)
        a, b = lanes["gate-a"], lanes["gate-b"]
        admin = Watcher(broker.port, [ROOT + "ledger/+"], "venue-admin", "pw-venue-admin")
        ticket = tickets.static()
        admit(a, ticket)  # the ACL lets the gates do their work
        wait_until(lambda: ledger_rows(b, "gate-a", "admission"), 5)

        forged = b'{"v": 2, "origin": "gate-a", "records": [{"signed": "{}", "sig": ""}]}'
        with_b_credentials = Watcher(broker.port, [], "gate-b", "pw-gate-b")
        with_b_credentials.publish(ROOT + "ledger/gate-a", forged)
        with_b_credentials.publish(ROOT + "ledger/gate-b", b"{}")  # its own topic: delivered (and refused as malformed)
        wait_until(lambda: admin.on(ROOT + "ledger/gate-b") and b"{}" in admin.on(ROOT + "ledger/gate-b"), 5)
        assert forged not in admin.on(ROOT + "ledger/gate-a")
        assert not [r for r in b.records() if r["seq"] == 999] and not [r for r in a.records() if r["seq"] == 999]
        wait_until(lambda: a.daemon.sync.counters["refused"] == 1, 5)  # A saw B's "{}", nothing forged
        with_b_credentials.close()
        admin.close()
        with pytest.raises(PermissionError):  # a wrong password gets nowhere
            Watcher(broker.port, [], "gate-b", "wrong")
    finally:
        broker.stop()
