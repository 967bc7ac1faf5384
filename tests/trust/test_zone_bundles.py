"""Zone capacities in the admin's signed bundle: ``gate bundle make --roster`` takes them from the
admin's roster file (checked strictly: a misspelt zone is an error, not a zone without a limit),
the signed bundle carries them, a gate that loads it holds them, and a bundle whose capacities
are wrong is refused whole."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from gate.cli import main as cli
from gate.errors import SignedError
from gate.store import Store
from gate.trust import bundles, signed
from tests.support.lanes import base_config, write_config
from tests.support.venue import ADMIN

VENUE = "test-venue"
LANES = {"lane-1": "north", "lane-2": "north", "lane-3": "south"}


def roster_file(tmp_path: Path, zones: Any) -> Path:
    gates = [{"gate": gate, "public_key": base64.b64encode(bytes(SigningKey(bytes([n + 1]) * 32).verify_key)).decode(),
              "zone": zone} for n, (gate, zone) in enumerate(LANES.items())]
    path = tmp_path / "roster.json"
    path.write_text(json.dumps({"gates": gates, "zones": zones}))
    return path


@pytest.fixture
def config(tmp_path: Path, issuer: SigningKey) -> Path:
    data = base_config(tmp_path, issuer)
    data["trust"]["admin_key"] = bytes(ADMIN.verify_key).hex()
    return write_config(tmp_path / "gate.toml", data)


def gate(config: Path, capsys: Any, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main([*argv, "--config", str(config)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_admin_s_capacities_travel_in_the_signed_bundle_and_the_gate_holds_them(tmp_path: Path, config: Path,
                                                                                   capsys: Any) -> None:
    key = tmp_path / "admin.key"
    key.write_text(base64.b64encode(bytes(ADMIN)).decode() + "\n")
    roster = roster_file(tmp_path, {"north": 5000, "south": 1200})
    code, out, err = gate(config, capsys, "bundle", "make", "--version", "7", "--roster", str(roster),
                          "--out", str(tmp_path / "b.json"))
    assert code == 0, err
    assert json.loads(out)["zones"] == {"north": 5000, "south": 1200}
    assert gate(config, capsys, "bundle", "sign", str(tmp_path / "b.json"), "--key", str(key), "--out",
                str(tmp_path / "b.signed"))[0] == 0
    code, out, err = gate(config, capsys, "bundle", "load", str(tmp_path / "b.signed"))
    assert code == 0 and json.loads(out)["outcome"] == "applied", err
    store = Store(tmp_path / "state" / "gate.db", "lane-1", read_only=True)
    try:
        assert store.trust.zones() == {"north": 5000, "south": 1200}
    finally:
        store.close()


@pytest.mark.parametrize("zones, says", [
    ({"nroth": 5000}, "zones.nroth: no gate of the roster is in zone 'nroth' (the gates' zones: north, south)"),
    ({"north": 0}, "zones.north: a capacity is a whole number of people, 1 to 10000000"),
    ({"north": "5000"}, "zones.north: a capacity is a whole number"),
    ({"north": True}, "zones.north: a capacity is a whole number"),
    ({"north": 2.5}, "zones.north: a capacity is a whole number"),
    ({"north": 10_000_001}, "zones.north: a capacity is a whole number"),
    ([5000], "zones: must be an object"),
])
def test_a_wrong_capacity_in_the_roster_file_is_named_and_nothing_is_made(tmp_path: Path, config: Path, capsys: Any,
                                                                           zones: Any, says: str) -> None:
    code, _, err = gate(config, capsys, "bundle", "make", "--roster", str(roster_file(tmp_path, zones)),
                        "--out", str(tmp_path / "b.json"))
    assert code == 2 and says in err, err
    assert not (tmp_path / "b.json").exists()


def signed_bundle(zones: list[dict[str, Any]], roster_zone: str | None = "north") -> bytes:
    roster = [signed.roster_entry("lane-1", bytes(SigningKey(b"\x01" * 32).verify_key), zone=roster_zone)]
    payload = signed.bundle_payload(VENUE, 1, time.time(), [], b"", roster)
    payload["zones"] = zones
    return signed.sign(payload, ADMIN)


@pytest.mark.parametrize("zones, says", [
    ([{"zone": "south", "capacity": 10}], "payload.zones[0].zone: 'south' is no gate's zone on the roster"),
    ([{"zone": "north", "capacity": 10}, {"zone": "north", "capacity": 20}], "payload.zones[1].zone: 'north' named twice"),
    ([{"zone": "north", "capacity": 0}], "payload.zones[0].capacity: must be an integer ≥ 1"),
    ([{"zone": "north", "capacity": 10.5}], "payload.zones[0].capacity: must be an integer"),
    ([{"zone": "north", "capacity": 10_000_001}], "payload.zones[0].capacity: more than 10000000"),
    ([{"zone": "north", "capacity": 10, "alarm": 90}], "alarm"),
    ([{"capacity": 10}], "payload.zones[0].zone: required"),
])
def test_a_signed_bundle_with_wrong_capacities_is_refused_whole(zones: list[dict[str, Any]], says: str) -> None:
    with pytest.raises(SignedError) as refused:
        signed.read(signed_bundle(zones), bytes(ADMIN.verify_key), VENUE)
    assert refused.value.kind == "malformed" and says in str(refused.value)


def test_a_new_bundle_replaces_the_capacities_and_one_without_them_leaves_none(tmp_path: Path) -> None:
    store = Store(tmp_path / "gate.db", "lane-1")
    try:
        first = signed.read(signed_bundle([{"zone": "north", "capacity": 10}]), bytes(ADMIN.verify_key), VENUE)
        assert isinstance(first, signed.Bundle) and first.zones == {"north": 10}
        bundles.apply(store, first)
        assert store.trust.zones() == {"north": 10}
        payload = signed.bundle_payload(VENUE, 2, time.time(), [], b"", [signed.roster_entry(
            "lane-1", bytes(SigningKey(b"\x01" * 32).verify_key), zone="north")])
        bundles.apply(store, signed.read(signed.sign(payload, ADMIN), bytes(ADMIN.verify_key), VENUE))  # type: ignore[arg-type]
        assert store.trust.zones() == {}
    finally:
        store.close()
