"""What the reliability harnesses share: real ``gate run`` lanes on simulated hardware, a
recorder of everything on the venue bus, a TCP link that can be cut, tickets.

Everything here is the real thing as far as the gate can tell: the daemon is its own process,
killed with real signals; its scanner is a pseudo-terminal; its broker is a real mosquitto; a
cut link is a real TCP connection closed under it.
"""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from gate.formats import gt1
from gate.store import Store
from gate.store.db import inspect
from gate.sync import messages
from hwsim.broker import Watcher
from hwsim.control import ControlClient
from hwsim.lane_config import EVENT
from hwsim.scanner import SimulatedScanner
from hwsim.venue import ROOT, VENUE, gate_status, ready_on_bus, venue_gate_config
from hwsim.venue_keys import VenueKeys

LEDGER_TOPICS = f"{ROOT}ledger/+"
STATUS_TOPICS = f"{ROOT}gates/+/status"


class Tickets:
    """Fresh valid GT1 tickets of the demo event, each with its ticket key."""

    def __init__(self) -> None:
        self.issuer = SigningKey.generate()
        self.public = base64.b64encode(bytes(self.issuer.verify_key)).decode()
        self._serial = 0
        self._lock = threading.Lock()

    def new(self) -> str:
        with self._lock:
            self._serial += 1
            serial = self._serial
        cti = serial.to_bytes(16, "big")
        return gt1.encode_static(gt1.issue(self.issuer, gt1.build_claims(cti=cti, event=EVENT, product="ga")))

    @staticmethod
    def key(ticket: str) -> str:
        key = gt1.ticket_key_of(ticket)
        assert key is not None
        return key


class SimLane:
    """One ``gate run`` process with simulated hardware, started and killed as often as asked.

    The scanner's pseudo-terminal outlives the daemon, as a USB scanner outlives a power cut of
    the Pi's software: each new daemon opens it again."""

    def __init__(self, workdir: Path, name: str, tickets: Tickets, broker_port: int | None, *,
                 walk: float = 0.05, passage_timeout: float = 2.0, extra: str = "") -> None:
        self.name = name
        if broker_port is None:
            from hwsim.lane_config import write_config

            self.home = workdir / name
            self.home.mkdir(parents=True, exist_ok=True)
            self.config = write_config(self.home, tickets.public, walk=walk, timeout=passage_timeout, pulse_ms=20)
            self.config.write_text(self.config.read_text().replace('id = "demo-lane"', f'id = "{name}"'))
        else:
            self.config = venue_gate_config(workdir, tickets.public, name, broker_port, VenueKeys(VENUE, [name]), walk=walk,
                                            timeout=passage_timeout)
            self.home = self.config.parent
        if extra:
            self.config.write_text(self.config.read_text() + extra)
        self.database = self.home / "state" / "gate.db"
        self.scanner = SimulatedScanner(self.home / "scanner")
        self.process: subprocess.Popen[bytes] | None = None
        self.control: ControlClient | None = None
        self.starts = 0
        self._log = open(self.home / "gate.log", "ab")

    # --- process ----------------------------------------------------------------------------

    def spawn(self) -> None:
        """Start the daemon and return at once (a kill may come before it is ready)."""
        assert self.process is None or self.process.poll() is not None
        self.starts += 1
        self._log.write(f"--- start {self.starts} ---\n".encode())
        self._log.flush()
        self.process = subprocess.Popen([sys.executable, "-m", "gate", "run", "--config", str(self.config)],
                                        stdout=self._log, stderr=self._log)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the lane's readers run and its scanner is open."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        socket_path = self.home / "sim.sock"
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode} before it was ready "
                                   f"(see {self.home / 'gate.log'})")
            if socket_path.exists():
                try:
                    control = ControlClient(str(socket_path), timeout=0.5)
                    control.wait_for(lambda e: (e["event"] == "hello" and e["ready"]) or e["event"] == "ready",
                                     timeout=max(0.1, deadline - time.monotonic()))
                    break
                except (OSError, TimeoutError):
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready in {timeout} s (see {self.home / 'gate.log'})")
            time.sleep(0.02)
        if self.control is not None:
            self.control.close()
        self.control = control
        if not self.scanner.wait_until_opened(max(0.1, deadline - time.monotonic())):
            raise TimeoutError(f"{self.name}: the serial driver never opened the scanner")

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def kill(self) -> int:
        """A power cut, as far as software goes: SIGKILL, nothing runs after it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        return self.process.wait(10)

    def stop(self) -> int:
        """A clean stop (SIGTERM), as systemd's."""
        if self.process is None or self.process.poll() is not None:
            return 0 if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            return -9

    def close(self) -> None:
        self.stop()
        if self.control is not None:
            self.control.close()
            self.control = None
        self.scanner.close()
        self._log.close()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def rss_kib(self) -> int | None:
        """The daemon's resident memory (VmRSS), or None when it is not running."""
        if self.process is None or self.process.poll() is not None:
            return None
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    # --- the lane's state on disk -----------------------------------------------------------

    def ledger_rows(self) -> list[tuple[str, int, str, str | None, float]]:
        """(origin, seq, kind, ticket_key, at) of every record, read from the file beside the
        running daemon (read-only: WAL readers do not block)."""
        with closing(Store(self.database, self.name, read_only=True)) as store:
            return [(r.origin, r.seq, r.kind, r.ticket_key, r.at) for r in store.ledger.records()]

    def integrity(self) -> str:
        problems, _records = inspect(self.database)
        return ";".join(problems) or "ok"


def show(lane: SimLane, ticket: str) -> tuple[dict[str, Any] | None, bool]:
    """A person steps up, shows ``ticket`` and walks through if let in. Returns the decision
    (None when the daemon died first) and whether the relay was seen to move."""
    control = lane.control
    assert control is not None
    mark = control.mark()
    decision = None
    try:
        control.send("person", direction="in", walks=True)
        control.wait_for(lambda e: e["event"] == "queued", start=mark, timeout=5)
        lane.scanner.scan(ticket)
        decision = control.wait_for(lambda e: e["event"] == "decision", start=mark, timeout=5)
        if decision["accepted"]:
            control.wait_for(lambda e: e["event"] == "record" and e["kind"] in ("passage", "revert"), start=mark, timeout=5)
        else:
            control.send("leave", direction="in")
    except (OSError, TimeoutError):
        pass  # the daemon died under us: that is the point
    moved = any(e["event"] == "output" and e["name"] == "unlock_in" and e["on"] for e in control.events[mark:])
    return decision, moved


class BusRecorder:
    """Every ledger record any gate put on the bus, as a dashboard (or an auditor) sees it.

    A record seen twice must be the same record: a seq that a gate used for two different records
    (reused after a crash) is a ``clash``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.records: dict[tuple[str, int], tuple[str, str | None, float]] = {}
        self.clashes: list[str] = []
        self.copies = 0
        self._watcher: Watcher | None = None
        self._seen = 0
        self._lock = threading.Lock()
        self.connect()

    def connect(self) -> None:
        self._watcher = Watcher(self.port, [LEDGER_TOPICS, STATUS_TOPICS])
        self._seen = 0

    def reconnect(self) -> None:
        """After a broker restart (a plain client, not a gate: it just subscribes again)."""
        self.drain()
        old = self._watcher
        if old is not None:  # its network thread may sit in a reconnect back-off: not waited for
            threading.Thread(target=old.close, daemon=True).start()
        self.connect()

    def drain(self) -> None:
        watcher = self._watcher
        if watcher is None:
            return
        with watcher.lock:
            new = watcher.messages[self._seen :]
            self._seen = len(watcher.messages)
        with self._lock:
            for topic, payload, _retained in new:
                if "/ledger/" not in topic:
                    continue
                for text, _signature in messages.decode_records(payload, topic.rsplit("/", 1)[1]):
                    record = json.loads(text)  # as an auditor reads it (gate.trust.records: the signed text)
                    key = (record["origin"], record["seq"])
                    value = (record["kind"], record.get("ticket_key"), record["at"])
                    old = self.records.setdefault(key, value)
                    if old != value:
                        self.clashes.append(f"{key}: {old} then {value}")
                    else:
                        self.copies += 1

    def keys(self) -> set[tuple[str, int]]:
        self.drain()
        with self._lock:
            return set(self.records)

    def status(self, gate: str) -> dict[str, Any]:
        assert self._watcher is not None
        return gate_status(self._watcher, gate)

    def publish_roster(self, gates: list[str]) -> None:
        """The venue admin's bundle naming ``gates`` (retained): gates take in each other's records."""
        assert self._watcher is not None
        self._watcher.publish(f"{ROOT}bundle", VenueKeys(VENUE, gates).bundle(), retain=True)

    def holds_roster(self, gate: str) -> bool:
        """Online, holding the roster, and done learning the venue's records."""
        assert self._watcher is not None
        return ready_on_bus(self._watcher, gate)

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()


class CuttableLink:
    """A TCP relay between one gate and the broker that the harness can cut and heal: a real
    network partition for that gate alone (its connections are reset, new ones are refused)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.port = self._server.getsockname()[1]
        self.cut = False
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="link", daemon=True).start()

    def sever(self) -> None:
        with self._lock:
            self.cut = True
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def heal(self) -> None:
        with self._lock:
            self.cut = False

    def close(self) -> None:
        self._closed = True
        self.sever()
        self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                refuse = self.cut
            if refuse:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sockets = [a, b]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 1.0)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                if (a, b) in self._pairs:
                    self._pairs.remove((a, b))
            for s in sockets:
                try:
                    s.close()
                except OSError:
                    pass


@dataclass
class Report:
    """What a harness tried and what held; written as JSON beside its work directory."""

    harness: str
    parameters: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return not self.failures

    def fail(self, text: str) -> None:
        self.failures.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {"harness": self.harness, "held": self.held, "parameters": self.parameters,
                "figures": self.figures, "failures": self.failures[:50], "machine": machine()}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")


def machine() -> dict[str, Any]:
    import platform

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
