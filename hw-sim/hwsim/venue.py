"""A simulated venue: several real ``gate run`` lanes on simulated hardware, one real mosquitto,
and a crowd that shows copies of the same tickets at different gates (``scripts/demo --venue``).

It shows what venue sync is for: a screenshot used at one gate is ``already_used`` at the next,
and when the broker goes away the gates keep deciding, and the two that let the same copied
ticket in report the conflict once the broker is back. It ends with a summary and checks that
every gate's ledger holds the same records.
"""

from __future__ import annotations

import base64
import collections
import signal
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from gate.formats import gt1
from gate.store import Store
from hwsim.broker import Mosquitto, Watcher
from hwsim.control import ControlClient
from hwsim.dashboard import PASSWORD, USER, DemoDashboard
from hwsim.lane_config import EVENT, write_config
from hwsim.scanner import SimulatedScanner
from hwsim.timing import wait
from hwsim.venue_keys import VenueKeys

VENUE = "demo-venue"  # the demo config's venue
ROOT = f"gate/v2/{VENUE}/"
STATUS = f"{ROOT}gates/+/status"


def venue_gate_config(workdir: Path, issuer_public: str, gate_id: str, port: int, keys: VenueKeys, *, walk: float,
                      timeout: float) -> Path:
    """One lane of the venue: the demo lane's config with its own id, its identity key and a
    ``[sync]`` table, and the venue admin's public key (signed bundles, the roster, commands)."""
    home = workdir / gate_id
    home.mkdir(parents=True, exist_ok=True)
    config = write_config(home, issuer_public, walk=walk, timeout=timeout, pulse_ms=20)
    text = config.read_text().replace('id = "demo-lane"', f'id = "{gate_id}"')
    identity = keys.identity_file(gate_id, home)
    text += (f'\n[sync]\nhost = "127.0.0.1"\nport = {port}\nkeepalive = 5\nstatus_interval = 1\n'
             f'identity_file = "{identity}"\n')
    text += f'\n[trust]\nadmin_key = "{keys.admin_public_hex}"\n'
    config.write_text(text)
    return config


def ready_on_bus(watcher: Watcher, gate: str) -> bool:
    """Online, holding the admin's roster, and done learning the venue's records (a new database)."""
    status = gate_status(watcher, gate)
    return status.get("state") == "online" and status.get("bundle", {}).get("version", 0) >= 1 and not status.get("recovering")


def gate_status(watcher: Watcher, gate: str) -> dict[str, Any]:
    """What ``gate`` last said on its status topic, as a watcher saw it ({} before it spoke)."""
    return watcher.last_json(f"{ROOT}gates/{gate}/status")


class Gate:
    """A running ``gate run`` of the venue, its scanner and its control socket."""

    def __init__(self, name: str, config: Path) -> None:
        self.name = name
        self.home = config.parent
        self.scanner = SimulatedScanner(self.home / "scanner")
        self.log = open(self.home / "gate.log", "w")
        self.process = subprocess.Popen([sys.executable, "-m", "gate", "run", "--config", str(config)], stderr=self.log)
        self.lane = ControlClient(str(self.home / "sim.sock"), timeout=20)
        if not self.scanner.wait_until_opened(20):
            raise RuntimeError(f"{name}: the serial driver never opened the scanner (see {self.home / 'gate.log'})")

    def show(self, ticket: str, timeout: float = 10.0) -> dict:
        """Someone shows a ticket here and walks through when let in; returns the decision."""
        mark = self.lane.mark()
        self.lane.send("person", direction="in", walks=True)
        self.lane.wait_for(lambda e: e["event"] == "queued", start=mark)
        self.scanner.scan(ticket)
        decision = self.lane.wait_for(lambda e: e["event"] == "decision", start=mark)
        if decision["accepted"]:
            self.lane.wait_for(lambda e: e["event"] == "record" and e["kind"] in ("passage", "revert"), start=mark, timeout=timeout)
        else:
            self.lane.send("leave", direction="in")
        return decision

    def ledger(self) -> set[tuple[str, int, str]]:
        with closing(Store(self.home / "state" / "gate.db", self.name, read_only=True)) as store:
            return {(r.origin, r.seq, r.kind) for r in store.ledger.records()}

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(15)
        finally:
            self.scanner.close()
            self.log.close()


class VenueDemo:
    def __init__(self, workdir: Path, quick: bool, gates: int = 3, stay: bool = False) -> None:
        self.workdir = workdir
        self.stay = stay  # after the story, the venue stays up (the dashboard with it) until Enter or Ctrl-C
        self.walk = 0.05 if quick else 0.4
        self.names = [f"gate-{i + 1}" for i in range(gates)]
        self.summary: collections.Counter[str] = collections.Counter()
        self.mismatches: list[str] = []
        self.issuer = SigningKey.generate()
        self._serial = 0

    def ticket(self) -> str:
        self._serial += 1
        cti = self._serial.to_bytes(16, "big")
        return gt1.encode_static(gt1.issue(self.issuer, gt1.build_claims(cti=cti, event=EVENT, product="ga")))

    def expect(self, who: str, gate: Gate, ticket: str, reason: str) -> None:
        decision = gate.show(ticket)
        self.summary[f"{gate.name} {decision['reason']}"] += 1
        ok = decision["reason"] == reason
        if not ok:
            self.mismatches.append(f"{who} at {gate.name}: expected {reason}, got {decision['reason']}")
        verb = "let in" if decision["accepted"] else "refused"
        print(f"  {who:<44} {gate.name}: {verb:<8} reason={decision['reason']:<13} ({decision['latency_ms']:.1f} ms)")

    @staticmethod
    def wait_for_enter(url: str) -> None:
        print(f"\nthe lanes, the broker and the dashboard stay up: open {url} (user {USER}, password {PASSWORD})")
        print("press Enter (or Ctrl-C) to end the demo", flush=True)
        try:
            sys.stdin.readline()
        except KeyboardInterrupt:
            print()

    def run(self) -> int:
        print(f"gate venue demo: {len(self.names)} lanes (real daemons), one real mosquitto\n")
        public = base64.b64encode(bytes(self.issuer.verify_key)).decode()
        broker = Mosquitto(self.workdir / "broker", persistent=True)  # as a venue's: sessions outlive its restart
        keys = VenueKeys(VENUE, self.names)
        configs = [venue_gate_config(self.workdir, public, n, broker.port, keys, walk=self.walk, timeout=2.0) for n in self.names]
        gates: list[Gate] = []
        watcher = dashboard = None
        try:
            gates = [Gate(n, c) for n, c in zip(self.names, configs)]
            watcher = Watcher(broker.port, [STATUS])
            watcher.publish(f"{ROOT}bundle", keys.bundle(), retain=True)  # the venue admin's: the roster of gates
            dashboard = DemoDashboard(self.workdir, broker.port, keys, ROOT)
            print(f"the venue dashboard: {dashboard.url} (user {USER}, password {PASSWORD})\n")
            wait(lambda: all(ready_on_bus(watcher, g.name) for g in gates), "gates online, holding the venue's roster, recovered")
            print("every gate is online on the venue bus, holds the roster of gates and has learnt the venue's records\n")

            print("copies of one ticket at different gates (a screenshot passed back over the fence):")
            for i in range(4):
                ticket = self.ticket()
                first, second = gates[i % len(gates)], gates[(i + 1) % len(gates)]
                self.expect(f"ticket {i + 1}, its owner", first, ticket, "ok")
                self.expect(f"ticket {i + 1}, a screenshot of it", second, ticket, "already_used")

            print("\nthe broker goes down; the gates keep deciding on their own:")
            broker.stop()
            copied = self.ticket()
            self.expect("ticket 5, its owner", gates[0], copied, "ok")
            self.expect("ticket 5, a screenshot (gates cut off)", gates[1], copied, "ok")
            self.expect("ticket 6, its owner", gates[2], self.ticket(), "ok")

            print("\nthe broker is back: the gates catch up and report the conflict")
            broker.start()
            watcher.close()
            watcher = Watcher(broker.port, [STATUS])
            for gate in gates[:2]:
                wait(lambda g=gate: gate_status(watcher, g.name).get("conflicts", 0) >= 1, f"{gate.name} reports the conflict")
                print(f"  {gate.name} reports conflicts={gate_status(watcher, gate.name)['conflicts']} on its status topic")
            wait(lambda: len({frozenset(g.ledger()) for g in gates}) == 1, "ledgers converge")
            records = len(gates[0].ledger())
            print(f"  every gate's ledger holds the same {records} records")
            self.expect("ticket 5, a third copy", gates[2], copied, "already_used")
            if self.stay:
                self.wait_for_enter(dashboard.url)
        finally:
            if watcher is not None:
                watcher.close()
            if dashboard is not None:
                dashboard.stop()
            codes = [g.stop() for g in gates]
            broker.stop()
        print("\nsummary (gate, reason: count)")
        for key, count in sorted(self.summary.items()):
            print(f"  {key:<28} {count}")
        if self.mismatches or any(codes):
            print("\nUNEXPECTED:\n  " + "\n  ".join(self.mismatches + [f"exit codes {codes}"]))
            return 1
        print("\nevery person got the outcome the venue should give")
        return 0

