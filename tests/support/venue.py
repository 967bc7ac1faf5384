"""What the venue tests share: the admin's and a stranger's keys, the topic root, a lane's
config on the venue bus, the shipped ACL, and what a lane holds of the signed bundles."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hwsim.broker import Mosquitto
from nacl.signing import SigningKey

from tests.support.lanes import Lane, base_config

ADMIN = SigningKey(b"\x07" * 32)
STRANGER = SigningKey(b"\x08" * 32)


def gt1_document(issuer: SigningKey) -> dict[str, Any]:
    return {"format": "gt1", "issuers": [{"name": "box office", "public_key": bytes(issuer.verify_key).hex()}]}


def held_version(lane: Lane) -> tuple[int, int]:
    conn = sqlite3.connect(lane.daemon.config.database)
    try:
        rows = dict(conn.execute("SELECT name, version FROM trust_state").fetchall())
    finally:
        conn.close()
    return rows.get("bundle", 0), rows.get("delta", 0)


ROOT = "gate/v1/test-venue/"


def gate_config(tmp_path: Path, issuer: SigningKey, gate_id: str, broker: Mosquitto, **sync: Any) -> dict[str, Any]:
    """A lane of the venue: its own state, scanner and simulator; quick turnstile timings."""
    home = tmp_path / gate_id
    home.mkdir(exist_ok=True)
    data = base_config(home, issuer)
    data["gate"]["id"] = gate_id
    data["turnstile"].update({"pulse_ms": 20, "deny_display": 0.0})
    data["simulator"]["walk_time"] = 0.01
    data["sync"] = broker.sync_table(**sync)
    return data


ACL = Path(__file__).resolve().parents[2] / "config" / "mosquitto" / "acl"
