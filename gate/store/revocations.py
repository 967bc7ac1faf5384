"""Revoked tickets, from three sources: ``gate revoke`` at this gate (whole ticket keys), the
signed bundle (key prefixes, up to millions) and the newest revocation delta (prefixes revoked or
restored since the bundle).

A bundle's list is written in chunks into a staging table that no decision reads, each chunk its
own short transaction, and swapped in by the caller's last transaction (``swap_in_staged``): the
decision loop's admissions wait at most one chunk, and a reader sees the old list or the new one.
"""

from __future__ import annotations

import time
from typing import Iterable, Iterator

from gate.decision import PREFIX_BYTES
from gate.store.db import Database, create_prefix_table

STAGING = "bundle_revocations_staging"
CHUNK = 1_000  # rows per staging transaction: about 4 ms of write lock
CHUNK_PAUSE = 0.0005  # seconds between them: the decision loop's admissions go in between
_PREFIX_HEX = 2 * PREFIX_BYTES

IS_REVOKED = (  # ?1 the ticket key, ?2 its prefix; shared with Store.ticket_state
    "EXISTS (SELECT 1 FROM revocations WHERE ticket_key = ?1) OR COALESCE("
    "(SELECT revoked FROM delta_revocations WHERE prefix = ?2), "
    "EXISTS (SELECT 1 FROM bundle_revocations WHERE prefix = ?2))"
)


class Revocations:
    def __init__(self, db: Database) -> None:
        self.db = db

    def revoke(self, entries: Iterable[tuple[str, str]], at: float) -> int:
        """Revoke ticket keys at this gate (``(ticket_key, note)``); returns how many were new."""
        with self.db.transaction() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO revocations (ticket_key, note, at) VALUES (?, ?, ?)",
                ((key, note, at) for key, note in entries),
            )
            return conn.total_changes - before

    def is_revoked(self, ticket_key: str) -> bool:
        """Revoked here, by the newest delta, or by the bundle (unless the delta restored it)."""
        row = self.db.conn.execute(f"SELECT {IS_REVOKED}", (ticket_key, bytes.fromhex(ticket_key[:_PREFIX_HEX]))).fetchone()
        return bool(row[0])

    def stage_bundle(self, prefixes: bytes, pause: float = CHUNK_PAUSE) -> None:
        """Write a bundle's revoked prefixes (concatenated) into the staging table, in chunks."""
        conn = self.db.conn
        conn.execute(f"DROP TABLE IF EXISTS {STAGING}")
        create_prefix_table(conn, STAGING)
        with self.db.relaxed_durability():  # a power cut only loses the staging table
            for chunk in _chunks(prefixes):
                with self.db.transaction():
                    conn.executemany(f"INSERT OR IGNORE INTO {STAGING} (prefix) VALUES (?)", chunk)
                time.sleep(pause)

    def swap_in_staged(self) -> None:
        """Inside the caller's transaction: the staged list becomes the bundle's, the delta's
        changes are dropped (a delta belongs to the bundle it was made for)."""
        conn = self.db.conn
        conn.execute("DROP TABLE bundle_revocations")
        conn.execute(f"ALTER TABLE {STAGING} RENAME TO bundle_revocations")
        conn.execute("DELETE FROM delta_revocations")

    def replace_delta(self, revoked: bytes, restored: bytes) -> None:
        """Inside the caller's transaction: the newest delta's changes replace the previous
        delta's (deltas are cumulative)."""
        conn = self.db.conn
        conn.execute("DELETE FROM delta_revocations")
        for chunk in _chunks(restored):
            conn.executemany("INSERT OR REPLACE INTO delta_revocations (prefix, revoked) VALUES (?, 0)", chunk)
        for chunk in _chunks(revoked):
            conn.executemany("INSERT OR REPLACE INTO delta_revocations (prefix, revoked) VALUES (?, 1)", chunk)


def _chunks(prefixes: bytes) -> Iterator[list[tuple[bytes]]]:
    step = PREFIX_BYTES * CHUNK
    for start in range(0, len(prefixes), step):
        block = prefixes[start : start + step]
        yield [(block[i : i + PREFIX_BYTES],) for i in range(0, len(block), PREFIX_BYTES)]
