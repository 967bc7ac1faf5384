"""The decision loop over a real store file and a real engine (GT1 tickets), with outputs that
write down every call and a clock moved by hand. Events are handed to ``_handle`` on the test
thread; where the loop's own body is the subject, ``run()`` runs on the test thread too, on a
queue filled beforehand and ending with the stop marker, so nothing waits for time."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from gate import trust
from gate.errors import Refused
from gate.lane.engine import DecisionEngine, EngineSettings, TrustSources
from gate.lane.loop import MAX_WAITING_SCANS, STALE_SCAN, Call, DecisionLoop, FireAlarm, Passage, Scan, SetMode, Tamper, WAKE
from gate.lane.turnstile import TurnstileController, TurnstileSettings
from gate.policy import GatePolicy
from gate.store import Store
from gate.store.ledger import Ledger, Record
from tests.support.lanes import EVENT, ManualClock, Tickets, ledger_rows, wait_until

ORIGIN = "lane-1"
SETTINGS = TurnstileSettings(unlock_mode="level", passage_timeout=8.0, deny_display=1.5)


class RecordingOutputs:
    """``LaneOutputs`` that writes every call into the shared journal and keeps the pins' state."""

    def __init__(self, journal: list[tuple[Any, ...]]) -> None:
        self.journal = journal
        self.state: dict[str, bool] = {}
        self.on_unlock: Callable[[str, bool], None] | None = None

    def set_unlock(self, direction: str, energized: bool) -> None:
        if self.on_unlock is not None:
            self.on_unlock(direction, energized)
        self.journal.append(("unlock", direction, energized))
        self.state[f"unlock_{direction}"] = energized

    def set_light(self, color: str, on: bool) -> None:
        self.journal.append(("light", color, on))
        self.state[color] = on

    def set_buzzer(self, on: bool) -> None:
        self.journal.append(("buzzer", on))
        self.state["buzzer"] = on

    def safe(self) -> None:
        self.journal.append(("safe",))
        self.state = {name: name == "red" for name in ("unlock_in", "unlock_out", "green", "red", "amber", "buzzer")}

    def on(self, name: str) -> bool:
        return self.state.get(name, False)

    def opened(self, direction: str = "in") -> int:
        """How many times the unlock relay was energized."""
        return self.journal.count(("unlock", direction, True))


class JournalLedger(Ledger):
    """The real ledger on the store's connection; each append is written into the journal first
    and fails with ``fail`` when it is set (a full disk)."""

    def __init__(self, store: Store, journal: list[tuple[Any, ...]]) -> None:
        super().__init__(store.db, ORIGIN, store.epoch)
        self.journal = journal
        self.fail: Exception | None = None

    def append(self, kind: str, at: float, **fields: Any) -> Record:
        self.journal.append(("append", kind))
        if self.fail is not None:
            raise self.fail
        return super().append(kind, at, **fields)


@dataclass
class Rig:
    loop: DecisionLoop
    store: Store
    ledger: JournalLedger
    outputs: RecordingOutputs
    clock: ManualClock
    journal: list[tuple[Any, ...]]
    events: list[tuple[str, dict[str, Any]]]

    def scan(self, text: str, direction: str = "in") -> dict[str, Any]:
        """Someone shows ``text`` at the reader; the decision the listeners heard."""
        self.loop._handle(Scan(text, "scanner", direction, self.clock.monotonic()))
        return self.heard("decision")[-1]

    def heard(self, kind: str) -> list[dict[str, Any]]:
        return [payload for k, payload in self.events if k == kind]

    def rows(self, kind: str | None = None) -> list[sqlite3.Row]:
        """The ledger as anyone reads it: a connection of its own."""
        return ledger_rows(self.store.db.path, kind)


def issuer_document(issuer: Any) -> trust.TrustDocument:
    body = {"format": "gt1", "issuers": [{"name": "test issuer", "public_key": bytes(issuer.verify_key).hex()}]}
    return trust.parse_document(json.dumps(body), "issuer.json")


@pytest.fixture
def make_rig(tmp_path: Path, issuer: Any) -> Iterator[Callable[..., Rig]]:
    stores: list[Store] = []

    def make(turnstile_class: type[TurnstileController] = TurnstileController) -> Rig:
        store = Store(tmp_path / f"gate-{len(stores)}.db", ORIGIN)
        stores.append(store)
        settings = EngineSettings(formats=("gt1",), gate_policy=GatePolicy(events=frozenset({EVENT})),
                                  gate_id=ORIGIN, venue="test-venue")
        engine = DecisionEngine(settings, TrustSources(documents=(issuer_document(issuer),)), store)
        journal: list[tuple[Any, ...]] = []
        events: list[tuple[str, dict[str, Any]]] = []
        outputs = RecordingOutputs(journal)
        clock = ManualClock()
        ledger = JournalLedger(store, journal)
        turnstile = turnstile_class(outputs, SETTINGS, clock)
        turnstile.start()
        loop = DecisionLoop(engine, ledger, turnstile, clock)
        loop.listeners.append(lambda kind, payload: events.append((kind, payload)))
        return Rig(loop, store, ledger, outputs, clock, journal, events)

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    return make_rig()


def test_an_accepted_ticket_is_on_disk_before_the_relay_moves(rig: Rig, tickets: Tickets) -> None:
    admissions_at_unlock: list[int] = []
    rig.outputs.on_unlock = lambda direction, on: admissions_at_unlock.append(len(rig.rows("admission"))) if on else None
    decision = rig.scan(tickets.static())
    assert decision["accepted"] and decision["reason"] == "ok"
    assert admissions_at_unlock == [1], "the relay moved once, with the admission already in the file"
    order = [entry for entry in rig.journal if entry[0] == "append" or entry == ("unlock", "in", True)]
    assert order == [("append", "admission"), ("unlock", "in", True)]
    (record,) = rig.heard("record")
    assert [kind for kind, _ in rig.events] == ["scan", "record", "decision"]
    assert record["kind"] == "admission" and record["seq"] == 1 and record["ticket_key"] == decision["ticket_key"]
    assert rig.outputs.on("unlock_in") and rig.outputs.on("green")


def test_the_same_ticket_again_is_already_used_and_the_relay_stays_locked(rig: Rig, tickets: Tickets) -> None:
    ticket = tickets.static()
    assert rig.scan(ticket)["accepted"]
    rig.loop._handle(Passage("in"))
    decision = rig.scan(ticket)
    assert not decision["accepted"] and decision["reason"] == "already_used"
    assert rig.outputs.opened() == 1 and rig.outputs.on("red") and not rig.outputs.on("unlock_in")
    assert [row["kind"] for row in rig.rows()] == ["admission", "passage"]


def test_a_scan_while_someone_is_passing_is_busy_and_records_nothing(rig: Rig, tickets: Tickets) -> None:
    assert rig.scan(tickets.static())["accepted"]
    decision = rig.scan(tickets.static())
    assert decision["reason"] == "busy" and not decision["accepted"]
    assert rig.outputs.opened() == 1 and len(rig.rows("admission")) == 1
    assert rig.outputs.on("unlock_in"), "the person admitted first can still pass"


def test_a_locked_lane_refuses_every_ticket_with_gate_closed(rig: Rig, tickets: Tickets) -> None:
    rig.loop._handle(SetMode("locked"))
    assert rig.heard("mode") == [{"mode": "locked"}]
    decision = rig.scan(tickets.static())
    assert decision["reason"] == "gate_closed"
    assert rig.outputs.opened() == 0 and rig.rows() == [] and rig.outputs.on("red")


def test_a_fire_alarm_reverts_the_waiting_admission_and_refuses_scans(rig: Rig, tickets: Tickets) -> None:
    ticket = tickets.static()
    assert rig.scan(ticket)["accepted"]
    rig.loop._handle(FireAlarm(True))
    admission, revert = rig.rows()
    assert revert["kind"] == "revert" and (revert["ref_origin"], revert["ref_seq"]) == (ORIGIN, admission["seq"])
    assert json.loads(revert["details"]) == {"why": "fire alarm"}
    assert rig.heard("alarm") == [{"alarm": "fire", "active": True}]
    assert not rig.outputs.on("unlock_in") and rig.outputs.on("green") and rig.outputs.on("amber")
    assert rig.scan(tickets.static())["reason"] == "emergency"
    rig.loop._handle(FireAlarm(False))
    assert rig.scan(ticket)["accepted"], "the interrupted admission gave the ticket back"


def test_a_passage_is_recorded_against_its_admission(rig: Rig, tickets: Tickets) -> None:
    decision = rig.scan(tickets.static())
    rig.loop._handle(Passage("in"))
    admission, passage = rig.rows()
    assert passage["kind"] == "passage" and (passage["ref_origin"], passage["ref_seq"]) == (ORIGIN, admission["seq"])
    assert passage["ticket_key"] == admission["ticket_key"] == decision["ticket_key"]
    assert not rig.outputs.on("unlock_in") and not rig.outputs.on("green")


def test_a_passage_without_a_scan_is_recorded_as_forced_and_raises_an_alarm(rig: Rig) -> None:
    rig.loop._handle(Passage("in"))
    assert [row["kind"] for row in rig.rows()] == ["forced_passage"]
    assert rig.heard("alarm") == [{"alarm": "forced_passage", "direction": "in"}]


def test_no_passage_within_the_timeout_reverts_the_admission(rig: Rig, tickets: Tickets) -> None:
    """The loop's own body on the test thread: the scan, a turn that moves the clock past the
    timeout, then the stop marker."""
    ticket = tickets.static()
    rig.loop.scan(ticket, "scanner")
    rig.loop.post(Call(lambda: rig.clock.advance(SETTINGS.passage_timeout + 0.1), threading.Event(), []))
    rig.loop.stop()
    rig.loop.run()
    admission, revert = rig.rows()
    assert revert["kind"] == "revert" and (revert["ref_origin"], revert["ref_seq"]) == (ORIGIN, admission["seq"])
    assert json.loads(revert["details"]) == {"why": "no passage within timeout"}
    assert rig.outputs.opened() == 1 and not rig.outputs.on("unlock_in")
    assert rig.scan(ticket)["accepted"], "nobody passed: the ticket is still good"


def test_switching_to_free_mode_reverts_the_waiting_admission_and_opens_every_relay(rig: Rig, tickets: Tickets) -> None:
    assert rig.scan(tickets.static())["accepted"]
    rig.loop._handle(SetMode("free"))
    assert [row["kind"] for row in rig.rows()] == ["admission", "revert"]
    assert rig.outputs.on("unlock_in") and rig.outputs.on("unlock_out") and rig.outputs.on("green")
    decision = rig.scan(tickets.static())
    assert decision["accepted"] and decision["details"]["mode"] == "free"
    assert len(rig.rows()) == 2, "nothing is recorded while the lane is open anyway"


def test_an_error_inside_the_engine_denies_with_error_and_never_opens(rig: Rig, tickets: Tickets, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise sqlite3.OperationalError("database disk image is malformed")

    monkeypatch.setattr(rig.store, "ticket_state", broken)
    decision = rig.scan(tickets.static())
    assert not decision["accepted"] and decision["reason"] == "error"
    assert rig.outputs.opened() == 0 and rig.outputs.on("red") and rig.rows() == []


def test_a_failed_ledger_write_denies_with_error_and_never_opens(rig: Rig, tickets: Tickets) -> None:
    rig.ledger.fail = sqlite3.OperationalError("disk I/O error")
    decision = rig.scan(tickets.static())
    assert not decision["accepted"] and decision["reason"] == "error"
    assert ("append", "admission") in rig.journal, "the write was tried"
    assert rig.outputs.opened() == 0 and rig.outputs.on("red")
    assert rig.rows() == [] and rig.heard("record") == []


def test_open_once_records_a_ticketless_admission_by_command_and_opens(rig: Rig) -> None:
    assert rig.loop.open_once("in", "nonce 1234") == "opened once (in)"
    (admission,) = rig.rows()
    assert admission["kind"] == "admission" and admission["ticket_key"] is None
    assert json.loads(admission["details"]) == {"by": "command", "note": "nonce 1234"}
    assert rig.journal.index(("append", "admission")) < rig.journal.index(("unlock", "in", True))
    assert rig.outputs.on("unlock_in") and rig.outputs.on("green")
    rig.loop._handle(Passage("in"))
    assert rig.rows()[-1]["kind"] == "passage" and rig.rows()[-1]["ref_seq"] == admission["seq"]


def test_open_once_is_refused_while_someone_is_passing(rig: Rig, tickets: Tickets) -> None:
    assert rig.scan(tickets.static())["accepted"]
    with pytest.raises(Refused, match="busy"):
        rig.loop.open_once("in", "")
    assert len(rig.rows("admission")) == 1 and rig.outputs.opened() == 1


def test_open_once_is_refused_during_a_fire_alarm(rig: Rig) -> None:
    rig.loop._handle(FireAlarm(True))
    with pytest.raises(Refused, match="fire alarm"):
        rig.loop.open_once("in", "")
    assert rig.rows() == [] and rig.outputs.opened() == 0


def test_open_once_with_a_failed_ledger_write_is_refused_and_never_opens(rig: Rig) -> None:
    rig.ledger.fail = sqlite3.OperationalError("disk I/O error")
    with pytest.raises(Refused, match="could not record"):
        rig.loop.open_once("in", "")
    assert rig.outputs.opened() == 0 and not rig.loop.turnstile.busy


def test_a_tamper_contact_raises_an_alarm_and_is_counted(rig: Rig) -> None:
    rig.loop._handle(Tamper(True))
    rig.loop._handle(Tamper(False))
    assert rig.heard("alarm") == [{"alarm": "tamper", "active": True}, {"alarm": "tamper", "active": False}]
    assert rig.loop.counters["tamper"] == 1


class BrokenTurnstile(TurnstileController):
    def tick(self) -> Any:
        raise RuntimeError("timer bug")


def test_a_crash_inside_the_loop_leaves_the_outputs_safe(make_rig: Callable[..., Rig], tickets: Tickets) -> None:
    """A scan opens the relay, then the turn's tick raises: the loop must not leave it open."""
    rig = make_rig(BrokenTurnstile)
    rig.loop.scan(tickets.static(), "scanner")
    with pytest.raises(RuntimeError, match="timer bug"):
        rig.loop.run()
    assert rig.outputs.opened() == 1, "the scan was decided and opened before the crash"
    assert rig.journal[-1] == ("safe",)
    assert not rig.outputs.on("unlock_in") and rig.outputs.on("red") and not rig.outputs.on("green")
    assert isinstance(rig.loop.crashed, RuntimeError)


def test_the_loop_thread_decides_answers_calls_and_falls_safe_when_stopped(rig: Rig, tickets: Tickets) -> None:
    rig.loop.start()
    try:
        rig.loop.scan(tickets.static(), "scanner")
        assert rig.loop.call(lambda: rig.loop.turnstile.busy, timeout=60.0) is True  # the scan was handled first
    finally:
        rig.loop.stop(timeout=60.0)
    assert not rig.loop.alive and rig.loop.crashed is None
    assert rig.heard("decision")[0]["accepted"] and len(rig.rows("admission")) == 1
    assert rig.journal[-1] == ("safe",) and not rig.outputs.on("unlock_in")


def test_a_failing_call_does_not_stop_the_lane(rig: Rig, tickets: Tickets) -> None:
    def reload() -> None:
        raise Refused("trust not reloaded, previous kept")

    rig.loop.post(Call(reload, threading.Event(), []))
    rig.loop.scan(tickets.static(), "scanner")
    rig.loop.stop()
    rig.loop.run()
    assert rig.loop.crashed is None
    assert rig.heard("decision") and rig.heard("decision")[0]["accepted"]


def test_a_scanner_flood_waits_in_a_short_line_and_never_holds_up_a_passage(rig: Rig, tickets: Tickets) -> None:
    rig.scan(tickets.static())  # admitted: the lane waits for this person to pass
    for i in range(10_000):  # then a reader floods the lane (a scanner in a loop, a held-down key)
        rig.loop.scan(f"junk line {i}", "scanner")
    real = tickets.static()
    rig.loop.scan(real, "scanner")
    rig.loop.passage("in")  # the admitted person walks through while the flood waits
    rig.loop.start()
    try:
        wait_until(lambda: len(rig.heard("decision")) == 1 + MAX_WAITING_SCANS, 60)
    finally:
        rig.loop.stop(timeout=60.0)
    kinds = [(k, p.get("kind") or p.get("reason")) for k, p in rig.events if k in ("decision", "record")]
    passage_at = kinds.index(("record", "passage"))
    assert sum(1 for k, _ in kinds[:passage_at] if k == "decision") <= 2, "the passage waited behind the flood"
    decisions = rig.heard("decision")
    assert decisions[-1]["accepted"], "the real ticket after the flood got in"
    assert rig.loop.scans_dropped == 10_001 - MAX_WAITING_SCANS
    assert rig.loop.counters["scans_dropped"] == rig.loop.scans_dropped  # and the status says so
    assert len(rig.rows("admission")) == 2 and len(rig.rows("passage")) == 1


def test_a_scan_goes_before_the_turns_the_bus_asked_for(rig: Rig, tickets: Tickets) -> None:
    """The venue bus asks for turns (a catch-up answer under way: each a few milliseconds of
    work); a scan that comes meanwhile is decided at the next turn, not behind all of them."""
    decided_at_turn: list[int] = []
    rig.loop.after_turn.append(lambda: decided_at_turn.append(len(rig.heard("decision"))))
    for _ in range(5):
        rig.loop.post(WAKE)
    rig.loop.scan(tickets.static(), "scanner")
    rig.loop.stop()
    rig.loop.run()
    assert decided_at_turn[0] == 1, f"the scan waited behind the bus's turns: decisions after each turn {decided_at_turn}"
    assert rig.heard("decision")[0]["accepted"]


def test_a_scan_that_waited_too_long_in_line_is_refused_busy_undecided(rig: Rig, tickets: Tickets) -> None:
    rig.loop.scan(tickets.static(), "scanner")
    rig.clock.advance(STALE_SCAN + 0.5)  # the loop was held up (a slow disk, a long merge)
    rig.loop.stop()
    rig.loop.run()
    decision = rig.heard("decision")[0]
    assert not decision["accepted"] and decision["reason"] == "busy" and "in line" in decision["details"]["detail"]
    assert rig.outputs.opened() == 0 and rig.rows("admission") == []
