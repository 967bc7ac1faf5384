"""What the venue tests share: the admin's and a stranger's keys, the topic root, a lane's
config on the venue bus, the shipped ACL, and what a lane holds of the signed bundles."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hwsim.broker import Mosquitto, Watcher
from hwsim.venue_keys import VenueKeys
from nacl.signing import SigningKey

from tests.support.lanes import Lane, base_config

ADMIN = SigningKey(b"\x07" * 32)
STRANGER = SigningKey(b"\x08" * 32)
VENUE = "test-venue"
KEYS = VenueKeys(VENUE, [], admin=ADMIN)  # each gate's identity key, made from its name


def gt1_document(issuer: SigningKey) -> dict[str, Any]:
    return {"format": "gt1", "issuers": [{"name": "box office", "public_key": bytes(issuer.verify_key).hex()}]}


def held_version(lane: Lane) -> tuple[int, int]:
    conn = sqlite3.connect(lane.daemon.config.database)
    try:
        rows = dict(conn.execute("SELECT name, version FROM trust_state").fetchall())
    finally:
        conn.close()
    return rows.get("bundle", 0), rows.get("delta", 0)


ROOT = f"gate/v2/{VENUE}/"


def gate_config(tmp_path: Path, issuer: SigningKey, gate_id: str, broker: Mosquitto, **sync: Any) -> dict[str, Any]:
    """A lane of the venue: its own state, scanner and simulator; quick turnstile timings."""
    home = tmp_path / gate_id
    home.mkdir(exist_ok=True)
    data = base_config(home, issuer)
    data["gate"]["id"] = gate_id
    data["turnstile"].update({"pulse_ms": 20, "deny_display": 0.0})
    data["simulator"]["walk_time"] = 0.01
    # recovery: a new database (every test lane's) decides at once, caught up or not; the
    # recovery tests ask for "wait"
    data["sync"] = broker.sync_table(**{"identity_file": str(KEYS.identity_file(gate_id, home)), "recovery": "admit",
                                        "recovery_wait": 0, **sync})
    data["trust"]["admin_key"] = KEYS.admin_public_hex
    return data


def publish_roster(broker: Mosquitto, gates: list[str], *, version: int = 1, retired: tuple[str, ...] = (),
                   username: str | None = None, password: str | None = None) -> None:
    """The venue admin's bundle naming ``gates`` and no other (retained on the broker): what lets
    gates take in each other's records. (The keys come from the names, as ``KEYS`` makes them;
    a gate of an earlier test is not on it: a roster gate that never answers keeps a new
    database recovering.)"""
    for gate in gates:
        KEYS.add(gate)
    roster = VenueKeys(VENUE, list(gates), admin=ADMIN)
    watcher = Watcher(broker.port, [], username=username, password=password, ca_file=getattr(broker, "ca_file", None))
    try:
        watcher.publish(f"{ROOT}bundle", roster.bundle(version, retired=retired), retain=True)
    finally:
        watcher.close()


def holds_roster(lane: Lane, version: int = 1) -> bool:
    return held_version(lane)[0] >= version


SHIPPED_ACL = Path(__file__).resolve().parents[2] / "config" / "mosquitto" / "acl"


def venue_acl(folder: Path) -> Path:
    """The shipped ACL made for this venue, as docs/mqtt.md tells the technician to."""
    path = folder / "gate-acl"
    path.write_text(SHIPPED_ACL.read_text().replace("VENUE", VENUE))
    return path
