"""The store on real SQLite files: the ledger's numbering and durability, what a decision reads
about a ticket (entries, exits, revocations, used proofs), merging peers' records, bundles and
deltas, trust documents, small state, and opening the file read-only."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Iterator

import pytest

from gate.decision import revocation_prefix, ticket_key
from gate.errors import SignedError
from gate.store import Held, HeldMessage, Store, StoreError
from gate.store.db import SCHEMA_VERSION, inspect
from gate.store.ledger import ADMISSION, PASSAGE, REVERT, Record
from tests.support.lanes import wait_until

ORIGIN, PEER = "lane-1", "lane-2"
EPOCH = "e1"  # the peers' epoch in these tests
KEY, OTHER = ticket_key("gt1", b"ticket-1"), ticket_key("gt1", b"ticket-2")
AT = 1_780_000_000.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "gate.db"


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    store = Store(path, ORIGIN)
    yield store
    store.close()


def admission(origin: str, seq: int, key: str = KEY, **details: int) -> Record:
    """A peer's entry admission; ``known``/``limit`` as its gate saw them."""
    return Record(origin, seq, ADMISSION, AT + seq, ticket_key=key, format="gt1", direction="in", details=details or None,
                  epoch=EPOCH)


def settling(kind: str, origin: str, seq: int, ref_seq: int, ref_origin: str | None = None) -> Record:
    """A peer's passage or revert of its admission ``ref_seq`` (or, forged, another gate's)."""
    return Record(origin, seq, kind, AT, ticket_key=KEY, direction="in", ref_origin=ref_origin or origin, ref_seq=ref_seq,
                  epoch=EPOCH, ref_epoch=EPOCH)


def held(version: int, base: int = 0) -> HeldMessage:
    return HeldMessage(version, base, AT, f"sha-{version}", 0, 0, 0)


def accept(_: Held) -> None:
    pass


# --- the ledger -------------------------------------------------------------------------------


def test_own_records_are_numbered_one_two_three_and_survive_a_reopen(path: Path) -> None:
    store = Store(path, ORIGIN)
    seqs = [store.ledger.append(ADMISSION, AT + i, ticket_key=KEY, direction="in", details={"n": i}).seq for i in range(3)]
    store.close()
    assert seqs == [1, 2, 3]
    reopened = Store(path, ORIGIN)
    try:
        assert [(r.seq, r.details) for r in reopened.ledger.records(ORIGIN)] == [(1, {"n": 0}), (2, {"n": 1}), (3, {"n": 2})]
        assert reopened.ledger.append(PASSAGE, AT).seq == 4
    finally:
        reopened.close()


def test_each_origin_numbers_its_own_records(store: Store, path: Path) -> None:
    store.ledger.merge([admission(PEER, 1), admission(PEER, 2)], AT)
    other = Store(path, "lane-3")  # another writer on the same file (gate verify beside the lane)
    try:
        assert other.ledger.append(PASSAGE, AT).seq == 1
    finally:
        other.close()
    assert store.ledger.append(PASSAGE, AT).seq == 1
    assert store.ledger.append(PASSAGE, AT).seq == 2


def test_an_unknown_record_kind_is_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        store.ledger.append("teleport", AT)
    assert store.ledger.count() == 0


def test_entries_and_exits_count_admissions_and_leave_out_reverted_ones(store: Store) -> None:
    first = store.ledger.append(ADMISSION, AT, ticket_key=KEY, direction="in")
    store.ledger.append(PASSAGE, AT, ticket_key=KEY, direction="in", ref=first.key)
    store.ledger.append(ADMISSION, AT, ticket_key=KEY, direction="out")
    second = store.ledger.append(ADMISSION, AT, ticket_key=KEY, direction="in")
    store.ledger.append(REVERT, AT, ticket_key=KEY, direction="in", ref=second.key)
    store.ledger.merge([admission(PEER, 1)], AT)
    state = store.ticket_state(KEY)
    assert (state.entries, state.exits, state.revoked, state.proof_used) == (2, 1, False, False)
    assert store.ticket_state(OTHER).entries == 0


def test_a_ticket_revoked_at_this_gate_is_revoked_and_others_are_not(store: Store) -> None:
    assert store.revocations.revoke([(KEY, "lost")], AT) == 1
    assert store.revocations.revoke([(KEY, "lost again")], AT) == 0, "already revoked"
    assert store.ticket_state(KEY).revoked and store.revocations.is_revoked(KEY)
    assert not store.ticket_state(OTHER).revoked


def test_a_bundle_revokes_by_key_prefix(store: Store) -> None:
    seen: list[Held] = []
    store.install_bundle(revocation_prefix(KEY), [], held(1), AT, check=seen.append)
    assert seen == [Held()], "the check saw what was held before"
    assert store.ticket_state(KEY).revoked and not store.ticket_state(OTHER).revoked
    assert store.trust.held().bundle_version == 1


def test_a_delta_restores_a_ticket_the_bundle_revoked_until_the_next_bundle(store: Store) -> None:
    store.install_bundle(revocation_prefix(KEY), [], held(1), AT, check=accept)
    store.install_delta(revocation_prefix(OTHER), revocation_prefix(KEY), held(1, base=1), AT, check=accept)
    assert not store.ticket_state(KEY).revoked and store.ticket_state(OTHER).revoked
    assert store.trust.held().delta_version == 1
    store.install_bundle(revocation_prefix(KEY), [], held(2), AT, check=accept)
    assert store.ticket_state(KEY).revoked, "a new bundle drops the old bundle's delta"
    assert not store.ticket_state(OTHER).revoked and store.trust.held().delta_version == 0


def test_a_refused_delta_changes_nothing(store: Store) -> None:
    store.install_bundle(revocation_prefix(KEY), [], held(1), AT, check=accept)

    def older(_: Held) -> None:
        raise SignedError("older", "delta for an older bundle")

    with pytest.raises(SignedError):
        store.install_delta(b"", revocation_prefix(KEY), held(1, base=0), AT, check=older)
    assert store.ticket_state(KEY).revoked and store.trust.held().delta_version == 0


def test_a_proof_is_used_once_admitted_and_free_again_after_its_revert(store: Store) -> None:
    record = store.ledger.append(ADMISSION, AT, ticket_key=KEY, direction="in", proof_key="proof-1")
    assert store.ticket_state(KEY, "proof-1").proof_used and store.ledger.proof_used("proof-1")
    assert not store.ticket_state(KEY, "proof-2").proof_used
    store.ledger.append(REVERT, AT, ticket_key=KEY, ref=record.key)
    assert not store.ticket_state(KEY, "proof-1").proof_used and not store.ledger.proof_used("proof-1")


# --- merging peers' records -------------------------------------------------------------------


def test_merging_the_same_records_again_adds_nothing_and_counts_duplicates(store: Store) -> None:
    records = [admission(PEER, 1), settling(PASSAGE, PEER, 2, 1)]
    assert store.ledger.merge(records, AT).added == records
    again = store.ledger.merge(reversed(records), AT)
    assert (again.added, again.duplicates, again.clashes) == ([], 2, [])
    assert store.ledger.count(PEER) == 2 and store.ledger.records(PEER) == records


def test_a_different_record_under_a_held_key_is_a_clash_and_the_held_one_stays(store: Store) -> None:
    original = admission(PEER, 1)
    store.ledger.merge([original], AT)
    impostor = Record(PEER, 1, ADMISSION, AT + 99, ticket_key=OTHER, direction="in", epoch=EPOCH)
    result = store.ledger.merge([impostor], AT)
    assert result.clashes == [(original, impostor)] and result.added == [] and result.duplicates == 0
    assert store.ledger.record(PEER, EPOCH, 1) == original


def test_a_single_entry_ticket_admitted_at_two_cut_off_gates_is_a_conflict(store: Store) -> None:
    store.ledger.append(ADMISSION, AT, ticket_key=KEY, direction="in", details={"known": 0, "limit": 1})
    (conflict,) = store.ledger.merge([admission(PEER, 1, known=0, limit=1)], AT + 5).conflicts
    assert (conflict.ticket_key, conflict.origin, conflict.seq, conflict.known, conflict.found) == (KEY, PEER, 1, 0, 1)
    assert store.ledger.conflict_count() == 1


@pytest.mark.parametrize("details", [{"known": 1, "limit": 2}, {"known": 0, "limit": 0}, {}],
                         ids=["within-limit", "unlimited", "no-details"])
def test_a_second_admission_the_ticket_allows_is_no_conflict(store: Store, details: dict[str, int]) -> None:
    store.ledger.append(ADMISSION, AT, ticket_key=KEY, direction="in")
    assert store.ledger.merge([admission(PEER, 1, **details)], AT).conflicts == []
    assert store.ledger.conflict_count() == 0


def test_a_reverted_admission_does_not_make_a_conflict(store: Store) -> None:
    mine = store.ledger.append(ADMISSION, AT, ticket_key=KEY, direction="in")
    store.ledger.append(REVERT, AT, ticket_key=KEY, ref=mine.key)
    assert store.ledger.merge([admission(PEER, 1, known=0, limit=1)], AT).conflicts == []


def test_a_record_with_this_gates_own_origin_and_epoch_is_refused(store: Store) -> None:
    mine = Record(ORIGIN, 1, ADMISSION, AT, ticket_key=KEY, direction="in", epoch=store.epoch)
    result = store.ledger.merge([admission(PEER, 1), mine], AT)
    assert [r.origin for r in result.added] == [PEER] and [r for r, _ in result.refused] == [mine]
    assert store.ledger.count(ORIGIN) == 0


def test_this_gates_records_of_an_earlier_epoch_come_back_in(store: Store) -> None:
    """An emptied gate asks the venue for its own past: its origin, another epoch."""
    past = Record(ORIGIN, 1, ADMISSION, AT, ticket_key=KEY, direction="in", epoch="old")
    assert store.ledger.merge([past], AT).added == [past]
    assert store.ticket_state(KEY).entries == 1


def test_records_beyond_a_gap_wait_until_it_is_filled(store: Store) -> None:
    for _ in range(3):
        store.ledger.append(PASSAGE, AT)
    result = store.ledger.merge([admission(PEER, 1), admission(PEER, 2), admission(PEER, 4), admission("lane-3", 2)], AT)
    assert result.gaps == {(PEER, EPOCH): 3, ("lane-3", EPOCH): 1}
    assert store.ledger.marks() == {(ORIGIN, store.epoch): 3, (PEER, EPOCH): 2}
    store.ledger.merge([admission(PEER, 3), admission(PEER, 4)], AT)
    assert store.ledger.marks()[(PEER, EPOCH)] == 4


def test_a_database_has_its_own_epoch_and_a_new_one_gets_another(tmp_path: Path) -> None:
    first, second = Store(tmp_path / "a.db", ORIGIN), Store(tmp_path / "b.db", ORIGIN)
    try:
        assert first.created and first.epoch and first.epoch != second.epoch
        record = first.ledger.append(ADMISSION, AT, ticket_key=KEY, direction="in")
        assert record.key == (ORIGIN, first.epoch, 1)
    finally:
        first.close()
        second.close()
    again = Store(tmp_path / "a.db", ORIGIN)
    try:
        assert not again.created and again.epoch == first.epoch
    finally:
        again.close()


# --- the venue's causality rules (a stolen gate's credentials) ------------------------------------


def test_a_passage_or_revert_of_another_gates_admission_is_refused(store: Store) -> None:
    store.ledger.merge([admission(PEER, 1)], AT)
    forged = settling(REVERT, "lane-3", 1, 1, ref_origin=PEER)
    result = store.ledger.merge([forged], AT)
    assert result.added == [] and "its own gate" in result.refused[0][1]
    assert store.ticket_state(KEY).entries == 1, "the admission stands"


def test_a_revert_of_an_admission_not_held_is_refused(store: Store) -> None:
    result = store.ledger.merge([admission(PEER, 1, key=OTHER), settling(REVERT, PEER, 2, 7)], AT)
    assert [r.seq for r in result.added] == [1] and "no admission held" in result.refused[0][1]
    assert result.gaps == {(PEER, EPOCH): 2}, "the stream stops at the refused record"


def test_an_admission_is_settled_once(store: Store) -> None:
    store.ledger.merge([admission(PEER, 1), settling(PASSAGE, PEER, 2, 1)], AT)
    result = store.ledger.merge([settling(REVERT, PEER, 3, 1)], AT)
    assert result.added == [] and "already settled" in result.refused[0][1]
    assert store.ticket_state(KEY).entries == 1, "a revert after the passage gives nothing back"


# --- bundles and trust documents --------------------------------------------------------------


def test_a_bundle_refused_by_its_check_leaves_everything_as_it_was(store: Store) -> None:
    store.install_bundle(revocation_prefix(KEY), [("bundle/a", "gt1", '{"v": 1}')], held(1), AT, check=accept)
    before = (store.trust.documents(), store.trust.held())

    def newer_one_held(_: Held) -> None:
        raise SignedError("older", "bundle version 2 is not newer than the one held (3)")

    with pytest.raises(SignedError):
        store.install_bundle(revocation_prefix(OTHER), [("bundle/b", "gt1", '{"v": 2}')], held(2), AT, check=newer_one_held)
    assert store.ticket_state(KEY).revoked and not store.ticket_state(OTHER).revoked
    assert (store.trust.documents(), store.trust.held()) == before


def test_trust_documents_are_stored_replaced_and_removed_and_each_change_is_seen(store: Store) -> None:
    generations = [store.trust.generation()]
    store.trust.store_document("a.json", "gt1", '{"v": 1}', AT)
    generations.append(store.trust.generation())
    store.trust.store_document("a.json", "gt1", '{"v": 2}', AT)
    generations.append(store.trust.generation())
    assert store.trust.documents() == [("a.json", '{"v": 2}')]
    assert store.trust.remove_document("a.json") and not store.trust.remove_document("a.json")
    generations.append(store.trust.generation())
    assert store.trust.documents() == []
    assert all(a != b for a, b in zip(generations, generations[1:])), f"each change is a new generation: {generations}"


def test_a_new_bundle_with_as_many_documents_changes_the_trust_generation(store: Store) -> None:
    store.trust.store_document("local.json", "gt1", '{"v": 0}', AT)
    store.install_bundle(b"", [("bundle/keys", "gt1", '{"v": 1}')], held(1), AT, check=accept)
    before = store.trust.generation()
    store.install_bundle(b"", [("bundle/keys", "gt1", '{"v": 2}')], held(2), AT, check=accept)
    assert store.trust.documents()[0] == ("bundle/keys", '{"v": 2}')
    assert store.trust.generation() != before


# --- small state ------------------------------------------------------------------------------


def test_state_values_outlive_a_reopen(path: Path) -> None:
    store = Store(path, ORIGIN)
    assert store.state.get("published") == 0 and store.state.get("published", -1) == -1
    store.state.set("published", 42)
    store.close()
    reopened = Store(path, ORIGIN)
    try:
        assert reopened.state.get("published") == 42
    finally:
        reopened.close()


def test_a_replayed_command_nonce_is_refused_and_old_nonces_are_forgotten(store: Store) -> None:
    assert store.state.remember_command("n1", issued_at=100.0, now=100.0, forget_before=0.0)
    assert not store.state.remember_command("n1", issued_at=100.0, now=101.0, forget_before=0.0), "a replay"
    assert store.state.remember_command("n2", issued_at=500.0, now=500.0, forget_before=200.0)
    count = store.db.conn.execute("SELECT COUNT(*) FROM command_nonces").fetchone()[0]
    assert count == 1, "n1 was issued before forget_before and is dropped"


# --- opening the file -------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, SCHEMA_VERSION - 1, SCHEMA_VERSION + 1])
def test_a_read_only_store_refuses_a_database_of_another_schema(path: Path, version: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE ledger (x)")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=f"schema {version}"):
        Store(path, ORIGIN, read_only=True)


def test_a_writable_store_refuses_a_newer_schema(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path, ORIGIN)


def test_a_read_only_store_sees_what_another_connection_writes_and_writes_nothing(store: Store, path: Path) -> None:
    store.ledger.append(ADMISSION, AT, ticket_key=KEY, direction="in")
    reader = Store(path, ORIGIN, read_only=True)
    try:
        assert reader.ledger.count() == 1 and reader.ticket_state(KEY).entries == 1
        store.ledger.append(ADMISSION, AT, ticket_key=KEY, direction="in")
        assert reader.ledger.count() == 2 and reader.ticket_state(KEY).entries == 2
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.ledger.append(PASSAGE, AT)
    finally:
        reader.close()
    assert store.ledger.count() == 2


def test_inspect_reports_integrity_and_the_number_of_records(store: Store, path: Path) -> None:
    store.ledger.append(ADMISSION, AT)
    store.ledger.merge([admission(PEER, 1)], AT)
    assert inspect(path) == ([], 2)


def test_inspect_of_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all, just bytes" * 200)
    with pytest.raises(StoreError):
        inspect(junk)


def test_the_lanes_wal_is_checkpointed_by_a_thread_of_its_own(tmp_path: Path) -> None:
    """With the checkpointer, the loop's own commits never checkpoint (no fsync of the database
    file inside a scan's commit), and what they write still reaches the database file itself."""
    store = Store(tmp_path / "gate.db", "lane-1")
    try:
        store.db.start_checkpointer(interval=0.05)
        assert store.db.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for i in range(300):
            store.ledger.append("admission", 1.0 + i, ticket_key=f"{i:064x}", format="gt1", direction="in")

        def in_the_file() -> int:  # the database file alone, its WAL left out
            with closing(sqlite3.connect(f"file:{tmp_path / 'gate.db'}?immutable=1", uri=True)) as conn:
                return int(conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])

        wait_until(lambda: in_the_file() == 300, 10)
    finally:
        store.close()
