"""``gate run`` as its own process, as systemd runs it: READY and WATCHDOG on a real notify
socket, outputs safe after SIGTERM, and a hung decision loop stops feeding the watchdog."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from hwsim.control import ControlClient
from hwsim.scanner import SimulatedScanner

from tests.support.lanes import write_config


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield path, sock
    sock.close()


def messages_until(sock: socket.socket, wanted: str, limit: int = 50) -> list[str]:
    seen = []
    for _ in range(limit):
        message = sock.recv(4096).decode()
        seen.append(message)
        if wanted in message:
            return seen
    raise AssertionError(f"{wanted!r} never arrived: {seen}")


def start(tmp_path, config_data, notify_path, extra_env=None):
    path = write_config(tmp_path / "gate.toml", config_data)
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "400000", **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-m", "gate", "run", "--config", str(path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ready_watchdog_and_safe_outputs_on_sigterm(tmp_path, config_data, tickets, notify_socket):
    notify_path, sock = notify_socket
    config_data["turnstile"]["unlock_mode"] = "level"
    config_data["turnstile"]["passage_timeout"] = 60
    scanner = SimulatedScanner(config_data["scanner"]["port"])
    proc = start(tmp_path, config_data, notify_path)
    try:
        assert "READY=1" in "".join(messages_until(sock, "READY=1"))
        messages_until(sock, "WATCHDOG=1")
        client = ControlClient(config_data["simulator"]["control_socket"])
        client.send("person", direction="in", walks=False)
        scanner.scan(tickets.static())
        client.wait_for(lambda e: e["event"] == "output" and e["name"] == "unlock_in" and e["on"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        messages_until(sock, "STOPPING=1")
        outputs = {}
        for event in client.events:
            if event["event"] == "output":
                outputs[event["name"]] = event["on"]
        assert client.events[-1]["event"] == "bye"
        assert outputs["unlock_in"] is False, "relay released"
        assert outputs["red"] is True and outputs["green"] is False, "red: out of service"
    finally:
        proc.kill()
        scanner.close()


def test_a_hung_decision_loop_stops_sending_watchdog(tmp_path, config_data, notify_socket):
    """The watchdog is fed from the loop itself: hang the loop, and WATCHDOG=1 stops."""
    notify_path, sock = notify_socket
    del config_data["scanner"]
    # A sitecustomize in the child that, on SIGUSR1, makes the decision loop block forever.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import signal, threading\n"
        "def _hang(*_):\n"
        "    import gate.lane.loop as L\n"
        "    L._HANG = threading.Event()\n"
        "    orig = L.DecisionLoop._handle\n"
        "    def stuck(self, event):\n"
        "        L._HANG.wait()\n"
        "    L.DecisionLoop._handle = stuck\n"
        "signal.signal(signal.SIGUSR1, _hang)\n"
    )
    proc = start(tmp_path, config_data, notify_path, {"PYTHONPATH": f"{hook}{os.pathsep}{os.getcwd()}"})
    try:
        messages_until(sock, "READY=1")
        messages_until(sock, "WATCHDOG=1")
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        client = ControlClient(config_data["simulator"]["control_socket"])
        client.send("force", direction="in")  # an event for the loop to get stuck on
        time.sleep(0.5)
        sock.settimeout(1.5)
        stale = []
        try:
            while True:
                stale.append(sock.recv(4096).decode())
        except socket.timeout:
            pass
        assert all("WATCHDOG=1" not in m for m in stale[2:]), stale
    finally:
        proc.kill()
        proc.wait()
