"""The bridge's own SQLite file (``<state_dir>/bridge.db``, 0600): the durable upload queue and
what it needs to fill it.

- ``records``: the lanes' ledger records the bridge heard (verified before they get here), keyed
  ``(origin, epoch, seq)`` like a lane's ledger, so a record heard twice (a lane republishing
  its outbox, a catch-up answer) is taken once. An admission is *settled* by the passage or
  revert that refers to it; only a passage makes it a check-in.
- ``jobs``: one row per thing to deliver (a pretix redeem, an OPN action, a webhook), with a
  unique key, so that a record heard twice never makes a second job. A job is ``pending`` until
  its destination accepted it (``done``, with what it answered: an OPN ``actionPromise``) or it
  failed for good (``dead``, with why). Nothing is deleted: the table is the audit trail.
- ``secrets``: ticket key → the pretix secret and its position (pulled from pretix's orders):
  the lanes' records carry only SHA-256 ticket keys, pretix wants the secret back.
- ``kv``: pull cursors (``X-Page-Generated``), the versions of what was published.

Records are written with ``synchronous=FULL`` inside paho's message callback, so the broker's
acknowledgement (sent when the callback returns) comes after the record is on disk: a bridge
killed at any moment loses nothing the broker still holds for it.

This file is the bridge's, not a lane's: ``gate.store`` is the lane's room and stays untouched.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from gate.store.ledger import ADMISSION, PASSAGE, REVERT, Record

PENDING, DONE, DEAD, SKIPPED = "pending", "done", "dead", "skipped"
LAG_WINDOW = 300.0  # seconds: the upload lag shown is of the jobs accepted this long back

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    origin TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
    kind TEXT NOT NULL, at REAL NOT NULL, ticket_key TEXT, format TEXT, direction TEXT,
    ref_origin TEXT, ref_epoch TEXT, ref_seq INTEGER,
    heard_at REAL NOT NULL, settled TEXT,
    PRIMARY KEY (origin, epoch, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_ref ON records (ref_origin, ref_epoch, ref_seq) WHERE ref_seq IS NOT NULL;
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, sink TEXT NOT NULL, key TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL, created_at REAL NOT NULL, event_at REAL NOT NULL,
    done_at REAL, last_error TEXT, result TEXT);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (sink, state, next_at);
CREATE INDEX IF NOT EXISTS jobs_done ON jobs (sink, state, done_at);
CREATE TABLE IF NOT EXISTS secrets (
    ticket_key TEXT PRIMARY KEY, event TEXT NOT NULL, secret TEXT NOT NULL,
    order_code TEXT, positionid INTEGER, position_id INTEGER, status TEXT,
    item INTEGER, variation INTEGER, subevent INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS opn_tickets (ticket_key TEXT PRIMARY KEY, ticket_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Job:
    id: int
    sink: str
    key: str
    body: dict[str, Any]
    attempts: int
    created_at: float
    event_at: float


@dataclass(frozen=True)
class NewJob:
    sink: str
    key: str
    body: dict[str, Any]
    event_at: float


# plan(admission, passage or None) → the jobs to add: called for every new admission (passage
# None) and for every admission a passage confirms, inside the transaction that stores them.
Plan = Callable[[sqlite3.Row, sqlite3.Row | None], list[NewJob]]


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile of sorted ``values`` (nearest rank: a value that occurred)."""
    return values[min(len(values) - 1, max(0, math.ceil(len(values) * pct / 100) - 1))]


def admission_id(row: Any) -> str:
    """An admission's stable id, the nonce pretix gets: ``origin-epoch-seq`` (never reused:
    a lane's new database has a new epoch)."""
    return f"{row['origin']}-{row['epoch']}-{row['seq']}"


class BridgeStore:
    """One connection per thread (SQLite objects stay on their thread); WAL, so the listener,
    the pullers and the uploaders never wait on each other's reads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # the secrets in it are the venue's tickets: the bridge's user alone
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._local = threading.local()
        self.wakeups: list[Callable[[str], None]] = []  # told the sink of every new job
        self._conn().executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    class _Tx:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
            self.conn.execute("COMMIT" if kind is None else "ROLLBACK")

    def _tx(self) -> "_Tx":
        return self._Tx(self._conn())

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # --- records in, jobs out ----------------------------------------------------------------

    def take_records(self, records: Iterable[Record], plan: Plan, now: float | None = None) -> tuple[int, int]:
        """Store verified records (a duplicate is dropped) and settle admissions: every new
        admission, and every admission a passage now confirms, goes through ``plan`` and its
        jobs are queued, all in one durable transaction. Returns (new records, new jobs)."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            fresh: list[Record] = []
            for r in records:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,NULL)",
                    (r.origin, r.epoch, r.seq, r.kind, r.at, r.ticket_key, r.format, r.direction,
                     r.ref_origin, r.ref_epoch, r.ref_seq, now))
                if cur.rowcount:
                    fresh.append(r)
            added = len(fresh)
            new_jobs: list[NewJob] = []
            for r in fresh:
                if r.kind == ADMISSION:
                    admission = self._record(conn, r.origin, r.epoch, r.seq)
                    new_jobs += plan(admission, None)
                elif r.kind in (PASSAGE, REVERT) and r.ref_seq is not None:
                    admission = self._record(conn, r.ref_origin or r.origin, r.ref_epoch or r.epoch, r.ref_seq)
                    if admission is None or admission["kind"] != ADMISSION:
                        continue
                else:
                    continue
                settler = self._settler(conn, admission)
                if settler is not None:
                    new_jobs += self._settle(conn, admission, settler, plan)
            sinks = self._insert_jobs(conn, new_jobs, now)
        self._wake(sinks)
        return added, sum(sinks.values())

    def add_jobs(self, jobs: list[NewJob], now: float | None = None, cap: int | None = None) -> int | None:
        """Queue jobs that come from no record (a lane's refusal); one with a key already
        queued is dropped. Returns how many were new; with ``cap``, None and nothing queued when
        a sink of ``jobs`` has ``cap`` jobs pending already (counted in the same transaction, so
        two callers never both pass the cap)."""
        with self._tx() as conn:
            if cap is not None and any(
                    conn.execute("SELECT COUNT(*) FROM jobs WHERE sink=? AND state=?", (sink, PENDING)).fetchone()[0] >= cap
                    for sink in {job.sink for job in jobs}):
                return None
            sinks = self._insert_jobs(conn, jobs, time.time() if now is None else now)
        self._wake(sinks)
        return sum(sinks.values())

    @staticmethod
    def _insert_jobs(conn: sqlite3.Connection, jobs: list[NewJob], now: float) -> Counter[str]:
        """New jobs per sink."""
        sinks: Counter[str] = Counter()
        for job in jobs:
            cur = conn.execute(
                "INSERT OR IGNORE INTO jobs (sink, key, body, next_at, created_at, event_at) VALUES (?,?,?,?,?,?)",
                (job.sink, job.key, json.dumps(job.body, separators=(",", ":")), now, now, job.event_at))
            sinks[job.sink] += cur.rowcount
        return sinks

    def _wake(self, sinks: Counter[str]) -> None:
        for sink, count in sinks.items():
            if count:
                for wake in self.wakeups:
                    wake(sink)

    @staticmethod
    def _record(conn: sqlite3.Connection, origin: str, epoch: str, seq: int) -> sqlite3.Row | None:
        return conn.execute("SELECT * FROM records WHERE origin=? AND epoch=? AND seq=?", (origin, epoch, seq)).fetchone()

    @staticmethod
    def _settler(conn: sqlite3.Connection, admission: sqlite3.Row) -> sqlite3.Row | None:
        """The record that settles ``admission``: a passage or revert **of the admission's own
        lane stream** (same origin and epoch) that names it, the earliest by seq. A record of
        another gate naming this admission is signed by that gate, not by the one that opened:
        lanes never settle each other's admissions, so neither does the bridge."""
        return conn.execute(
            "SELECT * FROM records WHERE origin=? AND epoch=? AND COALESCE(ref_origin, origin)=? "
            "AND COALESCE(ref_epoch, epoch)=? AND ref_seq=? AND kind IN (?,?) ORDER BY seq LIMIT 1",
            (admission["origin"], admission["epoch"], admission["origin"], admission["epoch"], admission["seq"],
             PASSAGE, REVERT)).fetchone()

    @staticmethod
    def _settle(conn: sqlite3.Connection, admission: sqlite3.Row, settler: sqlite3.Row, plan: Plan) -> list[NewJob]:
        if admission["settled"] is not None:
            return []  # the first settlement stands (a lane writes one per admission)
        conn.execute("UPDATE records SET settled=? WHERE origin=? AND epoch=? AND seq=?",
                     (settler["kind"], admission["origin"], admission["epoch"], admission["seq"]))
        return plan(admission, settler) if settler["kind"] == PASSAGE else []

    def marks(self) -> dict[tuple[str, str], int]:
        """For each lane stream, the seq up to which the bridge holds every record (a catch-up
        request's marks, as a lane's)."""
        out: dict[tuple[str, str], int] = {}
        rows = self._conn().execute("SELECT origin, epoch, seq FROM records ORDER BY origin, epoch, seq").fetchall()
        for origin, epoch, seq in rows:
            if out.get((origin, epoch), 0) + 1 == seq:
                out[(origin, epoch)] = seq
            else:
                out.setdefault((origin, epoch), 0)
        return out

    def confirmed(self) -> list[sqlite3.Row]:
        """Every admission the lanes confirmed with a passage (what pretix must end with)."""
        return self._conn().execute("SELECT * FROM records WHERE kind=? AND settled=?", (ADMISSION, PASSAGE)).fetchall()

    # --- the queue ----------------------------------------------------------------------------

    def due(self, sink: str, now: float, limit: int, part: tuple[int, int] = (0, 1)) -> list[Job]:
        """Pending jobs whose time has come, oldest first; ``part`` (i, n): worker i of n
        takes the ids that are i modulo n, so workers never take the same job."""
        rows = self._conn().execute(
            "SELECT * FROM jobs WHERE sink=? AND state=? AND next_at<=? AND id % ? = ? ORDER BY id LIMIT ?",
            (sink, PENDING, now, part[1], part[0], limit)).fetchall()
        return [Job(r["id"], r["sink"], r["key"], json.loads(r["body"]), r["attempts"], r["created_at"], r["event_at"])
                for r in rows]

    def next_due(self, sink: str, part: tuple[int, int] = (0, 1)) -> float | None:
        """When the next pending job of ``part`` (as in ``due``) is due; None when it has none.
        Another worker's jobs are not this worker's business: counting them made an idle worker
        of several spin on a job it may never take."""
        row = self._conn().execute("SELECT MIN(next_at) FROM jobs WHERE sink=? AND state=? AND id % ? = ?",
                                   (sink, PENDING, part[1], part[0])).fetchone()
        return row[0]

    def waiting(self, sink: str, now: float) -> dict[str, tuple[int, float]]:
        """Pending jobs of ``sink`` not due yet, by ticket key: the earliest one's (id, next_at).
        (Few but in an outage; a later action of such a ticket must not overtake it.)"""
        out: dict[str, tuple[int, float]] = {}
        for row in self._conn().execute("SELECT id, next_at, body FROM jobs WHERE sink=? AND state=? AND next_at>? ORDER BY id",
                                        (sink, PENDING, now)):
            key = json.loads(row["body"]).get("ticket_key")
            if isinstance(key, str):
                out.setdefault(key, (row["id"], row["next_at"]))
        return out

    def done(self, job_id: int, result: str = "", now: float | None = None) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET state=?, done_at=?, result=?, attempts=attempts+1, last_error=NULL WHERE id=?",
                         (DONE, time.time() if now is None else now, result, job_id))

    def skip(self, job_id: int, why: str) -> None:
        """Nothing to deliver after all (a ticket of an event that is not uploaded there)."""
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET state=?, result=?, done_at=? WHERE id=?", (SKIPPED, why[:200], time.time(), job_id))

    def failed(self, job_id: int, error: str, retry_at: float | None) -> None:
        """An attempt failed: retried at ``retry_at``, or dead (None)."""
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET attempts=attempts+1, last_error=?, next_at=COALESCE(?, next_at), state=? WHERE id=?",
                         (error[:500], retry_at, PENDING if retry_at is not None else DEAD, job_id))

    def defer(self, job_id: int, why: str, until: float) -> None:
        """Not tried: its destination cannot take it yet (a secret not pulled yet)."""
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET last_error=?, next_at=? WHERE id=?", (why[:500], until, job_id))

    def retry_now(self, sink: str) -> None:
        """Deferred jobs of ``sink`` are due again (new secrets were pulled)."""
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET next_at=? WHERE sink=? AND state=? AND attempts=0 AND last_error IS NOT NULL",
                         (time.time(), sink, PENDING))
        for wake in self.wakeups:
            wake(sink)

    def queue_stats(self, now: float | None = None, window: float = LAG_WINDOW) -> dict[str, Any]:
        """Per destination: pending, done, dead, skipped; the oldest pending one's age; upload
        lag (the event at the lane → accepted) p50 and p99 of the jobs accepted in the last
        ``window`` seconds (None when none was), and how many that is."""
        now = time.time() if now is None else now
        conn = self._conn()
        out: dict[str, Any] = {}
        for sink, state, count in conn.execute("SELECT sink, state, COUNT(*) FROM jobs GROUP BY sink, state"):
            out.setdefault(sink, {"pending": 0, "done": 0, "dead": 0, "skipped": 0})[state] = count
        for sink, q in out.items():
            oldest = conn.execute("SELECT MIN(created_at) FROM jobs WHERE sink=? AND state=?", (sink, PENDING)).fetchone()[0]
            q["oldest_pending_s"] = round(now - oldest, 3) if oldest is not None else None
            lags = sorted(r[0] for r in conn.execute(
                "SELECT done_at - event_at FROM jobs WHERE sink=? AND state=? AND done_at>=?", (sink, DONE, now - window)))
            q["lag_n"] = len(lags)
            q["lag_p50_s"] = round(percentile(lags, 50), 3) if lags else None
            q["lag_p99_s"] = round(percentile(lags, 99), 3) if lags else None
            last_error = conn.execute("SELECT last_error FROM jobs WHERE sink=? AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1",
                                      (sink,)).fetchone()
            q["last_error"] = last_error[0] if last_error else None
        return out

    def jobs(self, sink: str, state: str | None = None) -> list[sqlite3.Row]:
        sql, args = "SELECT * FROM jobs WHERE sink=?", [sink]
        if state is not None:
            sql += " AND state=?"
            args.append(state)
        return self._conn().execute(sql + " ORDER BY id", args).fetchall()

    # --- pulled secrets, cursors --------------------------------------------------------------

    def put_secrets(self, rows: Iterable[dict[str, Any]]) -> int:
        """Positions pulled from pretix: ``ticket_key, event, secret, order, positionid, id,
        status, item, variation, subevent`` (a secret seen again replaces what was known)."""
        with self._tx() as conn:
            cur = conn.executemany(
                "INSERT OR REPLACE INTO secrets VALUES (:ticket_key,:event,:secret,:order,:positionid,:id,:status,"
                ":item,:variation,:subevent)", list(rows))
            return cur.rowcount

    def valid_secrets(self, event: str) -> list[sqlite3.Row]:
        """The event's positions whose order is paid (``p``), for random-secret documents."""
        return self._conn().execute("SELECT * FROM secrets WHERE event=? AND status='p' ORDER BY secret", (event,)).fetchall()

    def secret(self, ticket_key: str) -> sqlite3.Row | None:
        return self._conn().execute("SELECT * FROM secrets WHERE ticket_key=?", (ticket_key,)).fetchone()

    def put_opn_tickets(self, rows: list[tuple[str, str]]) -> None:
        """(ticket key, OPN ticketId) of tickets registered with OPN by their issuer's own id."""
        with self._tx() as conn:
            conn.execute("DELETE FROM opn_tickets")
            conn.executemany("INSERT OR REPLACE INTO opn_tickets VALUES (?,?)", rows)

    def opn_ticket(self, ticket_key: str) -> str | None:
        row = self._conn().execute("SELECT ticket_id FROM opn_tickets WHERE ticket_key=?", (ticket_key,)).fetchone()
        return row[0] if row else None

    def get(self, name: str, default: Any = None) -> Any:
        row = self._conn().execute("SELECT value FROM kv WHERE name=?", (name,)).fetchone()
        return json.loads(row[0]) if row else default

    def put(self, **values: Any) -> None:
        with self._tx() as conn:
            conn.executemany("INSERT OR REPLACE INTO kv VALUES (?,?)",
                             [(k, json.dumps(v, separators=(",", ":"))) for k, v in values.items()])
