"""Drive and watch a simulated lane from another process: JSON lines over a Unix socket.

The simulated hardware lives inside the daemon's process (gpiozero mock pins are in-process),
so a test or the demo reaches it here, the way a person reaches a turnstile: they walk up,
walk through, pull the fire alarm, and watch the lights.

Commands (client → lane), one JSON object per line:
  {"cmd": "person", "direction": "in", "walks": true}   queue someone for the next unlock;
                                                         answer: {"event": "queued", ...}
  {"cmd": "leave", "direction": "in"}                    whoever waits gives up (refused)
  {"cmd": "force", "direction": "in"}                    someone pushes through, no unlock
  {"cmd": "fire_alarm", "active": true}                  open (or close) the fire loop
  {"cmd": "tamper", "active": true}
  {"cmd": "state"}                                       answer: {"event": "state", ...}
  {"cmd": "show", "text": "GT1:...", "symbology": "qr",   hold a code up to the simulated camera
   "look": {"medium": "phone", "turn": 10, ...}, "seconds": 2}   (hwsim.camera.Look's fields)
  {"cmd": "replay", "folder": "/path", "seconds": 5,     show a folder of pictures in turn, each for
   "each": 0.5}                                          "each" seconds
  {"cmd": "clear"}                                       nothing in front of the camera
  {"cmd": "clock", "synchronized": false}                NTP loses (or regains) the lane's clock
Events (lane → client): "hello" (all outputs, and whether the lane is ready: its readers run),
"ready" (when it becomes so), "state" (all outputs), "output" (one output changed),
"decision", "record", "alarm", "mode" (from the decision loop), "bye" (lane stopped, outputs safe).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any, Callable

from hwsim.turnstile import SimulatedTurnstile

log = logging.getLogger(__name__)

MAX_COMMAND = 4096


class ControlServer:
    def __init__(self, path: str, turnstile: SimulatedTurnstile) -> None:
        self.path = path
        self.turnstile = turnstile
        self.camera: Any = None  # hwsim.camera.SimulatedCamera when [camera] source = "simulator"
        self.clock_sync: Any = None  # hwsim.clock.SimulatedClockSync
        self.ready = False
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        if os.path.exists(path):
            os.unlink(path)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        os.chmod(path, 0o600)
        self._server.listen(8)
        turnstile.listeners.append(lambda name, on: self.broadcast("output", {"name": name, "on": on}))
        threading.Thread(target=self._accept, name="sim-control", daemon=True).start()

    def set_ready(self) -> None:
        """The daemon has started its readers: what clients show the lane now reaches it."""
        self.ready = True
        self.broadcast("ready", {})

    def broadcast(self, event: str, payload: dict[str, Any]) -> None:
        line = (json.dumps({"event": event, **payload, "t": time.monotonic()}) + "\n").encode()
        with self._lock:
            for client in list(self._clients):
                try:
                    client.sendall(line)
                except OSError:
                    self._clients.remove(client)

    def close(self) -> None:
        self.broadcast("bye", {})
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()
        self._server.close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            client.settimeout(2.0)  # a client that stops reading is dropped, the lane goes on
            with self._lock:
                self._clients.append(client)
            self._send(client, "hello", {"outputs": self.turnstile.outputs(), "ready": self.ready})
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _send(self, client: socket.socket, event: str, payload: dict[str, Any]) -> None:
        with self._lock:
            try:
                client.sendall((json.dumps({"event": event, **payload, "t": time.monotonic()}) + "\n").encode())
            except OSError:
                pass

    def _serve(self, client: socket.socket) -> None:
        buffer = b""
        while True:
            try:
                data = client.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                self._command(client, line)
            if len(buffer) > MAX_COMMAND:
                log.warning("sim control command too long, dropped")
                buffer = b""

    def _command(self, client: socket.socket, line: bytes) -> None:
        try:
            cmd = json.loads(line)
            name = cmd["cmd"]
            if name == "person":
                self.turnstile.person(cmd.get("direction", "in"), bool(cmd.get("walks", True)))
                self._send(client, "queued", {"direction": cmd.get("direction", "in")})  # now scan
            elif name == "leave":
                self.turnstile.leave(cmd.get("direction", "in"))
            elif name == "force":  # takes the pulse's time: not on the command stream
                direction = cmd.get("direction", "in")
                threading.Thread(target=self.turnstile.pass_through, args=(direction,), daemon=True).start()
            elif name == "fire_alarm":
                self.turnstile.set_fire_alarm(bool(cmd["active"]))
            elif name == "tamper":
                self.turnstile.set_tamper(bool(cmd["active"]))
            elif name in ("show", "replay", "clear"):
                self._camera_command(name, cmd)
            elif name == "clock":
                self.clock_sync.synchronized_now = bool(cmd["synchronized"])
            elif name == "state":
                self._send(client, "state", {"outputs": self.turnstile.outputs()})
            else:
                raise ValueError(f"unknown command {name!r}")
        except Exception as exc:
            log.warning("sim control command refused error=%r", str(exc))
            self._send(client, "error", {"error": str(exc)})


    def _camera_command(self, name: str, cmd: dict[str, Any]) -> None:
        from hwsim.camera import Look

        if self.camera is None:
            raise ValueError("this lane has no simulated camera ([camera] source = \"simulator\")")
        seconds = cmd.get("seconds", 2.0)
        if name == "show":
            look = Look(**{k: tuple(v) if k == "center" else v for k, v in cmd.get("look", {}).items()})
            self.camera.show(str(cmd["text"]), cmd.get("symbology", "qr"), look, seconds)
        elif name == "replay":
            self.camera.replay(cmd["folder"], seconds, float(cmd.get("each", 0.5)))
        else:
            self.camera.clear()


class ControlClient:
    """The other end: connects to a lane's control socket and records every event."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._socket.connect(path)
                break
            except OSError:
                self._socket.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._closed = False
        threading.Thread(target=self._read, name="sim-client", daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                data = self._socket.recv(65536)
            except OSError:
                data = b""
            if not data:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            with self._cond:
                self.events.extend(json.loads(line) for line in lines if line)
                self._cond.notify_all()

    def send(self, cmd: str, **args: Any) -> None:
        self._socket.sendall((json.dumps({"cmd": cmd, **args}) + "\n").encode())

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0, start: int = 0
    ) -> dict[str, Any]:
        """The first event from index ``start`` on that matches; raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[start:]:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise TimeoutError("no matching event from the simulated lane")
                self._cond.wait(remaining)

    def take(self, timeout: float = 1.0) -> list[dict[str, Any]]:
        """Every event so far, removed from ``events`` (for a long run that must not keep them
        all); waits up to ``timeout`` for one. Marks taken before are void afterwards."""
        with self._cond:
            if not self.events and not self._closed:
                self._cond.wait(timeout)
            taken, self.events = self.events, []
            return taken

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def close(self) -> None:
        self._socket.close()
