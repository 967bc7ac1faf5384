"""A real mosquitto on a free port, for tests, the bench and the simulated venue (the scripts
install the Debian package), and ``Watcher``, a plain client that sees what a dashboard sees."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """One broker process; ``stop``/``start`` keep its port, as a broker restart does.

    By default a plain listener on 127.0.0.1 with this class's own settings. ``lines`` is a
    whole config of the caller's instead (a shipped config made for a test: its listener on
    ``port``, which the caller chose with ``free_port``); ``ca_file``: the listener is TLS, and
    clients (``sync_table``, ``Watcher``) trust that CA; ``persistent``: the broker keeps its
    clients' sessions and queued messages across a restart in ``workdir``, as the shipped config
    does (config/mosquitto/mosquitto.conf), instead of forgetting them."""

    def __init__(self, workdir: Path, *, password_file: Path | None = None, acl_file: Path | None = None,
                 lines: list[str] | None = None, port: int | None = None, ca_file: Path | None = None,
                 persistent: bool = False) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (scripts/test installs it with apt-get)")
        self.binary = binary
        self.port = port or free_port()
        self.ca_file = ca_file
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        head = ["user root"] if os.geteuid() == 0 else []  # mosquitto would drop to its own user and not read the test's files
        if lines is None:
            persistence = ["persistence true", f"persistence_location {workdir}/"] if persistent else ["persistence false"]
            lines = [f"listener {self.port} 127.0.0.1", "set_tcp_nodelay true", *persistence, "log_dest stderr", "log_type error",
                     "log_type warning"]
            if password_file is not None:
                lines += ["allow_anonymous false", f"password_file {password_file}"]
            else:
                lines.append("allow_anonymous true")
            if acl_file is not None:
                lines.append(f"acl_file {acl_file}")
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(head + lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        assert self.process is None
        log = open(self.workdir / "mosquitto.log", "ab")
        self.process = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start: {(self.workdir / 'mosquitto.log').read_text()[-2000:]}")
                time.sleep(0.02)

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.process.wait(10)
        self.process = None

    def sync_table(self, **extra: Any) -> dict[str, Any]:
        """The ``[sync]`` table of a gate's config that talks to this broker."""
        tls = {"ca_file": str(self.ca_file)} if self.ca_file is not None else {}
        return {"host": "127.0.0.1", "port": self.port, "keepalive": 5, "catch_up_interval": 5.0, **tls, **extra}


def _no_delay(client: Any, userdata: Any, sock: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Watcher:
    """A plain MQTT client that collects what arrives on some topics (as ``mosquitto_sub``)."""

    def __init__(self, port: int, topics: list[str], username: str | None = None, password: str | None = None, *,
                 client_id: str = "", ca_file: Path | str | None = None) -> None:
        """``client_id``: the one to send (paho makes one up when empty); ``ca_file``: connect
        over TLS, trusting that CA (the broker's certificate must name 127.0.0.1)."""
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if username:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file))
        self.client.on_message = lambda c, u, m: self._got(m)
        self.client.on_socket_open = _no_delay  # as gate's own clients: no 40 ms Nagle waits in figures
        self.refused: Any = None

        def connected(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
            if reason.is_failure:
                self.refused = reason
            elif topics:
                client.subscribe([(t, 1) for t in topics])
            self.ready.set()

        self.client.on_connect = connected
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(5), "watcher did not connect"
        if self.refused is not None:
            self.close()
            raise PermissionError(f"broker refused the connection: {self.refused}")
        time.sleep(0.1)  # the subscription is in place

    def _got(self, message: Any) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def last_json(self, topic: str) -> dict[str, Any]:
        """The newest message on ``topic`` as JSON (a gate's retained status), {} before any."""
        messages = self.on(topic)
        return json.loads(messages[-1]) if messages else {}

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
