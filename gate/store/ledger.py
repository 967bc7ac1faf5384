"""The ledger: every admission, revert, passage and exit, durable in one SQLite file.

Records are facts keyed by ``(origin, seq)``; a gate numbers its own records without gaps. A
record is on disk (WAL, ``synchronous=FULL``) before ``append`` returns, so the relay never
moves for an admission that a power cut could forget. One long-lived connection is owned by the
decision loop; other processes (``gate revoke``) may write revocations alongside it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

if TYPE_CHECKING:  # imported only to migrate: sqlite-utils imports numpy (0.1 s here, more on a Pi)
    import sqlite_utils

from gate import trust
from gate.policy import Usage
from gate.trust.signed import PREFIX_BYTES
from gate.trust import TrustDocument

log = logging.getLogger(__name__)

# Writers in this process take turns here before SQLite's own lock. A thread waiting for
# SQLite's lock polls it with sleeps growing to 100 ms; waiting here, the decision loop gets
# the database the moment a bundle worker's chunk is committed.
WRITE_LOCK = threading.RLock()

SCHEMA_VERSION = 4

# Record kinds.
ADMISSION = "admission"  # a ticket was let through, direction "in" (entry) or "out" (exit)
REVERT = "revert"  # the admission (ref) did not lead to a passage: the ticket stays valid
PASSAGE = "passage"  # the turnstile confirmed the admission (ref)
FORCED = "forced_passage"  # someone passed with no admission
FREE_EXIT = "free_exit"  # someone left through a free exit
KINDS = (ADMISSION, REVERT, PASSAGE, FORCED, FREE_EXIT)


@dataclass(frozen=True)
class Record:
    origin: str
    seq: int
    kind: str
    at: float
    ticket_key: str | None = None
    format: str | None = None
    direction: str | None = None
    ref_origin: str | None = None
    ref_seq: int | None = None
    details: dict[str, Any] | None = None
    proof_key: str | None = None

    @property
    def ref(self) -> tuple[str, int] | None:
        return (self.ref_origin, self.ref_seq) if self.ref_origin is not None else None  # type: ignore[return-value]


_COLUMNS = "origin, seq, kind, at, ticket_key, format, direction, ref_origin, ref_seq, details, proof_key"
_PREFIX_HEX = 2 * PREFIX_BYTES
_IS_REVOKED = (
    "SELECT EXISTS (SELECT 1 FROM revocations WHERE ticket_key = ?1) OR COALESCE("
    "(SELECT revoked FROM delta_revocations WHERE prefix = ?2), "
    "EXISTS (SELECT 1 FROM bundle_revocations WHERE prefix = ?2))"
)


@dataclass(frozen=True)
class Conflict:
    """A ticket admitted at two gates that did not know of each other's admission (cut off)."""

    ticket_key: str
    origin: str  # the admission that was merged last
    seq: int
    known: int  # admissions of this ticket its gate knew of when it admitted
    found: int  # admissions of this ticket this ledger holds besides it
    detected_at: float


@dataclass(frozen=True)
class MergeResult:
    added: list[Record]
    duplicates: int  # already held, identical: normal (catch-up overlaps, QoS 1 redelivery)
    clashes: list[tuple[Record, Record]]  # (held, offered) with one (origin, seq): reported
    conflicts: list[Conflict]


class Ledger:
    def __init__(self, path: Path | str, origin: str, *, read_only: bool = False) -> None:
        """``read_only``: look without writing (``gate doctor`` beside a running lane); the
        file must exist and have this gate's schema."""
        self.path = Path(path)
        self.origin = origin
        if read_only:
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA busy_timeout = 5000")
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise RuntimeError(f"database {self.path} has schema {version}, this gate reads {SCHEMA_VERSION}")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout = 5000")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self._migrate()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"database {self.path} has schema {version}, newer than this gate ({SCHEMA_VERSION})"
            )
        if version == SCHEMA_VERSION:
            return  # the usual start: nothing to migrate, nothing more to import
        import sqlite_utils

        db = sqlite_utils.Database(self.conn)
        for target, step in ((1, _schema_1), (2, _schema_2), (3, _schema_3), (4, _schema_4)):
            if version >= target:
                continue
            with self.transaction():  # another process may have migrated meanwhile: ask again
                if self.conn.execute("PRAGMA user_version").fetchone()[0] < target:
                    step(db)
                    self.conn.execute(f"PRAGMA user_version = {target}")
                    log.info("ledger schema migrated path=%s version=%d", self.path, target)

    # --- writing ---------------------------------------------------------------------------

    def append(
        self,
        kind: str,
        at: float,
        *,
        ticket_key: str | None = None,
        format: str | None = None,
        direction: str | None = None,
        ref: tuple[str, int] | None = None,
        details: dict[str, Any] | None = None,
        proof_key: str | None = None,
    ) -> Record:
        """Record one fact of this gate's own; durable when this returns."""
        if kind not in KINDS:
            raise ValueError(f"unknown record kind {kind!r}")
        # The sequence number is taken inside the INSERT: SQLite serialises writers, so the
        # daemon and a ``gate verify`` on the same file can never hand out one number twice.
        with WRITE_LOCK:
            rows = self.conn.execute(
                f"INSERT INTO ledger ({_COLUMNS}) VALUES "
                "(?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger WHERE origin = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "RETURNING seq",
                (
                    self.origin,
                    self.origin,
                    kind,
                    at,
                    ticket_key,
                    format,
                    direction,
                    ref[0] if ref else None,
                    ref[1] if ref else None,
                    json.dumps(details, separators=(",", ":")) if details else None,
                    proof_key,
                ),
            ).fetchall()  # fetchall steps the statement to its end, which commits it
        return Record(self.origin, rows[0][0], kind, at, ticket_key, format, direction,
                      ref[0] if ref else None, ref[1] if ref else None, details, proof_key)

    def revoke(self, entries: Iterable[tuple[str, str]], at: float) -> int:
        """Revoke ticket keys (``(ticket_key, note)``); returns how many were new."""
        with self.transaction():
            before = self.conn.total_changes
            self.conn.executemany(
                "INSERT OR IGNORE INTO revocations (ticket_key, note, at) VALUES (?, ?, ?)",
                ((key, note, at) for key, note in entries),
            )
            return self.conn.total_changes - before

    def store_trust_document(self, name: str, fmt: str, body: str, at: float) -> None:
        """Keep an imported trust document (replacing one of the same name)."""
        self.conn.execute(
            "INSERT OR REPLACE INTO trust_documents (name, format, imported_at, sha256, body) VALUES (?, ?, ?, ?, ?)",
            (name, fmt, at, hashlib.sha256(body.encode()).hexdigest(), body),
        )

    def remove_trust_document(self, name: str) -> bool:
        return self.conn.execute("DELETE FROM trust_documents WHERE name = ?", (name,)).rowcount > 0

    def merge(self, offered: Iterable[Record], now: float) -> MergeResult:
        """Take in peers' records (facts keyed by ``(origin, seq)``): idempotent, any order.

        One transaction for the batch. A record already held is a duplicate when identical and a
        clash when not (two facts under one key: a gate whose database was replaced). A new
        entry admission whose gate knew of fewer admissions of the ticket than this ledger now
        holds, beyond what the ticket allows, is a conflict: both gates admitted it while cut
        off. Conflicts are kept in their own table and returned for the log and the status.
        """
        added: list[Record] = []
        duplicates = 0
        clashes: list[tuple[Record, Record]] = []
        conflicts: list[Conflict] = []
        with self.transaction():
            for record in offered:
                if record.origin == self.origin:
                    raise ValueError(f"a peer's record cannot carry this gate's origin {self.origin!r}")
                inserted = self.conn.execute(
                    f"INSERT OR IGNORE INTO ledger ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _row(record),
                ).rowcount
                if inserted:
                    added.append(record)
                    continue
                held = self.record(record.origin, record.seq)
                if held == record:
                    duplicates += 1
                else:
                    clashes.append((held, record))  # type: ignore[arg-type]
            for record in added:
                conflict = self._conflict(record, now)
                if conflict is not None:
                    conflicts.append(conflict)
                    self.conn.execute(
                        "INSERT OR IGNORE INTO conflicts (origin, seq, ticket_key, known, found, detected_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (conflict.origin, conflict.seq, conflict.ticket_key, conflict.known, conflict.found, now),
                    )
        return MergeResult(added, duplicates, clashes, conflicts)

    def _conflict(self, record: Record, now: float) -> Conflict | None:
        if record.kind != ADMISSION or record.direction == "out" or not record.ticket_key or not record.details:
            return None
        known, limit = record.details.get("known"), record.details.get("limit")
        if not isinstance(known, int) or not isinstance(limit, int) or limit == 0:
            return None
        found = self.usage(record.ticket_key).entries - 1  # held besides this one
        if found > known and found + 1 > limit:
            return Conflict(record.ticket_key, record.origin, record.seq, known, found, now)
        return None

    def set_sync_state(self, name: str, value: int) -> None:
        with WRITE_LOCK:
            self.conn.execute("INSERT OR REPLACE INTO sync_state (name, value) VALUES (?, ?)", (name, value))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One explicit transaction (the connection otherwise commits every statement)."""
        with WRITE_LOCK:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    # --- reading ---------------------------------------------------------------------------

    def is_revoked(self, ticket_key: str) -> bool:
        """Revoked here (``gate revoke``), by the newest delta, or by the bundle (unless the
        delta restored it). Bundles hold 16-byte prefixes of ticket keys (``gate.trust.signed``)."""
        row = self.conn.execute(_IS_REVOKED, (ticket_key, bytes.fromhex(ticket_key[:_PREFIX_HEX]))).fetchone()
        return bool(row[0])

    def usage(self, ticket_key: str) -> Usage:
        rows = self.conn.execute(
            "SELECT origin, seq, kind, direction, ref_origin, ref_seq FROM ledger WHERE ticket_key = ?",
            (ticket_key,),
        ).fetchall()
        reverted = {(r[4], r[5]) for r in rows if r[2] == REVERT}
        entries = exits = 0
        for origin, seq, kind, direction, _, _ in rows:
            if kind == ADMISSION and (origin, seq) not in reverted:
                if direction == "out":
                    exits += 1
                else:
                    entries += 1
        return Usage(entries=entries, exits=exits)

    def trust_generation(self) -> tuple[int, int]:
        """Changes whenever a trust document is imported, replaced or removed."""
        row = self.conn.execute("SELECT COALESCE(MAX(rowid), 0), COUNT(*) FROM trust_documents").fetchone()
        return (row[0], row[1])

    def trust_documents(self) -> list[TrustDocument]:
        """The imported documents, parsed again (they were valid when imported; ``TrustError``
        if one no longer is, say after an upgrade that reads a field more strictly)."""
        rows = self.conn.execute("SELECT name, body FROM trust_documents ORDER BY name").fetchall()
        return [trust.parse_document(body, name) for name, body in rows]

    def trust_document_list(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT name, format, imported_at, sha256, length(body) FROM trust_documents ORDER BY name")
        return [dict(zip(("name", "format", "imported_at", "sha256", "bytes"), row)) for row in rows]

    def proof_used(self, proof_key: str) -> bool:
        """Did this exact proof (rotating code, NFC answer, token ``jti``) already open a gate?
        A reverted admission (nobody passed) gives its proof back."""
        row = self.conn.execute(
            "SELECT 1 FROM ledger AS a WHERE a.proof_key = ? AND a.kind = ? AND NOT EXISTS ("
            "SELECT 1 FROM ledger AS r WHERE r.kind = ? AND r.ref_origin = a.origin AND r.ref_seq = a.seq)",
            (proof_key, ADMISSION, REVERT),
        ).fetchone()
        return row is not None

    def records(self, origin: str | None = None, after_seq: int = 0, limit: int = -1) -> list[Record]:
        where = "WHERE seq > ?"
        args: list[Any] = [after_seq]
        if origin is not None:
            where += " AND origin = ?"
            args.append(origin)
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM ledger {where} ORDER BY origin, seq LIMIT ?", [*args, limit])
        return [_record(row) for row in rows]

    def record(self, origin: str, seq: int) -> Record | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM ledger WHERE origin = ? AND seq = ?", (origin, seq)).fetchone()
        return _record(row) if row else None

    def last_seq(self, origin: str | None = None) -> int:
        row = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger WHERE origin = ?", (origin or self.origin,))
        return int(row.fetchone()[0])

    def marks(self) -> dict[str, int]:
        """For each origin, the highest ``seq`` up to which this ledger holds every record (what a
        catch-up request asks beyond). Records arrive in order, so a gap is rare: when there is
        one, the mark stops below it and the missing records are asked for again."""
        marks = {}
        for origin, count, top in self.conn.execute("SELECT origin, COUNT(*), MAX(seq) FROM ledger GROUP BY origin"):
            if count == top:
                marks[origin] = top
                continue
            first_gap = self.conn.execute(
                "SELECT MIN(seq) FROM ledger AS l WHERE origin = ? AND NOT EXISTS "
                "(SELECT 1 FROM ledger WHERE origin = l.origin AND seq = l.seq + 1)",
                (origin,),
            ).fetchone()[0]
            has_first = self.conn.execute("SELECT 1 FROM ledger WHERE origin = ? AND seq = 1", (origin,)).fetchone()
            marks[origin] = first_gap if has_first else 0
        return marks

    def sync_state(self, name: str, default: int = 0) -> int:
        row = self.conn.execute("SELECT value FROM sync_state WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else default

    def conflict_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM conflicts").fetchone()[0])

    def integrity_ok(self) -> bool:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        self.conn.close()


def _row(record: Record) -> tuple[Any, ...]:
    return (
        record.origin,
        record.seq,
        record.kind,
        record.at,
        record.ticket_key,
        record.format,
        record.direction,
        record.ref_origin,
        record.ref_seq,
        json.dumps(record.details, separators=(",", ":")) if record.details else None,
        record.proof_key,
    )


def _record(row: tuple[Any, ...]) -> Record:
    return Record(*row[:9], details=json.loads(row[9]) if row[9] else None, proof_key=row[10])


# --- schema steps (each runs once, in its own transaction) ---------------------------------


def _schema_1(db: sqlite_utils.Database) -> None:
    db["ledger"].create(
        {
            "origin": str,
            "seq": int,
            "kind": str,
            "at": float,
            "ticket_key": str,
            "format": str,
            "direction": str,
            "ref_origin": str,
            "ref_seq": int,
            "details": str,
        },
        pk=("origin", "seq"),
        not_null={"origin", "seq", "kind", "at"},
        if_not_exists=True,
    )
    db["ledger"].create_index(["ticket_key"], if_not_exists=True)
    db["revocations"].create({"ticket_key": str, "note": str, "at": float}, pk="ticket_key", if_not_exists=True)


def _schema_2(db: sqlite_utils.Database) -> None:
    """Proof identities on admissions (replays across restarts); imported trust documents."""
    db["ledger"].add_column("proof_key", str)
    db["ledger"].create_index(["proof_key"], if_not_exists=True)
    db["ledger"].create_index(["ref_origin", "ref_seq"], if_not_exists=True)
    db["trust_documents"].create(
        {"name": str, "format": str, "imported_at": float, "sha256": str, "body": str},
        pk="name",
        not_null={"format", "imported_at", "sha256", "body"},
        if_not_exists=True,
    )


def _schema_3(db: sqlite_utils.Database) -> None:
    """Venue sync: small named counters (the outbox's published mark) and detected conflicts."""
    db["sync_state"].create({"name": str, "value": int}, pk="name", not_null={"value"}, if_not_exists=True)
    db["conflicts"].create(
        {"origin": str, "seq": int, "ticket_key": str, "known": int, "found": int, "detected_at": float},
        pk=("origin", "seq"),
        if_not_exists=True,
    )


def _schema_4(db: sqlite_utils.Database) -> None:
    """Signed trust bundles: their revocations (key prefixes), the newest delta's changes, which
    bundle and delta are held, and the nonces of signed commands already carried out."""
    create_revocations(db.conn, "bundle_revocations")
    db.conn.execute("CREATE TABLE IF NOT EXISTS delta_revocations (prefix BLOB PRIMARY KEY, revoked INTEGER NOT NULL) WITHOUT ROWID")
    db["trust_state"].create(
        {"name": str, "version": int, "base": int, "issued_at": float, "sha256": str,
         "revoked": int, "restored": int, "documents": int, "applied_at": float},
        pk="name",
        if_not_exists=True,
    )
    db["command_nonces"].create({"nonce": str, "issued_at": float, "seen_at": float}, pk="nonce", if_not_exists=True)


def create_revocations(conn: sqlite3.Connection, table: str) -> None:
    """A table of revoked ticket-key prefixes; WITHOUT ROWID: the prefix is the whole row."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (prefix BLOB PRIMARY KEY) WITHOUT ROWID")
