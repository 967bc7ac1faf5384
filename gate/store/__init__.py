"""Everything the gate keeps on disk, in one SQLite file. All SQL lives in this package: every
table, every migration and every query; the rest of gate calls its methods.

``Store`` is the file opened once, with one part per job over the same connection:

- ``ledger``: the records (admissions, reverts, passages, exits) and merge conflicts;
- ``revocations``: revoked tickets (``gate revoke``, the bundle's list, the newest delta);
- ``trust``: stored trust documents and which signed bundle and delta are held;
- ``state``: small named values that outlive a restart (published mark, commanded mode, nonces).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

from gate.decision import revocation_prefix
from gate.policy import TicketState
from gate.store.db import Database, StoreError, ownership_problem, private_database
from gate.store.ledger import ADMISSION, NOT_REVERTED, REVERT, Ledger, Seal
from gate.store.revocations import IS_REVOKED, Revocations
from gate.store.state import State
from gate.store.trust_store import Held, HeldMessage, RosterRow, TrustStore

__all__ = ["Held", "HeldMessage", "RosterRow", "Store", "StoreError", "ownership_problem", "private_database"]

# ?5 the proof key: admitted with it (?4) and not reverted (the ledger's rule, ?3 the revert kind)
_PROOF_USED = f"EXISTS (SELECT 1 FROM ledger AS a WHERE a.proof_key = ?5 AND a.kind = ?4 AND {NOT_REVERTED})"


class Store:
    def __init__(self, path: Path | str, origin: str, *, read_only: bool = False, seal: Seal | None = None) -> None:
        """``seal`` signs this gate's own records as they are appended (venue sync)."""
        self.db = Database(path, read_only=read_only)
        self.state = State(self.db)
        self.created = False  # this open made the database's epoch: it is new (or was emptied)
        self.epoch = self.state.text("epoch")
        if not self.epoch and not read_only:
            self.epoch, self.created = self.state.make_epoch()
        self.ledger = Ledger(self.db, origin, self.epoch, seal)
        self.revocations = Revocations(self.db)
        self.trust = TrustStore(self.db)

    def ticket_state(self, ticket_key: str, proof_key: str | None = None) -> TicketState:
        """Everything a decision needs to know about one ticket, in one call: revoked or not,
        its entries and exits, and whether the proof it came with already opened a gate."""
        revoked, proof_used = self.db.conn.execute(
            f"SELECT {IS_REVOKED}, {_PROOF_USED if proof_key else '0'}",
            (ticket_key, revocation_prefix(ticket_key), REVERT, ADMISSION, proof_key) if proof_key
            else (ticket_key, revocation_prefix(ticket_key)),
        ).fetchone()
        usage = self.ledger.ticket_usage(ticket_key)
        return TicketState(bool(revoked), usage.entries, usage.exits, bool(proof_used))

    def install_bundle(self, prefixes: bytes, documents: list[tuple[str, str, str]], held: HeldMessage, at: float,
                       check: Callable[[Held], None], roster: Sequence[RosterRow] = (),
                       zones: Mapping[str, int] | None = None) -> None:
        """A new signed bundle, whole or not at all: its revocations are staged in chunks (the
        lane goes on deciding meanwhile), then one short transaction checks ``check`` against
        what is held at that moment (another process may have applied a newer one) and swaps in
        the revocations, the documents, the roster, the zones' capacities and the version together."""
        self.revocations.stage_bundle(prefixes)
        with self.db.transaction():
            check(self.trust.held())
            self.revocations.swap_in_staged()
            self.trust.replace_bundle_documents(documents, at)
            self.trust.replace_roster(list(roster))
            self.trust.replace_zones(dict(zones or {}))
            self.trust.set_held("bundle", held, at, replace_all=True)

    def install_delta(self, revoked: bytes, restored: bytes, held: HeldMessage, at: float,
                      check: Callable[[Held], None]) -> None:
        """A revocation delta, in one transaction, if ``check`` accepts what is held."""
        with self.db.transaction():
            check(self.trust.held())
            self.revocations.replace_delta(revoked, restored)
            self.trust.set_held("delta", held, at)

    def close(self) -> None:
        self.db.close()
