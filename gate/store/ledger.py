"""The ledger: every admission, revert, passage and exit, durable in one SQLite file.

Records are facts keyed by ``(origin, seq)``; a gate numbers its own records without gaps. A
record is on disk (WAL, ``synchronous=FULL``) before ``append`` returns, so the relay never
moves for an admission that a power cut could forget (``gate.store.db``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Iterable

from gate.policy import TicketState
from gate.store.db import WRITE_LOCK, Database

log = logging.getLogger(__name__)

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
    """This gate's records and the peers' it has merged (table ``ledger``), and the conflicts
    found while merging (table ``conflicts``)."""

    def __init__(self, db: Database, origin: str) -> None:
        self.db = db
        self.conn = db.conn
        self.origin = origin

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
        with self.db.transaction():
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
        found = self.ticket_usage(record.ticket_key).entries - 1  # held besides this one
        if found > known and found + 1 > limit:
            return Conflict(record.ticket_key, record.origin, record.seq, known, found, now)
        return None

    # --- reading ---------------------------------------------------------------------------

    def ticket_usage(self, ticket_key: str) -> TicketState:
        """The ticket's entries and exits, reverted admissions taken out."""
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
        return TicketState(entries=entries, exits=exits)

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

    def conflict_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM conflicts").fetchone()[0])

    def counts(self) -> dict[str, int]:
        """How many records of each kind, all origins (the demo, the harnesses, doctor)."""
        return dict(self.conn.execute("SELECT kind, COUNT(*) FROM ledger GROUP BY kind").fetchall())

    def count(self, origin: str | None = None) -> int:
        """How many records this ledger holds (of one origin, or all)."""
        if origin is None:
            return int(self.conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])
        return int(self.conn.execute("SELECT COUNT(*) FROM ledger WHERE origin = ?", (origin,)).fetchone()[0])


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
