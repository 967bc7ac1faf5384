"""Venue ledger v2 against a real mosquitto with the shipped ACL: records are signed by their
gate's own key and taken in only from gates on the admin's roster, so a stolen gate's broker
password (or even its key) changes nothing at any other gate beyond what that gate could do at
its own lane, and every refusal is counted on the status."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from hwsim.broker import Mosquitto, Watcher, mosquitto_binary
from hwsim.venue_keys import VenueKeys
from nacl.signing import SigningKey

from gate.store.ledger import ADMISSION, PASSAGE, REVERT, Record
from gate.sync.messages import Request, encode_reply, encode_request
from gate.trust.records import sealer
from tests.support.lanes import Lane, Tickets, wait_until
from tests.support.venue import ADMIN, KEYS, ROOT, VENUE, gate_config, holds_roster, publish_roster, venue_acl

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed (scripts/test installs it)")

USERS = ("gate-a", "gate-b", "venue-admin", "venue-monitor")


class Venue:
    """gate-a as a running lane, and gate-b as an attacker: its broker password and its key."""

    def __init__(self, tmp_path: Path, issuer: SigningKey, start_lane: Callable[..., Lane]) -> None:
        passwords = tmp_path / "passwd"
        for i, user in enumerate(USERS):
            subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwords), user, f"pw-{user}"], check=True)
            (tmp_path / f"{user}.pw").write_text(f"pw-{user}\n")
        self.broker = Mosquitto(tmp_path / "broker", password_file=passwords, acl_file=venue_acl(tmp_path))
        self.roster(directions={"gate-b": ("in",)})
        data = gate_config(tmp_path, issuer, "gate-a", self.broker, password_file=str(tmp_path / "gate-a.pw"), status_interval=0.5)
        self.a = start_lane(data)
        wait_until(lambda: self.a.daemon.sync.connected and holds_roster(self.a), 10)
        self.as_b = Watcher(self.broker.port, [], "gate-b", "pw-gate-b")  # B's stolen broker password
        self.monitor = Watcher(self.broker.port, [ROOT + "gates/+/status"], "venue-monitor", "pw-venue-monitor")
        self.b_key = KEYS.add("gate-b")

    def roster(self, version: int = 1, retired: tuple[str, ...] = (), directions: dict[str, tuple[str, ...]] | None = None,
               retired_at: float | None = None) -> None:
        roster = VenueKeys(VENUE, ["gate-a", "gate-b"], admin=ADMIN)  # these two alone (keys from the names, as KEYS's)
        admin = Watcher(self.broker.port, [], "venue-admin", "pw-venue-admin")
        try:
            payload = roster.bundle(version, retired=retired, directions=directions, retired_at=retired_at)
            admin.publish(ROOT + "bundle", payload, retain=True)
        finally:
            admin.close()

    def send_as_b(self, topic_gate: str, records: list[tuple[str, bytes]]) -> None:
        payload = json.dumps({"v": 2, "origin": topic_gate, "records": [
            {"signed": text, "sig": base64.b64encode(sig).decode()} for text, sig in records]}).encode()
        self.as_b.publish(f"{ROOT}ledger/{topic_gate}", payload)

    def pass_on_to_a(self, records: list[tuple[str, bytes]]) -> None:
        """A catch-up answer to A carrying these records (any gate may answer; B here)."""
        self.as_b.publish(f"{ROOT}sync/reply/gate-a/gate-b", encode_reply("gate-b", records))

    def refusals(self) -> dict[str, int]:
        return dict(self.a.daemon.sync.refusals)

    def published_refusals(self) -> dict[str, int]:
        status = self.monitor.last_json(ROOT + "gates/gate-a/status")
        return status.get("sync", {}).get("refusals", {})

    def close(self) -> None:
        self.as_b.close()
        self.monitor.close()
        self.broker.stop()


@pytest.fixture
def venue(tmp_path: Path, issuer: SigningKey, start_lane: Callable[..., Lane]) -> Any:
    venue = Venue(tmp_path, issuer, start_lane)
    yield venue
    venue.close()


def b_record(kind: str, seq: int, *, origin: str = "gate-b", ref: tuple[str, str, int] | None = None, key: str | None = None,
             direction: str = "in", signer: SigningKey | None = None, epoch: str = "b1", at: float | None = None) -> tuple[str, bytes]:
    """A record as gate-b's key (or ``signer``) seals it."""
    record = Record(origin, seq, kind, time.time() if at is None else at, ticket_key=key, format="gt1" if key else None, direction=direction,
                    ref_origin=ref[0] if ref else None, ref_seq=ref[2] if ref else None, epoch=epoch,
                    ref_epoch=ref[1] if ref else None)
    return sealer(signer or KEYS.add("gate-b"), VENUE)(record)


def admitted(lane: Lane, tickets: Tickets | None = None, ticket_text: str | None = None) -> tuple[str, Any]:
    ticket = ticket_text or tickets.static()  # type: ignore[union-attr]
    decision = lane.present(ticket)
    assert decision["accepted"], decision
    return ticket, lane.passed(decision)


def test_records_forged_with_a_stolen_gate_s_password_and_key_change_nothing_at_other_gates(venue: Venue, tickets: Tickets) -> None:
    a = venue.a
    used, row = admitted(a, tickets)
    before = [tuple(r) for r in a.records()]
    a_ref = ("gate-a", row["epoch"], row["seq"])
    # On A's own topic: the broker drops it (the shipped ACL); on B's topic with A's origin: wrong_origin.
    venue.send_as_b("gate-a", [b_record(REVERT, 1, origin="gate-a", ref=a_ref, signer=venue.b_key)])
    venue.send_as_b("gate-b", [b_record(REVERT, 1, origin="gate-a", ref=a_ref)])
    # B's own key, B's own topic: a revert of A's admission, an admission that makes a fresh
    # ticket used, an exit (B's roster entry allows "in" only).
    venue.send_as_b("gate-b", [b_record(REVERT, 1, ref=a_ref)])
    venue.send_as_b("gate-b", [b_record(ADMISSION, 1, key="ab" * 32, direction="out")])
    # Signed by another key as gate-b; unsigned; for another venue.
    venue.send_as_b("gate-b", [b_record(ADMISSION, 1, key="cd" * 32, signer=SigningKey(b"\x0b" * 32))])
    text, _ = b_record(ADMISSION, 1, key="cd" * 32)
    venue.send_as_b("gate-b", [(text, b"\x00" * 64)])
    wait_until(lambda: sum(venue.refusals().values()) >= 5, 10)
    refusals = venue.refusals()
    assert refusals.get("wrong_origin") == 1 and refusals.get("bad_signature") == 2 and refusals.get("direction") == 1
    assert refusals.get("causality") == 1, refusals  # B's revert of A's admission
    assert [tuple(r) for r in a.records()] == before, "nothing entered A's ledger"
    assert a.present(used, walks=None)["reason"] == "already_used"
    assert sum(refusals.values()) == 5, "the record on A's own topic never reached A"
    wait_until(lambda: sum(venue.published_refusals().values()) == 5, 10)  # and the venue sees them


def test_a_flood_of_forged_records_does_not_grow_the_ledger_and_is_counted(venue: Venue, tickets: Tickets) -> None:
    a = venue.a
    size_before = a.daemon.store.ledger.count()
    stranger = SigningKey(b"\x0c" * 32)
    for batch in range(20):
        venue.send_as_b("gate-b", [b_record(ADMISSION, batch * 100 + i + 1, key=f"{batch:02x}{i:062x}", signer=stranger)
                                   for i in range(100)])
    wait_until(lambda: venue.refusals().get("bad_signature", 0) == 2000, 20)
    assert a.daemon.store.ledger.count() == size_before
    ticket, _ = admitted(a, tickets)  # the lane goes on
    assert a.present(ticket, walks=None)["reason"] == "already_used"


def test_records_of_a_gate_not_on_the_roster_or_of_another_venue_are_refused_even_passed_on(venue: Venue) -> None:
    """A thief with gate-b's password passes on, as a catch-up answer, records of a gate the
    roster does not name and gate-b's own records sealed for another venue: none is taken in,
    each is counted by why."""
    a = venue.a
    size_before = a.daemon.store.ledger.count()
    stranger = b_record(ADMISSION, 1, origin="gate-x", key="ab" * 32, epoch="x1", signer=SigningKey(b"\x0e" * 32))
    other = Record("gate-b", 1, ADMISSION, time.time(), ticket_key="cd" * 32, format="gt1", direction="in", epoch="b9")
    other_venue = sealer(KEYS.add("gate-b"), "another-venue")(other)
    venue.pass_on_to_a([stranger, other_venue])
    wait_until(lambda: venue.refusals().get("unknown_gate") == 1 and venue.refusals().get("wrong_venue") == 1, 10)
    assert a.daemon.store.ledger.count() == size_before
    wait_until(lambda: venue.published_refusals().get("unknown_gate") == 1, 10)  # and the venue sees it


def test_an_answer_says_truly_who_sent_it_and_a_broken_record_costs_only_itself(venue: Venue, tickets: Tickets) -> None:
    """With B's password: an answer on another gate's reply topic is dropped by the broker; an
    answer claiming to be another gate's on B's own topic is refused (its "recovering" and
    "holds" would steer A's recovery); a record whose time is a 400-digit number is refused as
    malformed while the good records of the same message, small or large, are taken in."""
    a = venue.a
    venue.as_b.publish(f"{ROOT}sync/reply/gate-a/gate-c", encode_reply("gate-c", [], {}, recovering=True))
    venue.as_b.publish(f"{ROOT}sync/reply/gate-a/gate-b", encode_reply("gate-c", [], {}, recovering=True))
    wait_until(lambda: venue.refusals().get("malformed") == 1, 10)
    text, signature = b_record(ADMISSION, 1, key="aa" * 32, epoch="b3")
    huge = re.sub(r'"at":[0-9.]+', '"at":' + "9" * 400, b_record(ADMISSION, 1, key="bb" * 32, epoch="b4")[0])
    size_before = a.daemon.store.ledger.count()
    venue.send_as_b("gate-b", [(huge, signature), (text, signature)])  # small: opened in place
    large = [b_record(ADMISSION, i + 1, key=f"{i + 1:064x}", epoch="b5") for i in range(100)]
    venue.send_as_b("gate-b", [(huge, signature), *large])  # large: opened by a worker
    wait_until(lambda: a.daemon.store.ledger.count() == size_before + 101 and venue.refusals().get("malformed") == 3, 20)
    assert a.daemon.sync.connected
    ticket, _ = admitted(a, tickets)  # the lane and its bus go on
    assert a.present(ticket, walks=None)["reason"] == "already_used"


def test_a_flood_of_catch_up_requests_gets_one_answer_a_second_to_the_asker_alone(venue: Venue, tickets: Tickets) -> None:
    """One credential asks gate-a for everything, 50 times a second for 3 s, while people scan:
    gate-a answers that asker at most once a second (the rest dropped and counted), and admits."""
    a = venue.a
    for _ in range(3):
        admitted(a, tickets)
    asker = Watcher(venue.broker.port, [f"{ROOT}sync/reply/venue-admin/+"], "venue-admin", "pw-venue-admin")
    try:
        request = encode_request(Request("gate-a", {}, all=True))
        started, sent = time.monotonic(), 0
        while sent < 150:
            asker.publish(f"{ROOT}sync/request/venue-admin", request)
            sent += 1
            time.sleep(max(0.0, started + sent / 50 - time.monotonic()))  # paced: 50 a second
            if sent == 75:
                admitted(a, tickets)  # the lane goes on deciding meanwhile
        elapsed = time.monotonic() - started
        wait_until(lambda: a.daemon.sync.counters.get("requests_dropped", 0) + answers(asker) >= sent, 10)
        assert 1 <= answers(asker) <= elapsed + 1, f"{answers(asker)} answers to {sent} requests in {elapsed:.1f} s"
        assert a.daemon.sync.counters["requests_dropped"] == sent - answers(asker)
        assert all(json.loads(p)["from"] == "gate-a" for t, p, _ in asker.messages)
    finally:
        asker.close()


def answers(watcher: Watcher) -> int:
    """Complete catch-up answers ``watcher`` received (their last message says done)."""
    with watcher.lock:
        return sum(1 for _, payload, _ in watcher.messages if json.loads(payload).get("done"))


def test_a_large_message_is_opened_by_a_worker_process_with_the_same_checks(venue: Venue, tickets: Tickets) -> None:
    """A catch-up sized message (300 records) is opened in a worker process: the good records
    merged, the forged ones among them refused and counted as when opened in place."""
    a = venue.a
    size_before, jobs_before = a.daemon.store.ledger.count(), a.daemon.sync.openers.jobs
    records = [b_record(ADMISSION, i + 1, key=f"{i:064x}", epoch="b7") for i in range(300)]
    forged_text, _ = b_record(ADMISSION, 301, key="ef" * 32, epoch="b7")
    records += [(forged_text, b"\x00" * 64), b_record(ADMISSION, 302, key="fe" * 32, epoch="b7", signer=SigningKey(b"\x0d" * 32))]
    venue.send_as_b("gate-b", records)
    wait_until(lambda: a.daemon.store.ledger.count() == size_before + 300 and venue.refusals().get("bad_signature") == 2, 30)
    assert a.daemon.sync.openers.jobs == jobs_before + 1, "the message was opened in place, not by a worker"
    assert a.daemon.store.ledger.marks()[("gate-b", "b7")] == 300
    ticket, _ = admitted(a, tickets)  # the lane goes on
    assert a.present(ticket, walks=None)["reason"] == "already_used"


def test_a_retired_gate_s_records_are_refused_from_the_bundle_that_retires_it(venue: Venue, tickets: Tickets) -> None:
    a = venue.a
    ticket = tickets.static()
    key = a.present(ticket, walks=None)["ticket_key"]
    a.idle()
    venue.send_as_b("gate-b", [b_record(ADMISSION, 1, key=key)])  # B admits it (a real gate could)
    wait_until(lambda: a.daemon.store.ledger.count("gate-b") == 1, 10)
    assert a.present(ticket, walks=None)["reason"] == "already_used"
    venue.roster(version=2, retired=("gate-b",))
    wait_until(lambda: a.daemon.store.trust.held().bundle_version == 2 and len(a.daemon.sync.roster) == 2, 10)
    other = tickets.static()
    other_key = a.present(other, walks=None)["ticket_key"]
    a.idle()
    venue.send_as_b("gate-b", [b_record(ADMISSION, 2, key=other_key)])
    wait_until(lambda: venue.refusals().get("retired", 0) == 1, 10)
    assert a.daemon.store.ledger.count("gate-b") == 1
    assert a.present(other, walks=True)["accepted"], "the retired gate's admission counts for nothing"


def test_a_retired_gate_s_past_passed_on_by_a_peer_is_kept_and_nothing_after_its_retirement(
        venue: Venue, tickets: Tickets) -> None:
    a = venue.a
    retired_at = time.time() - 60  # B was stolen a minute ago: what it recorded before is the venue's past
    venue.roster(version=2, retired=("gate-b",), retired_at=retired_at)
    wait_until(lambda: a.daemon.store.trust.held().bundle_version == 2, 10)
    before, after = tickets.static(), tickets.static()
    keys = []
    for ticket in (before, after):  # each one's key, as A reads it (A's own admission is reverted: nobody walks)
        keys.append(a.present(ticket, walks=None)["ticket_key"])
        a.idle()
    assert all(keys), keys
    past = b_record(ADMISSION, 1, key=keys[0], at=retired_at - 30)

    venue.send_as_b("gate-b", [past])  # from the stolen gate itself: nothing
    venue.pass_on_to_a([past, b_record(ADMISSION, 2, key=keys[1], at=retired_at + 1)])  # a peer passes on its past

    # the refusal of #2 is counted while its batch is merged, before the batch commits #1: wait for both
    wait_until(lambda: venue.refusals().get("retired", 0) == 2 and any(r["origin"] == "gate-b" for r in a.records()), 10)
    assert [(r["origin"], r["seq"]) for r in a.records() if r["origin"] == "gate-b"] == [("gate-b", 1)]
    assert a.present(before, walks=None)["reason"] == "already_used", "its admission before retirement counts"
    assert a.present(after, walks=True)["accepted"], "one made after retirement counts for nothing"


def test_a_gate_records_are_taken_in_only_in_order_and_a_passage_only_for_its_own_admission(venue: Venue, tickets: Tickets) -> None:
    a = venue.a
    venue.send_as_b("gate-b", [b_record(PASSAGE, 2, ref=("gate-b", "b1", 1))])  # before its admission: waits
    time_to_merge = time.monotonic()
    venue.send_as_b("gate-b", [b_record(ADMISSION, 1, key="ef" * 32), b_record(PASSAGE, 2, ref=("gate-b", "b1", 1))])
    wait_until(lambda: a.daemon.store.ledger.count("gate-b") == 2, 10)
    assert [r["kind"] for r in a.records() if r["origin"] == "gate-b"] == ["admission", "passage"]
    assert time.monotonic() - time_to_merge < 10


def test_a_gate_restarted_on_an_emptied_database_lets_in_none_of_its_old_tickets_and_no_copies_of_its_new(
    tmp_path: Path, issuer: SigningKey, tickets: Tickets, broker: Mosquitto, start_lane: Callable[..., Lane]
) -> None:
    """docs/technicians.md's advice after an SD-card failure: start with an empty ledger. The new
    database has a new epoch (its records never reuse a key), holds its admissions until it has
    its own past back from the venue, and then knows every ticket it let in before."""
    publish_roster(broker, ["gate-a", "gate-b"])
    configs = {g: gate_config(tmp_path, issuer, g, broker, recovery="wait", recovery_wait=60) for g in ("gate-a", "gate-b")}
    a, b = start_lane(configs["gate-a"]), start_lane(configs["gate-b"])
    for lane in (a, b):  # a new venue: each learns that the other's database is new too
        wait_until(lambda lane=lane: lane.daemon.sync.connected and not lane.daemon.loop.held, 15)
    old = [tickets.static() for _ in range(5)]
    for ticket in old:
        admitted(a, ticket_text=ticket)
    wait_until(lambda: b.daemon.store.ledger.count("gate-a") >= 10, 10)  # admissions and passages
    old_epoch = a.daemon.store.epoch

    a.stop()
    for suffix in ("", "-wal", "-shm"):
        Path(str(a.daemon.config.database) + suffix).unlink(missing_ok=True)
    a = start_lane(configs["gate-a"])
    assert a.daemon.store.epoch != old_epoch
    held = a.present(old[0], walks=None)
    if held["reason"] == "recovering":  # asked before the venue answered: nobody gets in meanwhile
        assert not held["accepted"] and a.pulses("unlock_in") == 0
    wait_until(lambda: a.daemon.sync.connected and not a.daemon.loop.held, 15)
    assert a.daemon.store.ledger.count("gate-a") >= 10, "its own past came back from gate-b"
    assert [a.present(t, walks=None)["reason"] for t in old] == ["already_used"] * 5
    assert a.pulses("unlock_in") == 0

    new = [tickets.static() for _ in range(5)]
    for ticket in new:
        admitted(a, ticket_text=ticket)
    wait_until(lambda: b.daemon.store.ledger.count("gate-a") >= 20, 10)
    assert [b.present(t, walks=None)["reason"] for t in new] == ["already_used"] * 5
    assert b.daemon.sync.counters["clashes"] == 0


def test_with_the_broker_away_a_new_database_admits_again_only_when_recovery_says_admit(
    tmp_path: Path, issuer: SigningKey, tickets: Tickets, broker: Mosquitto, start_lane: Callable[..., Lane]
) -> None:
    port = broker.port
    broker.stop()  # nobody to learn from
    data = gate_config(tmp_path, issuer, "gate-a", broker, recovery="admit", recovery_wait=0.5)
    data["sync"]["port"] = port
    a = start_lane(data)
    assert a.daemon.loop.held or not a.daemon.sync.recovering
    wait_until(lambda: not a.daemon.loop.held, 10)  # after recovery_wait, offline
    assert not a.daemon.sync.connected and a.present(tickets.static())["accepted"]


def test_a_different_record_under_a_held_key_is_a_clash_and_a_forged_copy_a_refusal(venue: Venue) -> None:
    """Two gates with one identity (an SD card cloned, key and database with it) both sign a
    seq 1. The first taken in stays; the second is reported as a clash although the lane does
    not verify records under keys it holds, as it does not for an identical copy. A copy
    signed by another key is a forgery: refused, not a clash."""
    a = venue.a
    first = b_record(ADMISSION, 1, key="aa" * 32)
    venue.send_as_b("gate-b", [first])
    wait_until(lambda: a.daemon.store.ledger.count("gate-b") == 1, 10)
    venue.send_as_b("gate-b", [first])  # the same again (QoS 1 redelivery, an overlapping answer): nothing
    venue.send_as_b("gate-b", [b_record(ADMISSION, 1, key="cc" * 32, signer=SigningKey(b"\x0c" * 32))])
    wait_until(lambda: venue.refusals().get("bad_signature", 0) == 1, 10)
    assert a.daemon.sync.counters["clashes"] == 0
    venue.send_as_b("gate-b", [b_record(ADMISSION, 1, key="bb" * 32)])  # the clone's own seq 1
    wait_until(lambda: a.daemon.sync.counters["clashes"] == 1, 10)
    assert [r["ticket_key"] for r in a.records() if r["origin"] == "gate-b"] == ["aa" * 32], "the first one stays"
    wait_until(lambda: (venue.monitor.last_json(ROOT + "gates/gate-a/status").get("sync") or {}).get("clashes") == 1, 10)
