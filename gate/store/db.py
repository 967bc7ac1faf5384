"""The gate's one SQLite file: the connection, its settings, the schema and its migrations.

One long-lived connection is owned by the decision loop; the bundle worker opens its own, and
other processes (``gate revoke``, ``gate keys import``, ``gate doctor``) may open the file beside
a running lane. WAL with ``synchronous=FULL``: a write is on disk when the statement returns.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from gate.errors import GateError

if TYPE_CHECKING:  # imported only to migrate: sqlite-utils imports numpy (0.1 s here, more on a Pi)
    import sqlite_utils

log = logging.getLogger(__name__)

# Writers in this process take turns here before SQLite's own lock. A thread waiting for
# SQLite's lock polls it with sleeps growing to 100 ms; waiting here, the decision loop gets
# the database the moment a bundle worker's chunk is committed.
WRITE_LOCK = threading.RLock()

SCHEMA_VERSION = 7
CHECKPOINT_INTERVAL = 1.0  # seconds between WAL checkpoints when the lane runs them on a thread of their own


class StoreError(GateError):
    """The database cannot be used as it is (newer schema, not a gate database)."""


def ownership_problem(path: Path, uid: int) -> str:
    """'' when user ``uid`` owns the ledger's directory and files, else which it does not own and
    the fix. (A ``sudo gate bundle load`` before the first start, or recovery steps run as root,
    leave root's files: the lane cannot write its ledger, which is no corrupt database.)"""
    import pwd

    files = [path.parent, path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))]
    foreign = [f for f in files if f.exists() and f.stat().st_uid != uid]
    if not foreign:
        return ""
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    return (f"{', '.join(str(f) for f in foreign)}: not owned by {user}, who runs the lane "
            f"(fix: sudo chown -R {user}:{user} {path.parent})")


def private_database(path: Path) -> None:
    """The database and its WAL and shared-memory files readable by this user alone, whatever the
    umask. SQLite gives the WAL and -shm files the database file's mode, so the database file is
    made 0600 before SQLite opens it (and files an older version left open to others are fixed)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            os.chmod(companion, 0o600)


class Database:
    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        """``read_only``: look without writing (``gate doctor`` beside a running lane); the file
        must exist and have this gate's schema."""
        self.path = Path(path)
        self.read_only = read_only
        self._checkpointer: tuple[threading.Event, threading.Thread] | None = None
        if read_only:
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA busy_timeout = 5000")
            version = self.schema_version()
            if version != SCHEMA_VERSION:
                self.conn.close()
                raise StoreError(f"database {self.path} has schema {version}, this gate reads {SCHEMA_VERSION}")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout = 5000")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self._migrate()

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One explicit transaction (the connection otherwise commits every statement)."""
        with WRITE_LOCK:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @contextmanager
    def relaxed_durability(self) -> Iterator[None]:
        """``synchronous = NORMAL`` for writes a power cut may lose (a staging table)."""
        self.conn.execute("PRAGMA synchronous = NORMAL")
        try:
            yield
        finally:
            self.conn.execute("PRAGMA synchronous = FULL")

    def integrity_problems(self, limit: int = 20) -> list[str]:
        """SQLite's own check: ``[]`` when the file is intact."""
        rows = [row[0] for row in self.conn.execute(f"PRAGMA integrity_check({int(limit)})")]
        return [] if rows == ["ok"] else rows

    def start_checkpointer(self, interval: float = CHECKPOINT_INTERVAL) -> None:
        """Move WAL checkpoints off this connection's thread (the decision loop's): SQLite runs
        one inside whichever commit takes the WAL past 1,000 pages, and a checkpoint writes the
        database file and fsyncs it: a scan decided at that moment waited tens of milliseconds
        (measured: a passage's commit took 29 ms). A thread of its own checkpoints every
        ``interval`` on a connection of its own instead (PASSIVE: it never waits for a writer)."""
        if self._checkpointer is not None or self.read_only:
            return
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        self.conn.execute("PRAGMA wal_autocheckpoint = 0")
        stop = threading.Event()

        def run() -> None:
            failures = 0
            while not stop.wait(interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    failures = 0
                except sqlite3.Error as exc:  # (the next round tries again; the WAL only grows meanwhile)
                    failures += 1
                    if failures <= 3 or failures % 600 == 0:
                        log.warning("WAL checkpoint failed path=%s error=%r failures=%d", self.path, str(exc), failures)
            conn.close()

        thread = threading.Thread(target=run, name="wal-checkpoint", daemon=True)
        thread.start()
        self._checkpointer = (stop, thread)

    def close(self) -> None:
        if self._checkpointer is not None:
            stop, thread = self._checkpointer
            self._checkpointer = None
            stop.set()
            thread.join(5)
        self.conn.close()

    def _migrate(self) -> None:
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            self.conn.close()
            raise StoreError(f"database {self.path} has schema {version}, newer than this gate ({SCHEMA_VERSION})")
        if version == SCHEMA_VERSION:
            return  # the usual start: nothing to migrate, nothing more to import
        import sqlite_utils

        db = sqlite_utils.Database(self.conn)
        for target, step in ((1, _schema_1), (2, _schema_2), (3, _schema_3), (4, _schema_4), (5, _schema_5), (6, _schema_6),
                             (7, _schema_7)):
            if version >= target:
                continue
            with self.transaction():  # another process may have migrated meanwhile: ask again
                if self.schema_version() < target:
                    step(db)
                    self.conn.execute(f"PRAGMA user_version = {target}")
                    log.info("database schema migrated path=%s version=%d", self.path, target)


# --- schema steps (each runs once, in its own transaction) ---------------------------------


def _schema_1(db: sqlite_utils.Database) -> None:
    """The ledger of records, and revocations made at this gate (``gate revoke``)."""
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
    create_prefix_table(db.conn, "bundle_revocations")
    db.conn.execute("CREATE TABLE IF NOT EXISTS delta_revocations (prefix BLOB PRIMARY KEY, revoked INTEGER NOT NULL) WITHOUT ROWID")
    db["trust_state"].create(
        {"name": str, "version": int, "base": int, "issued_at": float, "sha256": str,
         "revoked": int, "restored": int, "documents": int, "applied_at": float},
        pk="name",
        if_not_exists=True,
    )
    db["command_nonces"].create({"nonce": str, "issued_at": float, "seen_at": float}, pk="nonce", if_not_exists=True)


def _schema_5(db: sqlite_utils.Database) -> None:
    """Venue ledger v2: records are keyed by ``(origin, epoch, seq)`` (a database's epoch is made
    when it is created, so a gate restarted on an empty database never reuses a key) and carry the
    exact text their origin gate signed and its signature, so that any gate can pass them on; a
    ``meta`` table (this database's epoch) and the venue's ``roster`` of gates from the bundle.
    Records of v1 (unsigned, epoch "v1") are kept for this gate's own decisions."""
    conn = db.conn
    conn.execute(
        "CREATE TABLE ledger_v2 (origin TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, "
        "at FLOAT NOT NULL, ticket_key TEXT, format TEXT, direction TEXT, ref_origin TEXT, ref_epoch TEXT, ref_seq INTEGER, "
        "details TEXT, proof_key TEXT, signed TEXT, signature BLOB, PRIMARY KEY (origin, epoch, seq))"
    )
    conn.execute(
        "INSERT INTO ledger_v2 SELECT origin, 'v1', seq, kind, at, ticket_key, format, direction, ref_origin, "
        "CASE WHEN ref_origin IS NULL THEN NULL ELSE 'v1' END, ref_seq, details, proof_key, NULL, NULL FROM ledger"
    )
    conn.execute("DROP TABLE ledger")
    conn.execute("ALTER TABLE ledger_v2 RENAME TO ledger")
    conn.execute("CREATE INDEX idx_ledger_ticket_key ON ledger (ticket_key)")
    conn.execute("CREATE INDEX idx_ledger_proof_key ON ledger (proof_key)")
    conn.execute("CREATE INDEX idx_ledger_ref ON ledger (ref_origin, ref_epoch, ref_seq)")
    conn.execute("DROP TABLE conflicts")
    conn.execute(
        "CREATE TABLE conflicts (origin TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL, ticket_key TEXT, "
        "known INTEGER, found INTEGER, detected_at FLOAT, PRIMARY KEY (origin, epoch, seq))"
    )
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        "CREATE TABLE roster (gate TEXT PRIMARY KEY, public_key BLOB NOT NULL, zone TEXT, directions TEXT NOT NULL, "
        "retired INTEGER NOT NULL)"
    )
    conn.execute("DELETE FROM sync_state WHERE name = 'published'")  # the outbox starts again in the new format


def _schema_6(db: sqlite_utils.Database) -> None:
    """A retired gate's retirement time: its records made before it stay the venue's past (a
    catch-up still passes them on), those after it are refused."""
    db.conn.execute("ALTER TABLE roster ADD COLUMN retired_at FLOAT")


def _schema_7(db: sqlite_utils.Database) -> None:
    """Zone capacity: each zone's capacity from the bundle (``zones``), and each gate's entries
    and exits as this ledger holds them (``occupancy``), kept by triggers on the ledger as records
    are written, whatever writes them (a lane's own records, a merge, ``gate verify``), so a
    decision reads a zone's occupancy from a row per gate, never by counting the ledger.

    An entry is an admission in (from the moment it is recorded: the person is on their way), or
    a forced passage in; a revert takes its admission's entry back. An exit is a confirmed
    passage out, a free exit or a forced passage out (the dashboard counts the same records,
    once passages confirm the admissions: gate.dashboard.venue)."""
    conn = db.conn
    conn.execute("CREATE TABLE zones (zone TEXT PRIMARY KEY, capacity INTEGER NOT NULL)")
    conn.execute("CREATE TABLE occupancy (origin TEXT PRIMARY KEY, entries INTEGER NOT NULL, exits INTEGER NOT NULL) "
                 "WITHOUT ROWID")
    conn.execute(f"""CREATE TRIGGER occupancy_on_record AFTER INSERT ON ledger
        WHEN {_COUNTED}
        BEGIN
            INSERT INTO occupancy (origin, entries, exits) VALUES (NEW.origin, {_ENTRY}, {_EXIT})
            ON CONFLICT (origin) DO UPDATE SET entries = entries + excluded.entries, exits = exits + excluded.exits;
        END""")
    conn.execute(f"""INSERT INTO occupancy (origin, entries, exits)
        SELECT NEW.origin, SUM({_ENTRY}), SUM({_EXIT}) FROM ledger AS NEW WHERE {_COUNTED} GROUP BY NEW.origin""")


# The occupancy a ledger record adds (NEW: the record), for the trigger and the first count.
_COUNTED = ("NEW.kind IN ('admission', 'revert', 'forced_passage', 'free_exit') "
            "OR (NEW.kind = 'passage' AND NEW.direction = 'out')")
_ENTRY = ("CASE WHEN NEW.kind = 'admission' THEN (COALESCE(NEW.direction, 'in') != 'out') "
          "WHEN NEW.kind = 'forced_passage' THEN COALESCE(NEW.direction = 'in', 0) "
          "WHEN NEW.kind = 'revert' THEN -COALESCE((SELECT COALESCE(a.direction, 'in') != 'out' FROM ledger AS a "
          "WHERE a.origin = NEW.ref_origin AND a.epoch = NEW.ref_epoch AND a.seq = NEW.ref_seq AND a.kind = 'admission'), 0) "
          "ELSE 0 END")
_EXIT = ("CASE WHEN NEW.kind IN ('passage', 'forced_passage') THEN COALESCE(NEW.direction = 'out', 0) "
         "WHEN NEW.kind = 'free_exit' THEN 1 ELSE 0 END")


def create_prefix_table(conn: sqlite3.Connection, table: str) -> None:
    """A table of revoked ticket-key prefixes; WITHOUT ROWID: the prefix is the whole row."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (prefix BLOB PRIMARY KEY) WITHOUT ROWID")


def inspect(path: Path) -> tuple[list[str], int]:
    """SQLite's integrity check of a gate database (``[]`` when intact) and how many records its
    ledger holds, read-only and whatever its schema (``gate doctor``). ``StoreError`` when the
    file is not a readable SQLite database."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows = [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
            records = conn.execute("SELECT count(*) FROM ledger").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(str(exc)) from None
    return ([] if rows == ["ok"] else rows), int(records)
