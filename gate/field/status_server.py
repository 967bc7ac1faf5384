"""The running lane, seen from a technician's laptop: a read-only Unix socket (``[status] socket``,
``/run/gate/status.sock`` under systemd) that ``gate status`` and ``gate doctor`` read.

Each client gets one JSON object per line: ``{"event": "status", ...}`` at once and then every
second (mode, clock, counters, readers, bundle, sync, the last decisions), and every decision,
alarm, mode and clock change as it happens. Commands go through signed messages
(gate.trust.commands), never through this socket. A client may send one request that changes
nothing, one JSON line: ``{"request": "snapshot"}`` (the camera's newest frame, for ``gate camera
snapshot``: aiming and focusing); it then leaves the stream, gets one answer line and is closed.
The socket is mode 0660 and
belongs to the ``gate-status`` group when there is one (install-pi.sh adds technicians to it): they
read the lane's status, and nothing of its config, keys or ledger.

A client that stops reading is dropped, never waited for: the decision loop publishes here.
At most ``MAX_CLIENTS`` clients at once (each holds a file descriptor and a thread of the lane's);
one more is closed as soon as it is accepted (logged at most every ``REFUSED_LOG_INTERVAL``
seconds), and nothing that goes wrong while accepting ends the accepting thread.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import threading
import time
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

STREAMED_EVENTS = ("decision", "alarm", "mode", "clock", "bundle")
MAX_REQUEST = 1024  # bytes: a request is one short JSON line
ANSWER_TIMEOUT = 10.0  # seconds an answer (a camera frame, some 100 KB) may take to be read
MAX_CLIENTS = 16  # gate status, gate doctor and a few technicians' terminals; more is someone flooding
REFUSED_LOG_INTERVAL = 10.0  # seconds between warnings about refused clients
ACCEPT_RETRY = 0.1  # seconds before accepting again after accept() failed (no file descriptor left, ...)
STATUS_GROUP = "gate-status"  # technicians' group (systemd/gate.sysusers; the gate user is a member)


def _give_to_group(path: str, group: str) -> None:
    """The socket to ``group`` when it exists (a development machine has none: the lane's own
    group keeps it). The lane's user must be a member; when it is not, the socket stays as it is."""
    import grp

    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return
    try:
        os.chown(path, -1, gid)
    except OSError as exc:
        log.warning("status socket not given to group %s path=%s error=%s", group, path, exc.strerror or exc)


class StatusServer:
    def __init__(self, path: str, snapshot: Callable[[], dict[str, Any]], interval: float = 1.0,
                 group: str = STATUS_GROUP, requests: dict[str, Callable[[], dict[str, Any]]] | None = None,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.path = path
        self.max_clients = max_clients
        self._holders: set[socket.socket] = set()  # clients holding a slot: streaming or being answered (_lock)
        self.refused = 0  # clients closed at once: too many at the same time
        self._refused_logged = (float("-inf"), 0)  # when the last warning went out, and the count then
        self._accept_failed_logged = float("-inf")
        self.snapshot = snapshot  # any thread; answers quickly even when the loop hangs
        self.interval = interval
        self.requests = requests or {}  # request name → its answer (on the asking client's thread)
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        if os.path.exists(path):
            os.unlink(path)  # a socket left by a killed lane
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._server.bind(path)
        os.chmod(path, 0o660)
        _give_to_group(path, group)
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
            except OSError as exc:
                if self._closed.is_set():
                    return
                now = time.monotonic()  # EMFILE (no file descriptor left): wait, go on, say so now and then
                if now - self._accept_failed_logged >= REFUSED_LOG_INTERVAL:
                    log.warning("status socket accept failed error=%r", exc.strerror or str(exc))
                    self._accept_failed_logged = now
                self._closed.wait(ACCEPT_RETRY)
                continue
            try:
                self._admit(client)
            except Exception:  # whatever one client did, the next one is still accepted
                log.exception("status client not served")
                self._release(client)

    def _admit(self, client: socket.socket) -> None:
        """Into the stream with a thread of its own, or closed at once when there are enough."""
        with self._lock:
            full = len(self._holders) >= self.max_clients
            if not full:
                self._holders.add(client)
        if full:
            self._note_refused()  # counted before the client can see the close (tests read the count then)
            client.close()
            return
        client.setblocking(False)
        line = self._status_line()
        with self._lock:
            if not self._send(client, line):
                self._holders.discard(client)
                return
            self._clients.append(client)
        try:
            threading.Thread(target=self._serve_request, args=(client,), name="status-request", daemon=True).start()
        except (RuntimeError, OSError) as exc:  # no thread left ("can't start new thread")
            log.warning("status client not served: no thread left error=%r", str(exc))
            self._release(client)

    def _release(self, client: socket.socket) -> None:
        """A client's slot given back (once or more: the same): out of the stream, closed."""
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)
            self._holders.discard(client)
        client.close()

    def _note_refused(self) -> None:
        self.refused += 1
        now = time.monotonic()
        last_at, last_count = self._refused_logged
        if now - last_at >= REFUSED_LOG_INTERVAL:
            log.warning("status clients refused count=%d limit=%d (too many at once)", self.refused - last_count, self.max_clients)
            self._refused_logged = (now, self.refused)

    def _serve_request(self, client: socket.socket) -> None:
        """Wait for the client's one request line, if it sends one; answer it and close. The
        client's slot is given back when this ends, however it ends."""
        try:
            self._serve(client)
        finally:
            self._release(client)

    def _serve(self, client: socket.socket) -> None:
        buffer = b""
        while b"\n" not in buffer and len(buffer) <= MAX_REQUEST:
            try:
                readable, _, _ = select.select([client], [], [], 1.0)
                if self._closed.is_set():
                    return
                if not readable:
                    continue
                data = client.recv(MAX_REQUEST + 1)
            except BlockingIOError:
                continue
            except (OSError, ValueError):  # dropped as a slow reader: closed under us
                return
            if not data:
                return  # the client left
            buffer += data
        with self._lock:  # out of the stream first: no status line in the middle of the answer
            if client not in self._clients:
                return
            self._clients.remove(client)
        answer = _line(self._answer(buffer.split(b"\n", 1)[0]))
        try:
            client.settimeout(ANSWER_TIMEOUT)
            client.sendall(answer)
        except OSError as exc:
            log.warning("status request answer not delivered error=%r", str(exc))
        finally:
            client.close()

    def _answer(self, line: bytes) -> dict[str, Any]:
        if len(line) > MAX_REQUEST:
            return {"event": "error", "problem": f"a request is one JSON line of at most {MAX_REQUEST} bytes"}
        try:
            request = json.loads(line)
        except ValueError:
            return {"event": "error", "problem": "a request is one JSON object, such as {\"request\": \"snapshot\"}"}
        name = request.get("request") if isinstance(request, dict) else None
        if not isinstance(name, str) or name not in self.requests:
            known = ", ".join(sorted(self.requests)) or "none"
            return {"event": "error", "problem": f"unknown request {str(name)[:40]!r} (known: {known})"}
        try:
            return {"event": name, **self.requests[name]()}
        except Exception as exc:  # the lane goes on; the technician reads why
            log.warning("status request failed request=%s error=%r", name, str(exc))
            return {"event": "error", "problem": str(exc)}

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


def ask(path: str, request: str, timeout: float = 10.0) -> dict[str, Any]:
    """The running lane's answer to one request (``{"event": request, ...}`` or ``{"event":
    "error", "problem": ...}``); OSError when no lane answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(_line({"request": request}))
        for message in json_lines(sock):
            if message.get("event") in (request, "error"):
                return message
    raise ConnectionError("the lane closed the status socket without answering")
