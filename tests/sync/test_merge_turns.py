"""The sync client's side of the decision loop's turns (both ends in one process, no broker):
peers' records that come right after a merge wait a moment to go in one transaction, and the
loop is told when to come back for them — a record must never wait for the loop's idle wake-up."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from nacl.signing import SigningKey

from gate.config import SyncConfig
from gate.store import RosterRow, Store
from gate.store.ledger import ADMISSION, Record
from gate.sync import messages
from gate.sync.client import MERGE_INTERVAL, VenueSync
from gate.trust.records import sealer

VENUE = "test-venue"
PEER_KEY = SigningKey(b"\x07" * 32)
ROOT = f"gate/v2/{VENUE}/"


def peer_message(seq: int) -> SimpleNamespace:
    """gate-b's ledger message with its record ``seq``, as paho hands it to the client."""
    record = Record("gate-b", seq, ADMISSION, time.time(), ticket_key=f"{seq:064x}", format="gt1", direction="in", epoch="b1")
    payload = messages.encode_records("gate-b", [sealer(PEER_KEY, VENUE)(record)])
    return SimpleNamespace(topic=f"{ROOT}ledger/gate-b", payload=payload)


def test_a_record_that_comes_right_after_a_merge_is_taken_in_when_pump_says(tmp_path: Path) -> None:
    store = Store(tmp_path / "gate.db", "gate-a")
    with store.db.transaction():
        store.trust.replace_roster([RosterRow("gate-b", bytes(PEER_KEY.verify_key), None, ("in", "out"), False)])
    wakes: list[int] = []
    sync = VenueSync(SyncConfig(host="127.0.0.1", topic_root=ROOT), "gate-a", store, venue=VENUE,
                     wake=lambda: wakes.append(1), openers=0)
    try:
        sync._on_message(None, None, peer_message(1))  # paho's thread: the loop is woken
        assert wakes == [1]
        due = sync.pump(100.0)
        assert store.ledger.marks().get(("gate-b", "b1")) == 1

        sync._on_message(None, None, peer_message(2))  # right after: it waits for a batch, no wake-up posted
        assert wakes == [1]
        assert due is not None and due <= 100.0 + MERGE_INTERVAL, "the loop was not told to come back for what waits"
        assert sync.pump(100.0 + MERGE_INTERVAL / 2) is not None  # a turn before then (a scan) leaves it waiting
        assert store.ledger.marks().get(("gate-b", "b1")) == 1
        sync.pump(due)
        assert store.ledger.marks().get(("gate-b", "b1")) == 2
    finally:
        sync.openers.stop()
        store.close()
