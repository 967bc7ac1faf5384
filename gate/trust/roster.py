"""The venue's roster of gates, from the admin's signed bundle: which gates there are, the key
each signs its ledger records with, its zone (whose capacity its lanes share), the directions it
may admit in, and whether it is retired. A record is taken in only from a gate on the roster, not retired, signed by its key.

A stolen gate's broker password then writes nothing any other gate takes in; a stolen gate's key
can do only what that gate could do at its own lane, and the next bundle retires it.
"""

from __future__ import annotations

from typing import Iterable

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from gate.store.trust_store import RosterRow


class Roster:
    """An immutable snapshot (read by the bus thread while the loop may swap in a new one)."""

    def __init__(self, rows: Iterable[RosterRow] = ()) -> None:
        self.gates: dict[str, RosterRow] = {row.gate: row for row in rows}

    def __len__(self) -> int:
        return len(self.gates)

    def entry(self, gate: str) -> RosterRow | None:
        return self.gates.get(gate)

    def zone_of(self, gate: str) -> str | None:
        row = self.gates.get(gate)
        return row.zone if row is not None and row.zone else None

    def zone_lanes(self, zone: str) -> frozenset[str]:
        """The gates of ``zone`` that are not retired: the lanes that share its capacity."""
        return frozenset(g for g, row in self.gates.items() if row.zone == zone and not row.retired)

    def zone_members(self, zone: str) -> frozenset[str]:
        """Every gate the roster puts in ``zone``, retired ones too: the people a retired gate let
        in before it was retired are still inside."""
        return frozenset(g for g, row in self.gates.items() if row.zone == zone)

    def verifies(self, gate: str, message: bytes, signature: bytes) -> bool:
        """Whether ``gate``'s key signed ``message``."""
        row = self.gates.get(gate)
        if row is None or len(signature) != 64:
            return False
        try:
            crypto_sign_open(signature + message, row.public_key)
        except BadSignatureError:
            return False
        return True
