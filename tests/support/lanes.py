"""A simulated lane as a person at the turnstile sees it (``Lane``), the configs the tests start
lanes with, GT1 tickets (``Tickets``), the engine on a real store (``Verifier``), and waiting for
a condition (``wait_until``)."""

from __future__ import annotations

import base64
import json
import queue
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

import tomli_w
from hwsim.scanner import SimulatedScanner
from nacl.signing import SigningKey

from gate.daemon import Daemon
from gate.formats import gt1

EVENT = "concert-2026"


class Tickets:
    """Issues GT1 tickets with the session's issuer key."""

    def __init__(self, issuer: SigningKey) -> None:
        self.issuer = issuer
        self._n = 0

    def cose(self, **claims: Any) -> bytes:
        self._n += 1
        claims.setdefault("cti", self._n.to_bytes(16, "big"))
        claims.setdefault("event", EVENT)
        return gt1.issue(self.issuer, gt1.build_claims(**claims))

    def static(self, **claims: Any) -> str:
        return gt1.encode_static(self.cose(**claims))


def base_config(tmp_path: Path, issuer: SigningKey) -> dict[str, Any]:
    return {
        "gate": {"id": "lane-1", "venue": "test-venue", "state_dir": str(tmp_path / "state")},
        "policy": {"events": [EVENT]},
        "turnstile": {"pulse_ms": 100, "passage_timeout": 1.0, "deny_display": 0.2},
        "gpio": {
            "pin_factory": "mock",
            "unlock_in": {"pin": 17},
            "unlock_out": {"pin": 18},
            "green": {"pin": 27},
            "red": {"pin": 22},
            "buzzer": {"pin": 24},
            "passage_in": {"pin": 5, "bounce_ms": 0},
            "passage_out": {"pin": 6, "bounce_ms": 0},
            "fire_alarm": {"pin": 13, "bounce_ms": 0},
            "tamper": {"pin": 19, "bounce_ms": 0},
        },
        "scanner": {"port": str(tmp_path / "scanner"), "line_timeout": 0.2, "reconnect_interval": 0.1},
        "trust": {
            "gt1_issuers": [
                {"name": "test issuer", "public_key": base64.b64encode(bytes(issuer.verify_key)).decode()}
            ]
        },
        "simulator": {"enabled": True, "control_socket": str(tmp_path / "sim.sock"), "walk_time": 0.1},
        "status": {"socket": str(tmp_path / "status.sock")},
    }


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(tomli_w.dumps(data))
    return path


class Lane:
    """A running simulated lane, seen as a person at the turnstile sees it."""

    def __init__(self, daemon: Daemon, scanner: SimulatedScanner) -> None:
        self.daemon = daemon
        self.scanner = scanner
        self.turnstile = daemon.hardware.turnstile
        self.decisions: queue.Queue[dict[str, Any]] = queue.Queue()
        self.output_log: list[tuple[str, bool]] = []
        self.alarms: list[dict[str, Any]] = []
        self.stopped = False
        daemon.loop.listeners.append(self._on_event)
        self.turnstile.listeners.append(lambda name, on: self.output_log.append((name, on)))

    def _on_event(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "decision":
            self.decisions.put(payload)
        elif kind == "alarm":
            self.alarms.append(payload)

    def present(self, text: str, walks: bool | None = True, timeout: float = 5.0) -> dict[str, Any]:
        """Someone shows a ticket at the scanner; ``walks``: do they then pass (None: nobody there)."""
        if walks is not None:
            self.turnstile.person("in", walks)
        self.scanner.scan(text)
        return self.decisions.get(timeout=timeout)

    def output(self, name: str) -> bool:
        return self.turnstile.output(name)

    def pulses(self, name: str) -> int:
        return sum(1 for n, on in self.output_log if n == name and on)

    def records(self, kind: str | None = None) -> list[sqlite3.Row]:
        return ledger_rows(self.daemon.config.database, kind)

    def passed(self, decision: dict[str, Any]) -> sqlite3.Row:
        """The admission of an accepted ``decision``, once its passage is in the ledger too (the
        lights go back to idle a moment before the loop writes it)."""
        admission = next(r for r in self.records("admission") if r["ticket_key"] == decision["ticket_key"])
        wait_until(lambda: [r for r in self.records("passage")
                            if (r["ref_epoch"], r["ref_seq"]) == (admission["epoch"], admission["seq"])], 5)
        return admission

    def stop(self) -> None:
        """Stop the daemon as SIGTERM does (the fixture then leaves it alone)."""
        self.daemon.stop()
        self.stopped = True
        if self.scanner is not None:
            self.scanner.close()

    def idle(self, timeout: float = 5.0) -> None:
        """Wait until no passage is pending and the lights are back to idle."""
        wait_until(lambda: not self.daemon.loop.turnstile.busy and not self.output("red") and not self.output("green"), timeout)


def ledger_rows(path: Path, kind: str | None = None) -> list[sqlite3.Row]:
    """Read a ledger file as anyone would: a separate SQLite connection."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM ledger ORDER BY origin, seq").fetchall()
    finally:
        conn.close()
    return [r for r in rows if kind is None or r["kind"] == kind]


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %.1f s" % timeout)
        time.sleep(interval)


ALL_FORMATS = ("gt1", "jws", "totp", "eth_qr", "pretix_sig1", "pretix_random")


class Verifier:
    """The decision engine on a real ledger file with the given trust documents: what
    ``gate verify`` and the lane decide, without a process per scan."""

    def __init__(self, path: Path, documents: list[dict[str, Any]], policy: Any = None, formats: tuple[str, ...] = ALL_FORMATS) -> None:
        from gate import trust
        from gate.lane.engine import DecisionEngine, EngineSettings, TrustSources
        from gate.policy import GatePolicy
        from gate.store import Store

        self.store = Store(path, "lane-1")
        self.ledger = self.store.ledger
        parsed = tuple(trust.parse_document(json.dumps(doc), f"doc{i}") for i, doc in enumerate(documents))
        settings = EngineSettings(formats=formats, gate_policy=policy or GatePolicy(), gate_id="lane-1", venue="test-venue")
        self.engine = DecisionEngine(settings, TrustSources(documents=parsed), self.store)

    def decide(self, text: str, at: float, direction: str = "in") -> Any:
        return self.engine.decide(text, direction, at)[0]

    def admit(self, text: str, at: float, direction: str = "in") -> Any:
        """Decide and, when accepted, record the admission as the lane does."""
        from gate.store.ledger import ADMISSION

        decision, claims = self.engine.decide(text, direction, at)
        if decision.accepted:
            self.ledger.append(ADMISSION, at, ticket_key=claims.ticket_key, format=claims.format,
                               direction=direction, proof_key=claims.proof.key if claims.proof else None)
        return decision


class ManualClock:
    """``gate.clock.Clock`` that moves only when told to."""

    def __init__(self, now: float = 1_780_000_000.0, monotonic: float = 1_000.0) -> None:
        self.wall = now
        self.mono = monotonic

    def now(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds
