"""Small named state that must outlive a restart: the database's epoch, the venue sync's
published mark, the mode a signed command set, and the nonces of signed commands already
carried out."""

from __future__ import annotations

import secrets

from gate.store.db import WRITE_LOCK, Database

PUBLISHED_MARK = "published"  # the seq up to which the broker acknowledged this gate's records
COMMANDED_MODE = "commanded_mode"  # the index in gate.decision.MODES of the last set_mode command


class State:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, name: str, default: int = 0) -> int:
        row = self.db.conn.execute("SELECT value FROM sync_state WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else default

    def set(self, name: str, value: int) -> None:
        with WRITE_LOCK:
            self.db.conn.execute("INSERT OR REPLACE INTO sync_state (name, value) VALUES (?, ?)", (name, value))

    def text(self, name: str, default: str = "") -> str:
        row = self.db.conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else default

    def make_epoch(self) -> tuple[str, bool]:
        """This database's epoch, made now unless another process just made it: (epoch, made here)."""
        candidate = secrets.token_hex(8)
        with self.db.transaction() as conn:
            made = conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('epoch', ?)", (candidate,)).rowcount > 0
        return self.text("epoch"), made

    def remember_command(self, nonce: str, issued_at: float, now: float, forget_before: float) -> bool:
        """Note a signed command's nonce; False when it was seen before (a replay). Nonces issued
        before ``forget_before`` are dropped: any replay of them is refused as stale anyway."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM command_nonces WHERE issued_at < ?", (forget_before,))
            return conn.execute(
                "INSERT OR IGNORE INTO command_nonces (nonce, issued_at, seen_at) VALUES (?, ?, ?)",
                (nonce, issued_at, now),
            ).rowcount > 0
