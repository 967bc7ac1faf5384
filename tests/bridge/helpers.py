"""A venue for the bridge's tests: a real mosquitto with the shipped ACL and a password per user
(each lane, ``venue-bridge``), lanes in-process (tests/support/lanes.py), and ``gate bridge run``
as a real process that a test can SIGKILL and start again."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import tomli_w
from hwsim.broker import Mosquitto

from tests.support.brokers import password_file
from tests.support.lanes import EVENT, Lane, wait_until
from tests.support.venue import (
    KEYS,
    VENUE,
    gate_config,
    held_version,
    holds_roster,
    venue_acl,
)

ROOT = Path(__file__).resolve().parents[2]
PRETIX_FORMATS = ["gt1", "pretix_sig1", "pretix_random"]


class BridgeProcess:
    """``gate bridge run`` in its own process."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.status_file = workdir / "state" / "status.json"

    def start(self) -> None:
        assert self.process is None
        log = open(self.workdir / "bridge.log", "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "gate", "bridge", "run", "--bridge-config", str(self.config)],
                                        cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
        wait_until(lambda: self.status().get("pid") == self.process.pid and self.status()["broker"]["connected"], 20)

    def kill(self) -> None:
        """A crash: SIGKILL, nothing saved on the way out."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
            self.process = None

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}

    def queue(self, sink: str) -> dict[str, Any]:
        return (self.status().get("queue") or {}).get(sink, {"pending": 0, "done": 0, "dead": 0, "skipped": 0})

    def log(self) -> str:
        return (self.workdir / "bridge.log").read_text(errors="replace")


class Venue:
    """The lanes, the broker and the bridge of one test."""

    def __init__(self, tmp_path: Path, issuer: Any, start_lane: Callable[..., Lane], gates: list[str]) -> None:
        self.tmp_path = tmp_path
        self.issuer = issuer
        self.start_lane = start_lane
        self.gates = gates
        self.secrets = tmp_path / "secrets"
        self.passwords = password_file(self.secrets, [*gates, "venue-bridge", "venue-monitor"])
        self.broker = Mosquitto(tmp_path / "broker", password_file=self.passwords, acl_file=venue_acl(tmp_path))
        for gate in gates:
            KEYS.add(gate)
        self.roster = tmp_path / "roster.json"
        self.roster.write_text(json.dumps({"gates": [{"gate": g, "public_key": base64.b64encode(bytes(KEYS.gates[g].verify_key)).decode()}
                                                     for g in gates]}))
        self.admin_key = self.secrets / "admin.key"
        self.admin_key.write_text(bytes(KEYS.admin).hex())
        os.chmod(self.admin_key, 0o600)
        self.lanes: dict[str, Lane] = {}
        self.bridge: BridgeProcess | None = None

    def lane_config(self, gate: str, **policy: Any) -> dict[str, Any]:
        data = gate_config(self.tmp_path, self.issuer, gate, self.broker, password_file=str(self.secrets / f"{gate}.pw"))
        data["policy"] = {"formats": PRETIX_FORMATS, "events": [EVENT, "democon", "randcon"], **policy}
        return data

    def start_lanes(self, bundle_version: int = 1) -> list[Lane]:
        for gate in self.gates:
            self.lanes[gate] = self.start_lane(self.lane_config(gate))
        for lane in self.lanes.values():
            wait_until(lambda: lane.daemon.sync.connected and holds_roster(lane, bundle_version), 20)
            # the engine takes in a bundle's documents at its next look (at most a second later)
            wait_until(lambda: "pretix" in lane.daemon.loop.engine.trust, 15)
        return list(self.lanes.values())

    def bridge_config(self, pretix_events: list[dict[str, Any]] | None = None, poll_interval: float = 1.0,
                      broker: dict[str, Any] | None = None, **tables: Any) -> Path:
        state = self.tmp_path / "bridge" / "state"
        state.mkdir(parents=True, exist_ok=True)
        bridge: dict[str, Any] = {
            "venue": VENUE, "state_dir": str(state), "admin_key_file": str(self.admin_key), "roster": str(self.roster),
            "poll_interval": poll_interval, "log_level": "info",
            "broker": {"host": "127.0.0.1", "port": self.broker.port, "password_file": str(self.secrets / "venue-bridge.pw"),
                       "keepalive": 5, "catch_up_interval": 5.0, **(broker or {})},
        }
        if pretix_events is not None:
            bridge["pretix"] = {"events": pretix_events}
        bridge.update(tables)
        path = self.tmp_path / "bridge" / "bridge.toml"
        path.write_text(tomli_w.dumps({"bridge": bridge}))
        return path

    def start_bridge(self, config: Path) -> BridgeProcess:
        self.bridge = BridgeProcess(config, config.parent)
        self.bridge.start()
        return self.bridge

    def close(self) -> None:
        if self.bridge is not None:
            self.bridge.stop()
        self.broker.stop()


class Subscriber:
    """``mosquitto_sub`` as the venue's monitoring user, on one topic: what a monitoring tool
    on the venue network sees (retained messages first)."""

    def __init__(self, broker: Any, topic: str, user: str = "venue-monitor", password: str = "pw-venue-monitor") -> None:
        self.messages: list[dict[str, Any]] = []
        self.process = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-u", user,
                                         "-P", password, "-t", topic, "-q", "1"], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.messages.append(json.loads(line))

    def last(self) -> dict[str, Any]:
        return self.messages[-1] if self.messages else {}

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def failed_checkins(pretix: Any, slug: str) -> list[dict[str, Any]]:
    """The failed check-ins pretix holds for the event (its back office's view)."""
    out: list[dict[str, Any]] = []
    url: str | None = f"/events/{slug}/checkins/?successful=false"
    while url:
        answer = pretix.admin.get(url)
        assert answer.status_code == 200, answer.text
        out += answer.json()["results"]
        url = answer.json()["next"]
    return out


def gate_cli(*args: str) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-m", "gate", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout + result.stderr


def admit(lane: Lane, ticket: str) -> dict[str, Any]:
    """Someone is let in and walks through; returns once the passage is in the lane's ledger."""
    decision = lane.present(ticket)
    assert decision["accepted"], decision
    lane.passed(decision)
    lane.idle()
    return decision


def trust_moved(lanes: list[Lane], before: dict[str, tuple[int, int]]) -> bool:
    """Whether every lane holds a newer bundle or delta than ``before`` (gate id → versions)."""
    return all(held_version(lane) > before[lane.daemon.config.gate_id] for lane in lanes)


def versions(lanes: list[Lane]) -> dict[str, tuple[int, int]]:
    return {lane.daemon.config.gate_id: held_version(lane) for lane in lanes}


def now() -> float:
    return time.time()
