"""Trust kept in the database: the venue's roster of gates, imported trust documents (``gate keys import`` and a bundle's,
stored as ``bundle/…``) as their JSON text, and which signed bundle and delta are held.

Documents are kept as text and parsed by the caller (``gate.trust``): this module knows rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from gate.store.db import Database

BUNDLE_DOCUMENTS = "bundle/"  # name prefix of the documents a bundle brought


@dataclass(frozen=True)
class Held:
    """The bundle and delta a gate holds (version 0: none)."""

    bundle_version: int = 0
    bundle_sha256: str = ""
    issued_at: float = 0.0
    revoked: int = 0
    documents: int = 0
    delta_version: int = 0
    delta_sha256: str = ""
    delta_revoked: int = 0
    delta_restored: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.bundle_version, "delta": self.delta_version, "issued_at": round(self.issued_at, 3),
                "revoked": self.revoked, "documents": self.documents, "delta_revoked": self.delta_revoked,
                "delta_restored": self.delta_restored}


@dataclass(frozen=True)
class RosterRow:
    """One gate of the venue, as the admin's bundle names it (``gate.trust.roster`` reads it)."""

    gate: str
    public_key: bytes  # Ed25519: what its ledger records are signed with
    zone: str | None
    directions: tuple[str, ...]  # the directions it may admit in ("in", "out")
    retired: bool  # its records are refused from the bundle that retires it on…
    retired_at: float | None = None  # …but those it made before this time (passed on by a peer) are kept


@dataclass(frozen=True)
class HeldMessage:
    """One row of ``trust_state``: a bundle or delta as applied."""

    version: int
    base: int
    issued_at: float
    sha256: str
    revoked: int
    restored: int
    documents: int


class TrustStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- documents -----------------------------------------------------------------------

    def documents(self) -> list[tuple[str, str]]:
        """``(name, JSON text)`` of every stored document, by name."""
        return self.db.conn.execute("SELECT name, body FROM trust_documents ORDER BY name").fetchall()

    def document_list(self) -> list[dict[str, Any]]:
        rows = self.db.conn.execute("SELECT name, format, imported_at, sha256, length(body) FROM trust_documents ORDER BY name")
        return [dict(zip(("name", "format", "imported_at", "sha256", "bytes"), row)) for row in rows]

    def store_document(self, name: str, fmt: str, body: str, at: float) -> None:
        """Keep a trust document (replacing one of the same name)."""
        self.db.conn.execute(
            "INSERT OR REPLACE INTO trust_documents (name, format, imported_at, sha256, body) VALUES (?, ?, ?, ?, ?)",
            (name, fmt, at, hashlib.sha256(body.encode()).hexdigest(), body),
        )

    def remove_document(self, name: str) -> bool:
        return self.db.conn.execute("DELETE FROM trust_documents WHERE name = ?", (name,)).rowcount > 0

    def replace_bundle_documents(self, documents: list[tuple[str, str, str]], at: float) -> None:
        """Inside the caller's transaction: a new bundle's ``(name, format, body)`` replace the
        previous bundle's documents."""
        self.db.conn.execute("DELETE FROM trust_documents WHERE name LIKE ?", (BUNDLE_DOCUMENTS + "%",))
        for name, fmt, body in documents:
            self.store_document(name, fmt, body, at)

    def generation(self) -> tuple[int, str]:
        """Changes whenever a document is imported, replaced or removed. (Row ids would not do:
        SQLite hands a deleted document's row id to the next one.)"""
        row = self.db.conn.execute(
            "SELECT COUNT(*), COALESCE(group_concat(name || ':' || sha256 || ':' || imported_at, ','), '') "
            "FROM (SELECT name, sha256, imported_at FROM trust_documents ORDER BY name)"
        ).fetchone()
        return (row[0], row[1])

    # --- the venue's roster of gates (from the bundle) -----------------------------------

    def roster(self) -> list[RosterRow]:
        """Every gate of the venue the held bundle names, by gate id."""
        return [RosterRow(gate, bytes(key), zone, tuple(json.loads(directions)), bool(retired), retired_at)
                for gate, key, zone, directions, retired, retired_at in self.db.conn.execute(
                    "SELECT gate, public_key, zone, directions, retired, retired_at FROM roster ORDER BY gate")]

    def replace_roster(self, rows: list[RosterRow]) -> None:
        """Inside the caller's transaction: a new bundle's roster replaces the previous one."""
        conn = self.db.conn
        conn.execute("DELETE FROM roster")
        conn.executemany(
            "INSERT INTO roster (gate, public_key, zone, directions, retired, retired_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(r.gate, r.public_key, r.zone, json.dumps(list(r.directions)), int(r.retired), r.retired_at) for r in rows])

    # --- zone capacities (from the bundle) ----------------------------------------------

    def zones(self) -> dict[str, int]:
        """Each zone's capacity as the held bundle gives it."""
        return {zone: int(capacity) for zone, capacity in self.db.conn.execute("SELECT zone, capacity FROM zones")}

    def replace_zones(self, zones: dict[str, int]) -> None:
        """Inside the caller's transaction: a new bundle's capacities replace the previous ones."""
        self.db.conn.execute("DELETE FROM zones")
        self.db.conn.executemany("INSERT INTO zones (zone, capacity) VALUES (?, ?)", sorted(zones.items()))

    # --- the signed bundle and delta held -------------------------------------------------

    def held(self) -> Held:
        rows = {row[0]: row[1:] for row in self.db.conn.execute(
            "SELECT name, version, sha256, issued_at, revoked, restored, documents FROM trust_state")}
        bundle, delta = rows.get("bundle"), rows.get("delta")
        return Held(
            bundle_version=bundle[0] if bundle else 0,
            bundle_sha256=bundle[1] if bundle else "",
            issued_at=bundle[2] if bundle else 0.0,
            revoked=bundle[3] if bundle else 0,
            documents=bundle[5] if bundle else 0,
            delta_version=delta[0] if delta else 0,
            delta_sha256=delta[1] if delta else "",
            delta_revoked=delta[3] if delta else 0,
            delta_restored=delta[4] if delta else 0,
        )

    def set_held(self, name: str, message: HeldMessage, at: float, *, replace_all: bool = False) -> None:
        """Inside the caller's transaction: ``name`` ("bundle" or "delta") is now held; a new
        bundle (``replace_all``) forgets the previous bundle's delta."""
        if replace_all:
            self.db.conn.execute("DELETE FROM trust_state")
        self.db.conn.execute(
            "INSERT OR REPLACE INTO trust_state (name, version, base, issued_at, sha256, revoked, restored, documents, applied_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, message.version, message.base, message.issued_at, message.sha256, message.revoked, message.restored,
             message.documents, at),
        )
