"""The ledger: every admission, revert, passage and exit, durable in one SQLite file.

Records are facts keyed by ``(origin, epoch, seq)``. A gate numbers its own records 1, 2, 3…
without gaps within its database's epoch (made when the database is created, so a gate started
again on an empty database never reuses a key). A record is on disk (WAL, ``synchronous=FULL``)
before ``append`` returns, so the relay never moves for an admission that a power cut could
forget (``gate.store.db``). With venue sync, a gate's own records are sealed when appended: the
exact text its key signed and the signature are kept with them, so any gate can pass them on.

Peers' records come in through ``merge``, which holds the venue's causality rules: each origin's
records in order with no gaps, and a revert or passage only for an admission of the same gate
that this ledger holds and that nothing has settled yet.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

from gate.policy import TicketState
from gate.store.db import Database

log = logging.getLogger(__name__)

# Record kinds.
ADMISSION = "admission"  # a ticket was let through, direction "in" (entry) or "out" (exit)
REVERT = "revert"  # the admission (ref) did not lead to a passage: the ticket stays valid
PASSAGE = "passage"  # the turnstile confirmed the admission (ref)
FORCED = "forced_passage"  # someone passed with no admission
FREE_EXIT = "free_exit"  # someone left through a free exit
KINDS = (ADMISSION, REVERT, PASSAGE, FORCED, FREE_EXIT)
SETTLING = (REVERT, PASSAGE)  # kinds that name an admission (ref) and settle it


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
    epoch: str = ""
    ref_epoch: str | None = None
    signed: str | None = None  # the exact text its origin's key signed (gate.trust.records)
    signature: bytes | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.origin, self.epoch, self.seq)

    @property
    def ref(self) -> tuple[str, str, int] | None:
        """The admission a revert or passage names: ``(origin, epoch, seq)``."""
        if self.ref_origin is None or self.ref_seq is None:
            return None
        return (self.ref_origin, self.ref_epoch or "", self.ref_seq)

    def same_fact(self, other: Record) -> bool:
        """The same fact whatever its seal (a peer's copy of a record carries one, ours may not)."""
        return replace(self, signed=None, signature=None) == replace(other, signed=None, signature=None)


_COLUMNS = ("origin, seq, kind, at, ticket_key, format, direction, ref_origin, ref_seq, details, proof_key, epoch, "
            "ref_epoch, signed, signature")
_PLACES = ", ".join("?" * 15)

Seal = Callable[[Record], tuple[str, bytes]]  # a record → the exact text signed and the signature


@dataclass(frozen=True)
class Conflict:
    """A ticket admitted at two gates that did not know of each other's admission (cut off)."""

    ticket_key: str
    origin: str  # the admission that was merged last
    seq: int
    known: int  # admissions of this ticket its gate knew of when it admitted
    found: int  # admissions of this ticket this ledger holds besides it
    detected_at: float
    epoch: str = ""


@dataclass(frozen=True)
class MergeResult:
    added: list[Record]
    duplicates: int  # already held, identical: normal (catch-up overlaps, QoS 1 redelivery)
    clashes: list[tuple[Record, Record]]  # (held, offered) under one key: reported
    conflicts: list[Conflict]
    refused: list[tuple[Record, str]]  # broke a causality rule: (record, why)
    gaps: dict[tuple[str, str], int]  # (origin, epoch) → the seq this ledger waits for (ask for it)


class Ledger:
    """This gate's records and the peers' it has merged (table ``ledger``), and the conflicts
    found while merging (table ``conflicts``)."""

    def __init__(self, db: Database, origin: str, epoch: str, seal: Seal | None = None) -> None:
        self.db = db
        self.conn = db.conn
        self.origin = origin
        self.epoch = epoch  # this database's: the second part of this gate's record keys
        self.seal = seal  # None: records are kept unsealed (a lane without venue sync)
        self._peer_tops: dict[tuple[str, str], int] | None = None  # marks of merged streams, read once

    # --- writing ---------------------------------------------------------------------------

    def append(
        self,
        kind: str,
        at: float,
        *,
        ticket_key: str | None = None,
        format: str | None = None,
        direction: str | None = None,
        ref: tuple[str, str, int] | None = None,
        details: dict[str, Any] | None = None,
        proof_key: str | None = None,
    ) -> Record:
        """Record one fact of this gate's own (sealed, with venue sync); durable when this returns."""
        if kind not in KINDS:
            raise ValueError(f"unknown record kind {kind!r}")
        # One transaction takes the number and writes the record: SQLite serialises writers, so the
        # daemon and a ``gate verify`` on the same file can never hand out one number twice.
        with self.db.transaction() as conn:
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger WHERE origin = ? AND epoch = ?",
                               (self.origin, self.epoch)).fetchone()[0]
            record = Record(self.origin, seq, kind, at, ticket_key, format, direction, ref[0] if ref else None,
                            ref[2] if ref else None, details, proof_key, self.epoch, ref[1] if ref else None)
            if self.seal is not None:
                signed, signature = self.seal(record)
                record = replace(record, signed=signed, signature=signature)
            conn.execute(f"INSERT INTO ledger ({_COLUMNS}) VALUES ({_PLACES})", _row(record))
        return record

    def merge(self, offered: Iterable[Record], now: float) -> MergeResult:
        """Take in peers' records (already verified against their origin's key): idempotent.

        One transaction for the batch, without an fsync of its own (``synchronous = NORMAL``):
        peers' records are held durably by their own gates, a power cut loses at most the last
        merges (SQLite stays consistent) and the catch-up brings them back; this gate's next
        own record, written with a full sync, makes them durable too. Each origin's records (per epoch) are taken in order with
        no gap: a record beyond the next one expected is left out and its gap reported (the
        caller asks for the missing ones). A record already held is a duplicate when it is the
        same fact and a clash when not. A revert or passage must name an admission of the same
        gate and epoch that is held and not yet settled, else it is refused. A new entry
        admission whose gate knew of fewer admissions of the ticket than this ledger now holds,
        beyond what the ticket allows, is a conflict: both gates admitted it while cut off.
        """
        added: list[Record] = []
        duplicates = 0
        clashes: list[tuple[Record, Record]] = []
        conflicts: list[Conflict] = []
        refused: list[tuple[Record, str]] = []
        gaps: dict[tuple[str, str], int] = {}
        tops: dict[tuple[str, str], int] = {}
        with self.db.relaxed_durability(), self.db.transaction():
            for record in sorted(offered, key=lambda r: r.key):
                if record.origin == self.origin and record.epoch == self.epoch:
                    refused.append((record, "carries this gate's own origin and epoch"))
                    continue
                stream = (record.origin, record.epoch)
                if stream not in tops:  # (the marks, once read, are kept by merge: no query)
                    tops[stream] = self.top(*stream) if self._peer_tops is None else self._peer_tops.get(stream, 0)
                top = tops[stream]
                if record.seq <= top:
                    held = self.record(*record.key)
                    if held is not None and held.same_fact(record):
                        duplicates += 1
                    else:
                        clashes.append((held, record))  # type: ignore[arg-type]
                    continue
                if record.seq > top + 1:
                    gaps.setdefault(stream, top + 1)
                    continue
                why = self._breaks_causality(record)
                if why:
                    refused.append((record, why))
                    gaps.setdefault(stream, top + 1)  # the stream cannot go on past a refused record
                    continue
                self.conn.execute(f"INSERT INTO ledger ({_COLUMNS}) VALUES ({_PLACES})", _row(record))
                tops[stream] = record.seq
                added.append(record)
            for conflict in self._conflicts(added, now):
                conflicts.append(conflict)
                self.conn.execute(
                    "INSERT OR IGNORE INTO conflicts (origin, epoch, seq, ticket_key, known, found, detected_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (conflict.origin, conflict.epoch, conflict.seq, conflict.ticket_key, conflict.known,
                     conflict.found, now),
                )
        if self._peer_tops is not None:  # committed: the marks go on from here
            for record in added:
                self._peer_tops[(record.origin, record.epoch)] = record.seq
        return MergeResult(added, duplicates, clashes, conflicts, refused, gaps)

    def _breaks_causality(self, record: Record) -> str:
        """Why a peer's record may not be taken in ('' when it may)."""
        if record.kind not in SETTLING:
            return "" if record.ref is None else f"a {record.kind} names no admission"
        ref = record.ref
        if ref is None:
            return f"a {record.kind} must name the admission it settles"
        if (ref[0], ref[1]) != (record.origin, record.epoch):
            return f"a {record.kind} may only settle an admission of its own gate ({record.origin})"
        named = self.record(*ref)
        if named is None or named.kind != ADMISSION:
            return f"a {record.kind} names no admission held ({ref[0]} {ref[1]} #{ref[2]})"
        settled = self.conn.execute(
            "SELECT kind FROM ledger WHERE ref_origin = ? AND ref_epoch = ? AND ref_seq = ? AND kind IN (?, ?)",
            (ref[0], ref[1], ref[2], *SETTLING),
        ).fetchone()
        if settled is not None:
            return f"the admission {ref[0]} #{ref[2]} was already settled ({settled[0]})"
        return ""

    def _conflicts(self, added: list[Record], now: float) -> list[Conflict]:
        """The entry admissions among ``added`` whose gate knew of fewer admissions of the
        ticket than this ledger now holds, beyond what the ticket allows (one read for the
        batch: a catch-up merges hundreds at a time)."""
        checked = []
        for record in added:
            if record.kind != ADMISSION or record.direction == "out" or not record.ticket_key or not record.details:
                continue
            known, limit = record.details.get("known"), record.details.get("limit")
            if isinstance(known, int) and isinstance(limit, int) and limit != 0:
                checked.append((record, known, limit))
        usage = self.ticket_usages({record.ticket_key for record, _, _ in checked if record.ticket_key})
        conflicts = []
        for record, known, limit in checked:
            assert record.ticket_key is not None
            found = usage[record.ticket_key].entries - 1  # held besides this one
            if found > known and found + 1 > limit:
                conflicts.append(Conflict(record.ticket_key, record.origin, record.seq, known, found, now, record.epoch))
        return conflicts

    # --- reading ---------------------------------------------------------------------------

    def ticket_usage(self, ticket_key: str) -> TicketState:
        """The ticket's entries and exits, reverted admissions taken out."""
        return self.ticket_usages((ticket_key,))[ticket_key]

    def ticket_usages(self, ticket_keys: Iterable[str]) -> dict[str, TicketState]:
        """``ticket_usage`` of each of these tickets, read a few hundred at a time."""
        keys = list(ticket_keys)
        rows_of: dict[str, list[tuple[Any, ...]]] = {key: [] for key in keys}
        for first in range(0, len(keys), 500):
            chunk = keys[first:first + 500]
            for row in self.conn.execute(
                "SELECT ticket_key, origin, epoch, seq, kind, direction, ref_origin, ref_epoch, ref_seq FROM ledger "
                f"WHERE ticket_key IN ({', '.join('?' * len(chunk))})", chunk):
                rows_of[row[0]].append(row[1:])
        return {key: _usage(rows) for key, rows in rows_of.items()}

    def proof_used(self, proof_key: str) -> bool:
        """Did this exact proof (rotating code, NFC answer, token ``jti``) already open a gate?
        A reverted admission (nobody passed) gives its proof back."""
        row = self.conn.execute(f"SELECT 1 FROM ledger AS a WHERE a.proof_key = ?1 AND a.kind = ?2 AND {NOT_REVERTED}",
                                (proof_key, ADMISSION, REVERT)).fetchone()
        return row is not None

    def records(self, origin: str | None = None, epoch: str | None = None, after_seq: int = 0, limit: int = -1) -> list[Record]:
        """Records in key order: all, one origin's, or one origin's in one epoch above ``after_seq``."""
        where, args = "WHERE seq > ?", [after_seq]
        if origin is not None:
            where += " AND origin = ?"
            args.append(origin)
        if epoch is not None:
            where += " AND epoch = ?"
            args.append(epoch)
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM ledger {where} ORDER BY origin, epoch, seq LIMIT ?", [*args, limit])
        return [_record(row) for row in rows]

    def sealed_records(self, origin: str, epoch: str, after_seq: int, limit: int) -> list[tuple[int, str | None, bytes | None]]:
        """One stream's records above ``after_seq`` as their origin signed them: (seq, text,
        signature), without reading them into ``Record``s (a catch-up answer passes them on)."""
        return [(int(seq), signed, signature) for seq, signed, signature in self.conn.execute(
            "SELECT seq, signed, signature FROM ledger WHERE origin = ? AND epoch = ? AND seq > ? ORDER BY seq LIMIT ?",
            (origin, epoch, after_seq, limit))]

    def differing(self, copies: list[tuple[str, str, int, str, bytes]]) -> list[tuple[str, str, int, str, bytes]]:
        """Of records offered again under keys held (origin, epoch, seq, text, signature), those
        whose signature is not the one held: one query per stream."""
        streams: dict[tuple[str, str], list[tuple[str, str, int, str, bytes]]] = {}
        for copy in copies:
            streams.setdefault((copy[0], copy[1]), []).append(copy)
        differing = []
        for (origin, epoch), offered in streams.items():
            seqs = [copy[2] for copy in offered]
            held = dict(self.conn.execute(
                "SELECT seq, signature FROM ledger WHERE origin = ? AND epoch = ? AND seq BETWEEN ? AND ?",
                (origin, epoch, min(seqs), max(seqs))))
            differing.extend(copy for copy in offered if copy[2] in held and held[copy[2]] != copy[4])
        return differing

    def record(self, origin: str, epoch: str, seq: int) -> Record | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM ledger WHERE origin = ? AND epoch = ? AND seq = ?",
                                (origin, epoch, seq)).fetchone()
        return _record(row) if row else None

    def top(self, origin: str, epoch: str) -> int:
        """The highest seq held of one origin's epoch (merge keeps each one without gaps)."""
        row = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger WHERE origin = ? AND epoch = ?", (origin, epoch))
        return int(row.fetchone()[0])

    def last_seq(self) -> int:
        """This gate's own newest seq in this database's epoch."""
        return self.top(self.origin, self.epoch)

    def marks(self) -> dict[tuple[str, str], int]:
        """For each (origin, epoch), the seq up to which this ledger holds every record (what a
        catch-up request asks beyond).

        The whole table is read once (a million records take a second on a Pi); from then on
        ``merge``, this ledger's one writer of peers' records, keeps the marks. This gate's own
        stream is read each time: ``gate verify`` may add to it from another process."""
        if self._peer_tops is None:
            self._peer_tops = {(o, e): int(top) for o, e, top in self.conn.execute(
                "SELECT origin, epoch, MAX(seq) FROM ledger GROUP BY origin, epoch") if (o, e) != (self.origin, self.epoch)}
        marks = dict(self._peer_tops)
        own = self.last_seq()
        if own:
            marks[(self.origin, self.epoch)] = own
        return marks

    def occupancy(self, origins: Iterable[str]) -> dict[str, int]:
        """Entries minus exits of each of these gates as this ledger holds them (a gate with no
        entry or exit is left out). Read from the ``occupancy`` table, which triggers on the
        ledger keep as records are written (gate.store.db, schema 7): one small read, whatever
        the ledger's size."""
        names = list(dict.fromkeys(origins))
        if not names:
            return {}
        rows = self.conn.execute(f"SELECT origin, entries - exits FROM occupancy WHERE origin IN ({', '.join('?' * len(names))})",
                                 names)
        return {origin: int(net) for origin, net in rows}

    def conflict_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM conflicts").fetchone()[0])

    def count(self, origin: str | None = None) -> int:
        """How many records this ledger holds (of one origin, or all)."""
        if origin is None:
            return int(self.conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])
        return int(self.conn.execute("SELECT COUNT(*) FROM ledger WHERE origin = ?", (origin,)).fetchone()[0])


# An admission (alias a) that no revert names (?3: the revert kind); Store.ticket_state uses it too.
NOT_REVERTED = ("NOT EXISTS (SELECT 1 FROM ledger AS r WHERE r.kind = ?3 AND r.ref_origin = a.origin "
                "AND r.ref_epoch = a.epoch AND r.ref_seq = a.seq)")


def _usage(rows: list[tuple[Any, ...]]) -> TicketState:
    """Entries and exits from a ticket's rows (origin, epoch, seq, kind, direction, ref...)."""
    reverted = {(r[5], r[6], r[7]) for r in rows if r[3] == REVERT}
    entries = exits = 0
    for origin, epoch, seq, kind, direction, *_ in rows:
        if kind == ADMISSION and (origin, epoch, seq) not in reverted:
            if direction == "out":
                exits += 1
            else:
                entries += 1
    return TicketState(entries=entries, exits=exits)


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
        record.epoch,
        record.ref_epoch,
        record.signed,
        record.signature,
    )


def _record(row: tuple[Any, ...]) -> Record:
    return Record(*row[:9], details=json.loads(row[9]) if row[9] else None, proof_key=row[10], epoch=row[11],
                  ref_epoch=row[12], signed=row[13], signature=row[14])
