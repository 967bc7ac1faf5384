"""The running lane, seen from a technician's laptop: a read-only Unix socket (``[status] socket``,
``/run/gate/status.sock`` under systemd) that ``gate status`` and ``gate doctor`` read.

Each client gets one JSON object per line: ``{"event": "status", ...}`` at once and then every
second (mode, clock, counters, readers, bundle, sync, the last decisions), and every decision,
alarm, mode and clock change as it happens. Clients cannot send anything: commands go through
signed messages (gate.trust.commands), never through this socket. The socket is mode 0660, so the
gate user's group (technicians added to it) may read it.

A client that stops reading is dropped, never waited for: the decision loop publishes here.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

STREAMED_EVENTS = ("decision", "alarm", "mode", "clock", "bundle")


class StatusServer:
    def __init__(self, path: str, snapshot: Callable[[], dict[str, Any]], interval: float = 1.0) -> None:
        self.path = path
        self.snapshot = snapshot  # any thread; answers quickly even when the loop hangs
        self.interval = interval
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        if os.path.exists(path):
            os.unlink(path)  # a socket left by a killed lane
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._server.bind(path)
        os.chmod(path, 0o660)
        self._server.listen(8)
        threading.Thread(target=self._accept, name="status-accept", daemon=True).start()
        threading.Thread(target=self._tick, name="status-tick", daemon=True).start()

    def publish(self, kind: str, payload: dict[str, Any]) -> None:
        """A decision loop listener: stream what just happened (never blocks)."""
        if kind in STREAMED_EVENTS and self._clients:
            self._broadcast_line(_line({"event": kind, **payload, "at": round(time.time(), 3)}))

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()
        self._server.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            client.setblocking(False)
            line = self._status_line()
            with self._lock:
                if self._send(client, line):
                    self._clients.append(client)

    def _tick(self) -> None:
        while not self._closed.wait(self.interval):
            if self._clients:
                self._broadcast_line(self._status_line())

    def _status_line(self) -> bytes:
        try:
            status = self.snapshot()
        except Exception as exc:  # the status must never take the lane down
            log.exception("status snapshot failed")
            status = {"problem": f"status snapshot failed: {exc}"}
        return _line({"event": "status", **status})

    def _broadcast_line(self, line: bytes) -> None:
        with self._lock:  # one writer at a time: lines from the loop and the ticker never interleave
            self._clients = [client for client in self._clients if self._send(client, line)]

    @staticmethod
    def _send(client: socket.socket, line: bytes) -> bool:
        """The whole line into the socket buffer now, or the client is dropped."""
        try:
            if client.send(line) == len(line):
                return True
        except OSError:
            pass
        client.close()
        return False


def decision_summary(payload: dict[str, Any], at: float) -> dict[str, Any]:
    """One line of ``gate status``'s last decisions, from a loop ``decision`` event: the ticket
    only by the first characters of its hash."""
    return {
        "at": round(at, 3),
        "accepted": payload["accepted"],
        "reason": payload["reason"],
        "format": payload.get("format"),
        "direction": payload.get("direction"),
        "source": payload.get("source"),
        "ticket": (payload.get("ticket_key") or "")[:12],
        "latency_ms": payload.get("latency_ms"),
        "detail": str(payload.get("details", {}).get("detail", ""))[:120],
    }


def json_lines(sock: socket.socket) -> Iterator[dict[str, Any]]:
    """The messages a lane sends on its status socket, as they arrive (until it closes)."""
    buffer = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line:
                yield json.loads(line)


def _line(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode()


def read_status(path: str, timeout: float = 3.0) -> dict[str, Any]:
    """One status snapshot from a running lane (``gate doctor``); OSError when none answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        for message in json_lines(sock):
            return message
    raise ConnectionError("the lane closed the status socket")
