"""The shipped broker set-up run for real (config/mosquitto/, docs/mqtt.md "Broker set-up"):
real mosquitto processes loading the shipped files as Debian's mosquitto does, over TLS with
certificates made by the recipe in docs/mqtt.md. A stand's broker bridged to the main one
carries the venue's ledger both ways; a client with another lane's password and lane-1's
client id does not throw lane-1 off the bus; client certificates; the ACL's venue level."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest
from hwsim.broker import Mosquitto, Watcher, mosquitto_binary
from nacl.signing import SigningKey

from gate import config as gate_config_module
from gate.field.doctor import OK, Doctor
from tests.support.brokers import (
    BRIDGE_USER,
    SHIPPED,
    VenueCA,
    make_venue_ca,
    password_file,
    recipe,
    shipped_broker,
)
from tests.support.lanes import Lane, Tickets, wait_until
from tests.support.venue import ROOT, VENUE, gate_config, holds_roster, publish_roster

pytestmark = pytest.mark.skipif(mosquitto_binary() is None or shutil.which("openssl") is None,
                                reason="mosquitto or openssl not installed (scripts/test installs them)")


@pytest.fixture(scope="module")
def venue_ca(tmp_path_factory: pytest.TempPathFactory) -> VenueCA:
    """The venue CA and a broker certificate for localhost / 127.0.0.1, made by docs/mqtt.md's steps 1 and 2."""
    return make_venue_ca(tmp_path_factory.mktemp("venue-ca"))


def admit(lane: Lane, ticket: str) -> None:
    decision = lane.present(ticket)
    assert decision["accepted"], decision
    lane.passed(decision)
    lane.idle()


def holds_admission(lane: Lane, origin: str, ticket_key: str) -> bool:
    return any(r["origin"] == origin and r["ticket_key"] == ticket_key for r in lane.records("admission"))


def start(start_lane: Callable[..., Lane], data: dict[str, Any]) -> Lane:
    lane = start_lane(data)
    wait_until(lambda: lane.daemon.sync.connected, 10)
    return lane


def test_two_bridged_brokers_carry_the_venue_ledger_both_ways(
    tmp_path: Path, venue_ca: VenueCA, issuer: SigningKey, tickets: Tickets, start_lane: Callable[..., Lane]
) -> None:
    """The main broker (gate-a, the admin, the dashboards, the bridge's user) and a stand's
    broker (gate-b) with the shipped bridge.conf: a ticket used at either lane is already_used
    at the other."""
    main_users, stand_users = tmp_path / "main-users", tmp_path / "stand-users"
    main = shipped_broker(tmp_path / "main", venue_ca, password_file(main_users, ["gate-a", "venue-admin", "venue-monitor", BRIDGE_USER]))
    stand = shipped_broker(tmp_path / "stand", venue_ca, password_file(stand_users, ["gate-b", "venue-monitor"]), bridge_to=main)
    bridge_state = f"$SYS/broker/connection/{BRIDGE_USER}/state"
    monitor = Watcher(main.port, [bridge_state], "venue-monitor", "pw-venue-monitor", ca_file=venue_ca.ca_file)
    lanes: list[Lane] = []
    try:
        wait_until(lambda: monitor.on(bridge_state)[-1:] == [b"1"], 15)  # the stand's bridge says it is connected
        publish_roster(main, ["gate-a", "gate-b"], username="venue-admin", password="pw-venue-admin")  # on the main broker only
        a = start(start_lane, gate_config(tmp_path, issuer, "gate-a", main, password_file=str(main_users / "gate-a.pw")))
        b = start(start_lane, gate_config(tmp_path, issuer, "gate-b", stand, password_file=str(stand_users / "gate-b.pw")))
        lanes += [a, b]
        wait_until(lambda: holds_roster(a) and holds_roster(b), 10)  # b's came over the bridge, retained

        at_stand = tickets.static()
        admit(b, at_stand)
        key = b.records("admission")[-1]["ticket_key"]
        wait_until(lambda: holds_admission(a, "gate-b", key), 10)
        decision = a.present(at_stand, walks=None)
        assert (decision["accepted"], decision["reason"]) == (False, "already_used")
        assert a.pulses("unlock_in") == 0

        at_main = tickets.static()
        admit(a, at_main)
        key = [r for r in a.records("admission") if r["origin"] == "gate-a"][-1]["ticket_key"]
        wait_until(lambda: holds_admission(b, "gate-a", key), 10)
        assert b.present(at_main, walks=None)["reason"] == "already_used"

        # docs/mqtt.md step 4 against the stand's broker: both lanes' retained statuses, one
        # of them from the other side of the bridge.
        check = recipe("4.").replace("broker.venue.lan", "localhost").replace("-p 8883", f"-p {stand.port}")
        check = check.replace("$(cat venue-monitor.pw)", f"$(cat {stand_users / 'venue-monitor.pw'})")
        check = check.replace("gate/v2/arena/", ROOT).replace("-W 10", "-C 2 -W 10")
        run = subprocess.run(["bash", "-e", "-c", check], cwd=venue_ca.folder, capture_output=True, text=True, timeout=20)
        assert run.returncode == 0, run.stderr
        statuses = dict(line.split(" ", 1) for line in run.stdout.splitlines())
        assert sorted(statuses) == [f"{ROOT}gates/gate-a/status", f"{ROOT}gates/gate-b/status"]
        assert all(json.loads(s)["state"] == "online" for s in statuses.values())
    finally:
        for lane in lanes:  # while their brokers are there to take their "offline"
            lane.stop()
        monitor.close()
        stand.stop()
        main.stop()


def test_the_shipped_config_stops_a_client_id_takeover(
    tmp_path: Path, venue_ca: VenueCA, issuer: SigningKey, start_lane: Callable[..., Lane]
) -> None:
    """gate-b's password sent with gate-a's client id: against the shipped config without
    use_username_as_clientid, gate-a is thrown off the bus (the dashboards see its Last Will);
    with the shipped config, gate-a stays connected and goes on receiving; and gate doctor
    beside the connected lane does not log in as the lane a second time."""
    users = tmp_path / "users"
    passwords = password_file(users, ["gate-a", "gate-b", "venue-monitor"])
    status = f"{ROOT}gates/gate-a/status"

    def venue(name: str, **broker: Any) -> tuple[Mosquitto, dict[str, Any], Lane, Watcher]:
        mosquitto = shipped_broker(tmp_path / name, venue_ca, passwords, **broker)
        data = gate_config(tmp_path / name, issuer, "gate-a", mosquitto, password_file=str(users / "gate-a.pw"))
        lane = start(start_lane, data)
        monitor = Watcher(mosquitto.port, [status, f"{ROOT}ledger/gate-b"], "venue-monitor", "pw-venue-monitor", ca_file=venue_ca.ca_file)
        wait_until(lambda: monitor.last_json(status).get("state") == "online", 10)
        return mosquitto, data, lane, monitor

    def thrown_off(monitor: Watcher) -> bool:
        return any(json.loads(m).get("state") == "offline" for m in monitor.on(status))

    def received(count: int) -> bool:
        """The dashboard and gate-a (which refuses it, counted) both got the ``count``-th message."""
        return len(monitor.on(f"{ROOT}ledger/gate-b")) == count and lane.daemon.sync.counters["refused"] == count

    control, _, lane, monitor = venue("control", drop=("use_username_as_clientid true",))
    try:
        attacker = Watcher(control.port, [], "gate-b", "pw-gate-b", client_id=lane.daemon.sync.client_id, ca_file=venue_ca.ca_file)
        wait_until(lambda: thrown_off(monitor), 10)  # the takeover works on plain mosquitto
        attacker.close()
        lane.stop()
    finally:
        monitor.close()
        control.stop()

    shipped, data, lane, monitor = venue("shipped")
    try:
        sent = 0
        for client_id in (lane.daemon.sync.client_id, "gate-a"):  # the id the lane sends, and the one the broker gives it
            attacker = Watcher(shipped.port, [], "gate-b", "pw-gate-b", client_id=client_id, ca_file=venue_ca.ca_file)
            # A message on the attacker's own topic, after its login: the broker sends the lane's
            # Last Will (were it thrown off) before it, and the lane gets it on its connection.
            attacker.publish(f"{ROOT}ledger/gate-b", b"{}")
            sent += 1
            wait_until(lambda count=sent: thrown_off(monitor) or received(count), 10)
            assert not thrown_off(monitor), f"client id {client_id!r} with gate-b's password threw gate-a off the bus"
            assert lane.daemon.sync.connected
            attacker.close()

        doctor = Doctor(gate_config_module.parse(data, "gate.toml"))
        assert doctor.check_lane().result == OK
        check = doctor.check_broker()
        assert check.result == OK and "the lane is connected (its own connection)" in check.detail, check
        marker = Watcher(shipped.port, [], "gate-b", "pw-gate-b", ca_file=venue_ca.ca_file)
        marker.publish(f"{ROOT}ledger/gate-b", b"{}")
        wait_until(lambda: thrown_off(monitor) or received(sent + 1), 10)
        assert not thrown_off(monitor), "gate doctor threw gate-a off the bus"
        assert lane.daemon.sync.connected
        marker.close()
        lane.stop()
    finally:
        monitor.close()
        shipped.stop()


def test_with_client_certificates_required_a_client_without_one_gets_nowhere(
    tmp_path: Path, venue_ca: VenueCA, issuer: SigningKey, start_lane: Callable[..., Lane]
) -> None:
    """docs/mqtt.md step 5: the lane with its certificate (cert_file, key_file) connects to the
    shipped config with require_certificate on; mosquitto_sub with the right password but no
    certificate is refused, and with a certificate of the venue CA it reads the lane's status."""
    users = tmp_path / "users"
    broker = shipped_broker(tmp_path / "broker", venue_ca, password_file(users, ["gate-a", "venue-monitor"]),
                            uncomment=("require_certificate true",))
    try:
        cert, key = venue_ca.client_certificate("gate-a")
        lane = start(start_lane, gate_config(tmp_path, issuer, "gate-a", broker, password_file=str(users / "gate-a.pw"),
                                             cert_file=str(cert), key_file=str(key)))
        sub = ["mosquitto_sub", "-h", "localhost", "-p", str(broker.port), "--cafile", str(venue_ca.ca_file),
               "-u", "venue-monitor", "-P", "pw-venue-monitor", "-t", f"{ROOT}gates/gate-a/status", "-C", "1", "-W", "10"]
        without = subprocess.run(sub, capture_output=True, text=True, timeout=20)
        assert without.returncode != 0 and not without.stdout
        monitor_cert, monitor_key = venue_ca.client_certificate("venue-monitor")
        with_cert = subprocess.run([*sub, "--cert", str(monitor_cert), "--key", str(monitor_key)], capture_output=True, text=True, timeout=20)
        assert with_cert.returncode == 0, with_cert.stderr
        assert json.loads(with_cert.stdout)["state"] == "online"
        lane.stop()
    finally:
        broker.stop()


def test_the_shipped_acl_and_bridge_pin_the_venue_level() -> None:
    """No '+' or '#' in the venue level: on a broker shared by several venues, credentials of
    one venue reach nothing of another. The files say VENUE, which the set-up replaces."""
    topics = [line.split()[-1] for line in (SHIPPED / "acl").read_text().splitlines() if line.startswith(("pattern ", "topic "))]
    bridged = [line.split()[1] for line in (SHIPPED / "bridge.conf").read_text().splitlines() if line.startswith("topic ")]
    assert topics and bridged == ["gate/v2/VENUE/#"]
    for topic in topics:
        assert topic.startswith(("gate/v2/VENUE/", "$SYS/broker/connection/")), topic
    assert VENUE not in (SHIPPED / "acl").read_text()
