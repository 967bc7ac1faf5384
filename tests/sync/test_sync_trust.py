"""Signed bundles, deltas and commands over a real mosquitto, sent with the ``gate`` command as
the venue admin sends them: every gate takes them in, forgeries and replays change nothing."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from hwsim.broker import Mosquitto, Watcher, mosquitto_binary
from nacl.signing import SigningKey

from gate.cli import main as cli
from gate.clock import SystemClock
from gate.trust import signed
from tests.support.lanes import Lane, Tickets, wait_until, write_config
from tests.support.venue import ADMIN, ROOT, STRANGER, gate_config, venue_acl
from tests.support.venue import held_version as held

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed (scripts/test installs it)")


class Venue:
    """Gates that trust the admin key, and the admin's ``gate`` command on gate-a's config."""

    def __init__(self, tmp_path: Path, issuer: SigningKey, broker: Mosquitto, start_lane: Callable[..., Lane], capsys: Any) -> None:
        self.tmp_path, self.issuer, self.broker, self.start_lane, self.capsys = tmp_path, issuer, broker, start_lane, capsys
        self.configs: dict[str, dict[str, Any]] = {}
        self.key = tmp_path / "admin.key"
        self.key.write_text(base64.b64encode(bytes(ADMIN)).decode())
        self.admin_config = write_config(tmp_path / "admin.toml", self.config("gate-a"))

    def config(self, gate_id: str, **sync: Any) -> dict[str, Any]:
        if gate_id not in self.configs:
            data = gate_config(self.tmp_path, self.issuer, gate_id, self.broker, **sync)
            data["trust"]["admin_key"] = bytes(ADMIN.verify_key).hex()
            self.configs[gate_id] = data
        return self.configs[gate_id]

    def start(self, gate_id: str) -> Lane:
        lane = self.start_lane(self.config(gate_id))
        wait_until(lambda: lane.daemon.sync.connected, 10)
        return lane

    def gate(self, *argv: str) -> tuple[int, Any]:
        """``gate ARGV --config admin.toml``: exit code and its last JSON line."""
        self.capsys.readouterr()
        code = cli.main([*argv, "--config", str(self.admin_config)])
        lines = self.capsys.readouterr().out.strip().splitlines()
        return code, json.loads(lines[-1]) if lines else None

    def publish(self, *make_args: str, key: Path | None = None) -> dict[str, Any]:
        payload, signed_file = self.tmp_path / "payload.json", self.tmp_path / "signed.json"
        assert self.gate("bundle", "make", "--out", str(payload), *make_args)[0] == 0
        assert self.gate("bundle", "sign", str(payload), "--key", str(key or self.key), "--out", str(signed_file))[0] == 0
        code, out = self.gate("bundle", "publish", str(signed_file))
        assert code == 0, out
        return out


@pytest.fixture
def venue(tmp_path: Path, issuer: SigningKey, broker: Mosquitto, start_lane: Callable[..., Lane], capsys: Any) -> Venue:
    return Venue(tmp_path, issuer, broker, start_lane, capsys)


def status(watcher: Watcher, gate_id: str) -> dict[str, Any]:
    return watcher.last_json(f"{ROOT}gates/{gate_id}/status")


def test_a_bundle_and_a_delta_reach_every_gate_and_one_that_starts_later(venue: Venue, tickets: Tickets, broker: Mosquitto) -> None:
    a, b = venue.start("gate-a"), venue.start("gate-b")
    first, second = tickets.static(), tickets.static()
    watcher = Watcher(broker.port, [ROOT + "gates/+/status"])

    assert venue.publish("--version", "10", "--revoke", first)["published"] == ROOT + "bundle"
    wait_until(lambda: held(a) == (10, 0) and held(b) == (10, 0), 10)
    assert b.present(first, walks=None)["reason"] == "revoked"
    b.idle()

    assert venue.publish("--delta", "--base", "10", "--version", "1", "--revoke", second)["published"] == ROOT + "bundle/delta"
    wait_until(lambda: held(a) == (10, 1) and held(b) == (10, 1), 10)
    for lane in (a, b):
        assert lane.present(second, walks=None)["reason"] == "revoked"
        lane.idle()
    wait_until(lambda: status(watcher, "gate-a").get("bundle", {}).get("delta") == 1, 10)  # reported at once
    assert status(watcher, "gate-a")["bundle"]["version"] == 10

    c = venue.start("gate-c")  # installed after both went out: the retained ones bring it up to date
    wait_until(lambda: held(c) == (10, 1), 10)
    assert c.present(first, walks=None)["reason"] == "revoked"
    c.idle()
    assert c.present(second, walks=None)["reason"] == "revoked"
    watcher.close()


def test_a_forged_bundle_on_the_bus_is_refused_reported_and_changes_nothing(venue: Venue, tickets: Tickets, broker: Mosquitto) -> None:
    a = venue.start("gate-a")
    revoked = tickets.static()
    venue.publish("--version", "10", "--revoke", revoked)
    wait_until(lambda: held(a) == (10, 0), 10)
    events: list[dict[str, Any]] = []
    a.daemon.loop.listeners.append(lambda kind, payload: events.append(payload) if kind == "bundle" else None)
    watcher = Watcher(broker.port, [ROOT + "gates/+/status"])

    stranger = venue.tmp_path / "stranger.key"
    stranger.write_text(base64.b64encode(bytes(STRANGER)).decode())
    forged = signed.sign(signed.bundle_payload("test-venue", 11, time.time(), [], b""), STRANGER)  # would un-revoke all
    watcher.publish(ROOT + "bundle", forged, retain=True)
    # Wait for the forged bundle's own event: the lane may still be telling its listeners that
    # bundle 10 was applied (its state was visible before this listener was attached).
    refusals = wait_until(lambda: [e for e in events if e["outcome"] == "refused"], 10)
    assert [e["kind"] for e in refusals] == ["wrong_key"]
    assert all(e["held"]["version"] == 10 for e in events)
    wait_until(lambda: status(watcher, "gate-a").get("bundle", {}).get("refused") == 1, 10)
    assert "signed by admin key" in status(watcher, "gate-a")["bundle"]["last_refusal"]
    assert held(a) == (10, 0)
    assert a.present(revoked, walks=None)["reason"] == "revoked"
    watcher.close()


def command_result(watcher: Watcher, gate_id: str, nonce: str) -> dict[str, Any] | None:
    for payload in watcher.on(f"{ROOT}gates/{gate_id}/cmd/result"):
        answer = json.loads(payload)
        if answer["nonce"] == nonce:
            return answer
    return None


def test_signed_commands_are_carried_out_once_and_forgeries_refused(venue: Venue, tickets: Tickets, broker: Mosquitto) -> None:
    a = venue.start("gate-a")
    code, answer = venue.gate("command", "gate-a", "set_mode", "locked", "--key", str(venue.key))
    assert code == 0 and answer["ok"] and answer["result"] == "mode is now locked", answer
    assert a.daemon.loop.turnstile.mode == "locked"
    assert a.present(tickets.static(), walks=None)["reason"] == "gate_closed"  # (red stays on: locked)

    watcher = Watcher(broker.port, [ROOT + "gates/+/cmd/result"])
    code, printed = venue.gate("command", "gate-a", "set_mode", "normal", "--key", str(venue.key), "--print")
    message, nonce = json.dumps(printed).encode(), json.loads(printed["signed"])["nonce"]  # as an eavesdropper has it
    watcher.publish(ROOT + "gates/gate-a/cmd", message)
    wait_until(lambda: command_result(watcher, "gate-a", nonce), 10)
    assert command_result(watcher, "gate-a", nonce)["ok"] and a.daemon.loop.turnstile.mode == "normal"

    def refused(payload: bytes, nonce: str | None) -> dict[str, Any]:
        before = len(watcher.on(ROOT + "gates/gate-a/cmd/result"))
        watcher.publish(ROOT + "gates/gate-a/cmd", payload)
        wait_until(lambda: len(watcher.on(ROOT + "gates/gate-a/cmd/result")) > before, 10)
        answer = json.loads(watcher.on(ROOT + "gates/gate-a/cmd/result")[-1])
        assert not answer["ok"] and answer["nonce"] == nonce, answer
        return answer

    assert refused(message, nonce)["kind"] == "replayed"
    lock = signed.command_payload(signed.Command("test-venue", "gate-a", "set_mode", time.time(), signed.new_nonce(), "locked"))
    assert refused(json.dumps(lock).encode(), None)["kind"] == "unsigned"
    assert refused(signed.sign(lock, STRANGER), None)["kind"] == "wrong_key"
    stale = {**lock, "nonce": signed.new_nonce(), "issued_at": time.time() - 120}
    assert refused(signed.sign(stale, ADMIN), stale["nonce"])["kind"] == "stale"
    other = {**lock, "nonce": signed.new_nonce(), "gate": "gate-b"}
    assert refused(signed.sign(other, ADMIN), other["nonce"])["kind"] == "wrong_gate"
    assert a.daemon.loop.turnstile.mode == "normal"  # none of them locked the lane

    # The replayed command is refused after a restart too (nonces are kept in the database).
    a.stop()
    a = venue.start("gate-a")
    assert refused(message, nonce)["kind"] == "replayed"
    watcher.close()


class MovableClock(SystemClock):
    """The system's clock, put forward or back by ``offset`` seconds (a Pi without a real-time
    clock rebooted before NTP, a bad time server)."""

    offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


def send_command(watcher: Watcher, mode: str, issued_at: float) -> tuple[bytes, str]:
    command = signed.Command("test-venue", "gate-a", "set_mode", issued_at, signed.new_nonce(), mode)
    return signed.sign(signed.command_payload(command), ADMIN), command.nonce


def answered(watcher: Watcher, payload: bytes, nonce: str) -> dict[str, Any]:
    watcher.publish(ROOT + "gates/gate-a/cmd", payload)
    return wait_until(lambda: command_result(watcher, "gate-a", nonce), 10)


def test_a_command_replayed_after_the_gate_s_clock_went_back_is_refused(venue: Venue, broker: Mosquitto) -> None:
    clock = MovableClock()
    a = venue.start_lane(venue.config("gate-a"), clock=clock)
    wait_until(lambda: a.daemon.sync.connected, 10)
    watcher = Watcher(broker.port, [ROOT + "gates/+/cmd/result"])
    first = time.time()
    free, free_nonce = send_command(watcher, "free", first)
    assert answered(watcher, free, free_nonce)["ok"]  # recorded by someone on the venue network
    clock.offset = 3600  # an hour later: a new command, and the first one's nonce is forgotten
    normal, normal_nonce = send_command(watcher, "normal", first + 3600)
    assert answered(watcher, normal, normal_nonce)["ok"]

    clock.offset = 0  # the gate's clock goes back an hour: the recorded command looks fresh again
    watcher.publish(ROOT + "gates/gate-a/cmd", free)
    wait_until(lambda: len([p for p in watcher.on(ROOT + "gates/gate-a/cmd/result") if json.loads(p)["nonce"] == free_nonce]) == 2, 10)
    replay = json.loads(watcher.on(ROOT + "gates/gate-a/cmd/result")[-1])
    assert not replay["ok"] and replay["kind"] == "stale", replay
    assert a.daemon.loop.turnstile.mode == "normal"
    watcher.close()


def test_commands_are_refused_while_the_gate_s_clock_is_not_synchronized(venue: Venue, broker: Mosquitto) -> None:
    a = venue.start("gate-a")
    clock_events: list[dict[str, Any]] = []
    a.daemon.loop.listeners.append(lambda kind, payload: clock_events.append(payload) if kind == "clock" else None)
    a.daemon.hardware.clock.synchronized_now = False
    wait_until(lambda: clock_events, 5)
    watcher = Watcher(broker.port, [ROOT + "gates/+/cmd/result"])
    free, nonce = send_command(watcher, "free", time.time())
    answer = answered(watcher, free, nonce)
    assert not answer["ok"] and answer["kind"] == "clock_unsynced", answer
    assert a.daemon.loop.turnstile.mode == "normal"
    watcher.close()


def test_open_once_lets_one_person_through_and_records_it(venue: Venue) -> None:
    a = venue.start("gate-a")
    a.turnstile.person("in", True)
    code, answer = venue.gate("command", "gate-a", "open_once", "--key", str(venue.key))
    assert code == 0 and answer["ok"], answer
    wait_until(lambda: a.records("passage"), 5)
    admission = a.records("admission")[0]
    assert admission["ticket_key"] is None and json.loads(admission["details"])["by"] == "command"
    assert a.pulses("unlock_in") == 1


def test_a_commanded_mode_outlives_a_restart(venue: Venue, tickets: Tickets) -> None:
    a = venue.start("gate-a")
    assert venue.gate("command", "gate-a", "set_mode", "locked", "--key", str(venue.key))[0] == 0
    a.stop()
    a = venue.start("gate-a")
    assert a.daemon.loop.turnstile.mode == "locked"
    assert venue.gate("command", "gate-a", "set_mode", "normal", "--key", str(venue.key))[0] == 0
    assert a.present(tickets.static(), walks=True)["accepted"]


def test_reload_takes_in_a_new_trust_file(venue: Venue, tickets: Tickets, issuer: SigningKey) -> None:
    """``reload`` (a signed command, or SIGHUP) reads the config's trust again without a restart."""
    data = venue.config("gate-a")
    issuers = data["trust"].pop("gt1_issuers")
    config_path = write_config(venue.tmp_path / "gate-a.toml", data)
    a = venue.start("gate-a")
    a.daemon.config = dataclasses.replace(a.daemon.config, path=str(config_path))  # start_lane parsed the data
    ticket = tickets.static()
    assert a.present(ticket, walks=None)["reason"] == "unknown_key"
    a.idle()
    data["trust"]["gt1_issuers"] = issuers
    write_config(config_path, data)
    code, answer = venue.gate("command", "gate-a", "reload", "--key", str(venue.key))
    assert code == 0 and answer["result"] == "trust reloaded", answer
    assert a.present(ticket, walks=True)["accepted"]


def test_with_the_shipped_acl_only_the_admin_sends_bundles_and_commands(
    tmp_path: Path, issuer: SigningKey, tickets: Tickets, start_lane: Callable[..., Lane], capsys: Any
) -> None:
    passwords = tmp_path / "passwd"
    for i, user in enumerate(("gate-a", "gate-b", "venue-admin")):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwords), user, f"pw-{user}"], check=True)
        (tmp_path / f"{user}.pw").write_text(f"pw-{user}\n")
    protected = Mosquitto(tmp_path / "broker", password_file=passwords, acl_file=venue_acl(tmp_path))
    try:
        venue = Venue(tmp_path, issuer, protected, start_lane, capsys)
        venue.config("gate-a")["sync"]["password_file"] = str(tmp_path / "gate-a.pw")
        venue.admin_config = write_config(tmp_path / "admin.toml", venue.configs["gate-a"])
        a = venue.start("gate-a")
        with_b = Watcher(protected.port, [], "gate-b", "pw-gate-b")
        lock = signed.command_payload(signed.Command("test-venue", "gate-a", "set_mode", time.time(), signed.new_nonce(), "locked"))
        with_b.publish(ROOT + "gates/gate-a/cmd", signed.sign(lock, ADMIN))  # even validly signed: not B's topic
        with_b.publish(ROOT + "bundle", signed.sign(signed.bundle_payload("test-venue", 99, time.time(), [], b""), ADMIN))
        with_b.close()
        time.sleep(1.0)
        assert a.daemon.loop.turnstile.mode == "normal" and held(a) == (0, 0)  # the broker dropped both

        admin = ("--username", "venue-admin", "--password-file", str(tmp_path / "venue-admin.pw"))
        code, answer = venue.gate("command", "gate-a", "set_mode", "locked", "--key", str(venue.key), *admin)
        assert code == 0 and answer["ok"], answer
        venue.gate("bundle", "make", "--out", str(tmp_path / "p.json"), "--version", "3")
        venue.gate("bundle", "sign", str(tmp_path / "p.json"), "--key", str(venue.key), "--out", str(tmp_path / "s.json"))
        assert venue.gate("bundle", "publish", str(tmp_path / "s.json"), *admin)[0] == 0
        wait_until(lambda: held(a) == (3, 0), 10)
        # With a gate's own credentials, the broker drops a bundle silently.
        venue.gate("bundle", "make", "--out", str(tmp_path / "p4.json"), "--version", "4")
        venue.gate("bundle", "sign", str(tmp_path / "p4.json"), "--key", str(venue.key), "--out", str(tmp_path / "s4.json"))
        as_gate_b = ("--username", "gate-b", "--password-file", str(tmp_path / "gate-b.pw"))
        assert venue.gate("bundle", "publish", str(tmp_path / "s4.json"), *as_gate_b)[0] == 0
        # Without --username the tool logs in as venue-admin, never as the lane of its config
        # (that login would throw the lane off the bus); without that user's password, refused.
        capsys.readouterr()
        assert cli.main(["bundle", "publish", str(tmp_path / "s4.json"), "--config", str(venue.admin_config)]) == 2
        assert "refused user 'venue-admin'" in capsys.readouterr().err
        time.sleep(1.0)
        assert held(a) == (3, 0)
    finally:
        protected.stop()
