"""Issue 22: a gate restarted with its database files deleted lets in none of its old tickets and
no copies of its new tickets at the other gate. Real processes and a real broker: two ``gate run``
lanes (gate-a, gate-b) on a mosquitto with the shipped ACL, both on the admin's signed roster,
with the shipped default ``[sync] recovery = "wait"``; driven through their pty scanners and
control sockets and watched on the retained status topic, as docs/technicians.md's "A lane on
an empty database" has a technician do it. (tests/sync/test_ledger_v2.py has the same story with
in-process daemons.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from hwsim.broker import mosquitto_binary
from nacl.signing import SigningKey

from tests.support.lanes import Tickets, ledger_rows
from tests.support.processes import GateProcess, ProcessVenue

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed (scripts/test installs it)")

GATES = ("gate-a", "gate-b")
OLD, NEW = 5, 5  # tickets admitted at gate-a before and after its database is emptied


@pytest.fixture
def venue(tmp_path: Path, issuer: SigningKey) -> Iterator[ProcessVenue]:
    venue = ProcessVenue(tmp_path, issuer, GATES)
    yield venue
    venue.close()


def deciding(status: dict[str, Any]) -> bool:
    """Online, holding the admin's roster, and not holding admissions (recovered)."""
    return (status.get("state") == "online" and status.get("bundle", {}).get("version", 0) >= 1
            and not status.get("recovering") and not status.get("held"))


def key(record: dict[str, Any]) -> tuple[str, str, int]:
    return record["origin"], record["epoch"], record["seq"]


def wait_held(gate: GateProcess, keys: list[tuple[str, str, int]], start: int) -> None:
    """Until ``gate`` has merged every one of these peer records (its control socket says so)."""
    for wanted in keys:
        gate.wait_event(lambda e, w=wanted: e["event"] == "peer_records" and any(key(r) == w for r in e["records"]),
                        f"peer record {wanted}", start)


def test_a_gate_restarted_with_its_database_deleted_lets_in_no_old_ticket_and_no_copy_of_a_new_one(
    venue: ProcessVenue, tickets: Tickets
) -> None:
    a, b = venue["gate-a"], venue["gate-b"]
    with venue.logs_on_failure():
        for gate in (a, b):
            gate.start()
        for name in GATES:  # a new venue: each gate learns that the other's database is new too
            venue.wait_status(name, deciding, "online, holding the roster, deciding")

        # gate-a lets OLD people in; gate-b holds every record of it.
        old = [tickets.static() for _ in range(OLD)]
        b_mark = b.mark()
        before = [a.admit(ticket) for ticket in old]
        old_keys = [key(record) for _decision, admission, passage in before for record in (admission, passage)]
        old_epoch = old_keys[0][1]
        assert {epoch for _origin, epoch, _seq in old_keys} == {old_epoch}
        wait_held(b, old_keys, b_mark)

        # The card fails: stop the lane, delete its database, start it again (docs/technicians.md).
        status_mark = venue.mark()
        assert a.stop() == 0
        venue.wait_status("gate-a", lambda s: s.get("state") == "offline", "offline", status_mark)
        restart_mark = venue.mark()  # every gate-a status from here on is the new process's
        assert a.database.exists()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{a.database}{suffix}").unlink(missing_ok=True)
        a.start()

        # At once: nobody gets in with an old ticket, whether the lane still recovers or not.
        early = [a.show(ticket) for ticket in old]
        assert not any(d["accepted"] for d in early), early
        assert {d["reason"] for d in early} <= {"recovering", "already_used"}, early
        first = venue.wait_status("gate-a", lambda s: s.get("state") == "online", "online", restart_mark)
        assert first["recovering"] and first["held"], f"the emptied database did not hold admissions: {first}"
        recovered = venue.wait_status("gate-a", deciding, "recovery over", restart_mark)
        print(f"gate-a on its emptied database: early scans {[d['reason'] for d in early]}; "
              f"first status recovering={first['recovering']!r}; recovered, sync={recovered['sync']}")

        # Recovered: gate-a holds its own past again, and every old ticket is already used.
        held = {(r["origin"], r["epoch"], r["seq"]) for r in ledger_rows(a.database)}
        assert set(old_keys) <= held, "gate-a's own past did not come back from gate-b"
        again = [a.show(ticket) for ticket in old]
        assert [d["reason"] for d in again] == ["already_used"] * OLD, again
        assert a.unlocks() == 0, "the entry relay moved for an old ticket"

        # New tickets at gate-a: a new epoch; copies of them at gate-b are already used.
        new = [tickets.static() for _ in range(NEW)]
        b_mark = b.mark()
        after = [a.admit(ticket) for ticket in new]
        new_keys = [key(record) for _decision, admission, passage in after for record in (admission, passage)]
        new_epochs = {epoch for _origin, epoch, _seq in new_keys}
        assert len(new_epochs) == 1 and old_epoch not in new_epochs, (old_epoch, new_epochs)
        assert [seq for _origin, _epoch, seq in new_keys] == list(range(1, 2 * NEW + 1)), "the new epoch numbers from 1"
        assert a.unlocks() == NEW
        wait_held(b, new_keys, b_mark)
        copies_mark = b.mark()
        copies = [b.show(ticket) for ticket in new]
        assert [d["reason"] for d in copies] == ["already_used"] * NEW, copies
        assert b.unlocks(copies_mark) == 0, "gate-b's entry relay moved for a copy"

        # Neither gate found a clash (a record under a key it held already), a conflict or a refusal.
        everything = 2 * (OLD + NEW)  # gate-a's admissions and passages, both epochs
        b_status = venue.wait_status("gate-b", lambda s: s.get("sync", {}).get("merged", 0) >= everything,
                                     f"{everything} records merged", restart_mark)
        assert (b_status["sync"]["clashes"], b_status["conflicts"], b_status["sync"]["refused"]) == (0, 0, 0), b_status
        a_status = venue.statuses("gate-a", restart_mark)[-1]
        assert (a_status["sync"]["clashes"], a_status["conflicts"], a_status["sync"]["refused"]) == (0, 0, 0), a_status

        assert [gate.stop() for gate in (a, b)] == [0, 0]
