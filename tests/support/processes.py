"""Lanes as their own ``gate run`` processes, as systemd runs them (``GateProcess``), and a venue of
them on a real mosquitto with the shipped ACL (``ProcessVenue``): driven and watched only from
outside, through the pty scanner, the control socket (hwsim/control.py) and the retained
status topic, as a technician and a person at the turnstile see a lane.

Each process's log goes to a pipe (as journald reads it; a log file on the ledger's own disk
would entangle the ledger's fsync with the log's writeback) and its last lines are kept for a
failed test. scripts/bench.py's ``start_daemon`` and ``TwoGates`` do the same for the bench and
could use these.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from hwsim.broker import Mosquitto, Watcher
from hwsim.control import ControlClient
from hwsim.scanner import SimulatedScanner
from nacl.signing import SigningKey

from tests.support.lanes import write_config
from tests.support.venue import ROOT, gate_config, publish_roster, venue_acl

LOG_LINES = 400  # kept of each run of a process


def start_daemon(config: Path, notify: str | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``gate run --config config`` with its log on a pipe; ``log_tail`` holds its last lines."""
    environ = {**os.environ, **(env or {})}
    if notify:
        environ["NOTIFY_SOCKET"] = notify
    environ.pop("JOURNAL_STREAM", None)
    daemon = subprocess.Popen([sys.executable, "-m", "gate", "run", "--config", str(config)], env=environ,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tail: deque[bytes] = deque(maxlen=LOG_LINES)
    threading.Thread(target=lambda: tail.extend(daemon.stderr), daemon=True).start()  # type: ignore[arg-type]
    daemon.log_tail = tail  # type: ignore[attr-defined]
    return daemon


def stop_daemon(daemon: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM, as ``systemctl stop``, and its exit code; killed when it does not end in time."""
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
    try:
        return daemon.wait(timeout)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait(5)
        raise AssertionError(f"gate run (pid {daemon.pid}) did not stop within {timeout:.0f} s of SIGTERM") from None


class GateProcess:
    """One simulated lane as ``gate run``: its own process, its pty scanner, its control socket.
    ``start`` and ``stop`` may alternate (a restart); every run's log tail is kept."""

    def __init__(self, name: str, config: Path, data: dict[str, Any]) -> None:
        self.name = name
        self.config = config
        self.database = Path(data["gate"]["state_dir"]) / "gate.db"
        self.scanner_path = Path(data["scanner"]["port"])
        self.control_path = data["simulator"]["control_socket"]
        self.runs: list[subprocess.Popen[bytes]] = []
        self.scanner: SimulatedScanner | None = None
        self.lane: ControlClient | None = None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.runs[-1] if self.runs else None

    def start(self, timeout: float = 30.0) -> None:
        """Start ``gate run``; back once its readers run and its scanner is open (what is scanned
        before that is lost, as with a real scanner)."""
        assert self.process is None or self.process.poll() is not None, f"{self.name} is running"
        self.scanner = SimulatedScanner(self.scanner_path)
        self.runs.append(start_daemon(self.config))
        self.lane = ControlClient(self.control_path, timeout=timeout)
        self.wait_event(lambda e: e["event"] == "ready" or (e["event"] == "hello" and e["ready"]), "ready", timeout=timeout)
        if not self.scanner.wait_until_opened(timeout):
            raise AssertionError(f"{self.name}: the daemon's serial driver never opened the scanner")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the process to end; its exit code."""
        assert self.process is not None
        try:
            return stop_daemon(self.process, timeout)
        finally:
            if self.lane is not None:
                self.lane.close()
            if self.scanner is not None:
                self.scanner.close()
            self.lane = self.scanner = None

    def mark(self) -> int:
        assert self.lane is not None
        return self.lane.mark()

    def events(self, start: int = 0) -> list[dict[str, Any]]:
        assert self.lane is not None
        return list(self.lane.events[start:])

    def wait_event(self, predicate: Callable[[dict[str, Any]], bool], what: str, start: int = 0,
                   timeout: float = 20.0) -> dict[str, Any]:
        """The first event on the control socket from ``start`` on that matches."""
        assert self.lane is not None
        try:
            return self.lane.wait_for(predicate, timeout=timeout, start=start)
        except TimeoutError:
            code = self.process.poll() if self.process is not None else None
            ended = f" (the process ended with {code})" if code is not None else ""
            raise AssertionError(f"{self.name}: no {what} on the control socket within {timeout:.0f} s{ended}") from None

    def admit(self, ticket: str, timeout: float = 20.0) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Someone shows ``ticket`` and walks through: the decision (accepted), then the
        admission's and the passage's ledger records as the lane reported them."""
        mark = self.mark()
        assert self.lane is not None and self.scanner is not None
        self.lane.send("person", direction="in", walks=True)
        self.wait_event(lambda e: e["event"] == "queued", "queued person", mark, timeout)  # in line before the scan
        self.scanner.scan(ticket)
        decision = self.wait_event(lambda e: e["event"] == "decision", "decision", mark, timeout)
        if not decision["accepted"]:
            self.lane.send("leave", direction="in")
            raise AssertionError(f"{self.name}: ticket refused with {decision['reason']}: {decision}")
        admission = self.wait_event(lambda e: e["event"] == "record" and e["kind"] == "admission"
                                    and e["ticket_key"] == decision["ticket_key"], "admission record", mark, timeout)
        ref = [admission["origin"], admission["epoch"], admission["seq"]]
        passage = self.wait_event(lambda e: e["event"] == "record" and e["kind"] == "passage" and e["ref"] == ref,
                                  "passage record", mark, timeout)
        return decision, admission, passage

    def show(self, ticket: str, timeout: float = 20.0) -> dict[str, Any]:
        """Someone shows ``ticket`` and nobody walks (a refusal expected): the decision."""
        assert self.scanner is not None
        mark = self.mark()
        self.scanner.scan(ticket)
        return self.wait_event(lambda e: e["event"] == "decision", "decision", mark, timeout)

    def unlocks(self, start: int = 0) -> int:
        """How often the entry relay was energized, from event ``start`` on."""
        return sum(1 for e in self.events(start) if e["event"] == "output" and e["name"] == "unlock_in" and e["on"])

    def log_tail(self, lines: int = 80) -> str:
        parts = []
        for i, run in enumerate(self.runs, 1):
            text = b"".join(run.log_tail).decode(errors="replace").splitlines()  # type: ignore[attr-defined]
            parts.append(f"--- {self.name}, run {i} (pid {run.pid}, exit {run.poll()}), last {lines} log lines ---")
            parts += text[-lines:]
        return "\n".join(parts)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.stop()
            except AssertionError:
                pass


class ProcessVenue:
    """A real mosquitto with the shipped ACL and a password for every user, the admin's signed
    roster naming ``gates`` (retained), a ``venue-monitor`` that reads every gate's retained
    status, and each gate as a ``GateProcess`` (not started yet).

    The gates' ``[sync]`` keeps the shipped default recovery (``wait``: a new database holds
    admissions until it has the venue's records), unlike tests/support/venue.gate_config's
    in-process lanes, which decide at once; ``sync`` adds to or overrides the table."""

    def __init__(self, tmp_path: Path, issuer: SigningKey, gates: tuple[str, ...], **sync: Any) -> None:
        users = (*gates, "venue-admin", "venue-monitor")
        passwords = tmp_path / "passwd"
        for i, user in enumerate(users):
            subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwords), user, f"pw-{user}"],
                           check=True)
            (tmp_path / f"{user}.pw").write_text(f"pw-{user}\n")
        self.broker = Mosquitto(tmp_path / "broker", password_file=passwords, acl_file=venue_acl(tmp_path))
        self.gates: dict[str, GateProcess] = {}
        self.monitor: Watcher | None = None
        try:
            publish_roster(self.broker, list(gates), username="venue-admin", password="pw-venue-admin")
            self.monitor = Watcher(self.broker.port, [f"{ROOT}gates/+/status"], "venue-monitor", "pw-venue-monitor")
            for gate in gates:
                settings = {"password_file": str(tmp_path / f"{gate}.pw"), "status_interval": 1, **sync}
                data = gate_config(tmp_path, issuer, gate, self.broker, **settings)
                for key in ("recovery", "recovery_wait"):
                    if key not in sync:
                        del data["sync"][key]  # the shipped default
                config = write_config(tmp_path / gate / "gate.toml", data)
                self.gates[gate] = GateProcess(gate, config, data)
        except BaseException:
            self.close()
            raise

    def __getitem__(self, gate: str) -> GateProcess:
        return self.gates[gate]

    # --- the retained status topic, as the venue's monitor sees it ----------------------------

    def mark(self) -> int:
        """A point in the monitor's messages: ``statuses(start=mark)`` are the ones after it."""
        assert self.monitor is not None
        with self.monitor.lock:
            return len(self.monitor.messages)

    def statuses(self, gate: str, start: int = 0) -> list[dict[str, Any]]:
        assert self.monitor is not None
        topic = f"{ROOT}gates/{gate}/status"
        with self.monitor.lock:
            messages = self.monitor.messages[start:]
        return [json.loads(payload) for t, payload, _retained in messages if t == topic]

    def wait_status(self, gate: str, predicate: Callable[[dict[str, Any]], bool], what: str, start: int = 0,
                    timeout: float = 30.0) -> dict[str, Any]:
        """The first status ``gate`` published after ``start`` that matches (polled: the
        monitor's client has no condition to wait on)."""
        deadline = time.monotonic() + timeout
        while True:
            match = next((s for s in self.statuses(gate, start) if predicate(s)), None)
            if match is not None:
                return match
            if time.monotonic() > deadline:
                last = (self.statuses(gate, start) or [{}])[-1]
                raise AssertionError(f"{gate}: no status saying {what} within {timeout:.0f} s; the last: {last}")
            time.sleep(0.01)

    # --- failures and the end -------------------------------------------------------------------

    def log_tails(self, lines: int = 80) -> str:
        return "\n".join(gate.log_tail(lines) for gate in self.gates.values())

    @contextmanager
    def logs_on_failure(self, lines: int = 80) -> Iterator[None]:
        """Print every gate's log tail when the block fails (pytest shows it with the failure)."""
        try:
            yield
        except BaseException:
            print(self.log_tails(lines))
            broker_log = self.broker.workdir / "mosquitto.log"
            if broker_log.exists():
                print("--- mosquitto ---\n" + broker_log.read_text(errors="replace")[-3000:])
            raise

    def close(self) -> None:
        for gate in self.gates.values():
            gate.close()
        if self.monitor is not None:
            self.monitor.close()
        self.broker.stop()
