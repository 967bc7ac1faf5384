"""The status socket holds at most ``MAX_CLIENTS`` clients: a group member who opens a thousand
connections gets the lane's file descriptors and threads no more, and those already watching
(``gate status``) keep their stream. A real StatusServer on a Unix socket, real clients."""

from __future__ import annotations

import socket
import threading
import time

from gate.field import status_server
from gate.field.status_server import MAX_CLIENTS, StatusServer, json_lines
from tests.support.lanes import wait_until

TIMEOUT = 30.0  # a loaded machine: a line within this, or the test fails


def _client(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(path)
    return sock


def _closed_at_once(sock: socket.socket) -> bool:
    """The lane closed it without a word (recv gives end of file, not a status line)."""
    return sock.recv(65536) == b""


def _until_closed(sock: socket.socket) -> bytes:
    """What the lane sends until it closes the socket; fails when it is still streaming after
    TIMEOUT seconds (left hanging)."""
    received, deadline = b"", time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            return received
        received += data
    raise AssertionError(f"still open after {TIMEOUT:g} s")


def _served(path: str) -> bool:
    """A new client gets its status line (not closed at once)."""
    with _client(path) as sock:
        return next(json_lines(sock), {}).get("event") == "status"


def test_clients_over_the_limit_are_closed_and_the_first_ones_stream_on(tmp_path):
    path = str(tmp_path / "status.sock")
    server = StatusServer(path, lambda: {"mode": "normal"}, interval=0.2)
    clients: list[socket.socket] = []
    try:
        for _ in range(MAX_CLIENTS):
            sock = _client(path)
            clients.append(sock)
            assert next(json_lines(sock))["event"] == "status"  # accepted and counted
        streams = [json_lines(sock) for sock in clients]
        extra = [_client(path) for _ in range(4)]
        try:
            assert all(_closed_at_once(sock) for sock in extra), "the clients over the limit are closed at once"
        finally:
            for sock in extra:
                sock.close()
        assert server.refused == 4
        for stream in streams:  # those watching are not disturbed: the next status lines come
            assert next(stream)["event"] == "status"
            assert next(stream)["event"] == "status"
        for sock in clients[:2]:
            sock.close()
        clients = clients[2:]
        wait_until(lambda: _served(path), TIMEOUT, interval=0.1)  # a freed place is given again
    finally:
        for sock in clients:
            sock.close()
        server.close()


def test_no_thread_left_for_a_client_does_not_end_accepting(tmp_path, monkeypatch):
    """Thread.start raising (the process has no thread left) costs that client only: the
    accepting thread lives on and serves the next one."""
    path = str(tmp_path / "status.sock")
    server = StatusServer(path, lambda: {"mode": "normal"}, interval=0.2)
    failures = []

    class NoThreadOnce(threading.Thread):
        def start(self) -> None:
            if self.name == "status-request" and not failures:
                failures.append(self.name)
                raise RuntimeError("can't start new thread")
            super().start()

    monkeypatch.setattr(status_server.threading, "Thread", NoThreadOnce)
    try:
        with _client(path) as first:
            wait_until(lambda: failures, TIMEOUT)
            received = _until_closed(first)
            assert received.startswith(b'{"event":"status"'), "its status line, then closed: not left hanging"
        assert _served(path), "the next client is served"
        with _client(path) as other:  # and it is a full client: it streams
            stream = json_lines(other)
            assert next(stream)["event"] == "status" and next(stream)["event"] == "status"
    finally:
        server.close()
