"""A venue's keys as its admin and installer make them: the admin key, each gate's identity key
(written as ``gate keygen --out`` writes it, 0600), and the signed bundle whose roster names the
gates. Keys come from the names (sha256), so a test, a harness and the demo agree on them."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from gate.trust import signed


class VenueKeys:
    def __init__(self, venue: str, gates: list[str], admin: SigningKey | None = None) -> None:
        self.venue = venue
        self.admin = admin or self.key("admin")
        self.gates = {gate: self.key(gate) for gate in gates}

    def key(self, name: str) -> SigningKey:
        return SigningKey(hashlib.sha256(f"{self.venue}/{name}".encode()).digest())

    def add(self, gate: str) -> SigningKey:
        self.gates.setdefault(gate, self.key(gate))
        return self.gates[gate]

    @property
    def admin_public_hex(self) -> str:
        return bytes(self.admin.verify_key).hex()

    def identity_file(self, gate: str, folder: Path) -> Path:
        """``gate``'s identity key in ``folder`` (its private half, base64, mode 0600)."""
        path = folder / "identity.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(bytes(self.add(gate))).decode() + "\n")
        return path

    def roster(self, retired: tuple[str, ...] = (), directions: dict[str, tuple[str, ...]] | None = None,
               retired_at: float | None = None) -> list[dict[str, Any]]:
        return [signed.roster_entry(gate, bytes(key.verify_key), retired=gate in retired, retired_at=retired_at,
                                    directions=(directions or {}).get(gate, ("in", "out")))
                for gate, key in sorted(self.gates.items())]

    def bundle(self, version: int = 1, *, documents: list[dict[str, Any]] | None = None, revoked: bytes = b"",
               retired: tuple[str, ...] = (), directions: dict[str, tuple[str, ...]] | None = None,
               retired_at: float | None = None) -> bytes:
        """The admin's signed bundle naming every gate (``retired`` ones retired, at ``retired_at``)."""
        payload = signed.bundle_payload(self.venue, version, time.time(), documents or [], revoked,
                                        self.roster(retired, directions, retired_at))
        return signed.sign(payload, self.admin)
