"""Commands from the dashboard to one lane: ``set_mode``, ``open_once``, ``reload``.

Each is signed with the venue admin key held on the dashboard's host (``[commands]
signing_key_file``; without it every command is refused and the page says so), exactly as
``gate command`` signs it (``gate.trust.signed``), and published on ``gates/<gate>/cmd`` as
``venue-admin`` (the monitor user may write nothing). A command takes two steps: ``prepare``
checks it and returns a one-time confirmation, shown to the person as a question; only
``confirm`` with that token, by the same user, within ``CONFIRM_WITHIN`` seconds, signs and
sends it. Each step is in the audit log before anything goes out; the lane's answer arrives on
the monitor's connection (``hub``) and is logged too.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from gate.dashboard.audit import AuditLog
from gate.dashboard.hub import Hub
from gate.dashboard.settings import CommandSettings
from gate.decision import MODES
from gate.sync.client import make_client
from gate.sync.messages import Topics
from gate.trust import signed

log = logging.getLogger(__name__)

ACTIONS = ("set_mode", "open_once", "reload")
CONFIRM_WITHIN = 60.0
CONNECT_TIMEOUT = 5.0


class CommandRefused(Exception):
    """A command the dashboard will not send (the text says why, for the page)."""


@dataclass(frozen=True)
class Pending:
    token: str
    user: str
    gate: str
    action: str
    mode: str | None
    direction: str
    expires: float

    @property
    def question(self) -> str:
        what = {"set_mode": f"set the mode of {self.gate} to {self.mode}", "open_once": f"open {self.gate} once ({self.direction})",
                "reload": f"make {self.gate} reload its trust"}[self.action]
        return f"Really {what}?"


class Commander:
    def __init__(self, settings: CommandSettings, venue: str, hub: Hub, audit: AuditLog) -> None:
        self.settings = settings
        self.venue = venue
        self.hub = hub
        self.audit = audit
        self._key = SigningKey(settings.signing_key) if settings.signing_key else None
        self._pending: dict[str, Pending] = {}
        self._lock = threading.Lock()
        hub.answered.append(self._answered)

    @property
    def enabled(self) -> bool:
        return self._key is not None and self.settings.broker is not None

    def prepare(self, user: str, gate: str, action: str, mode: str | None = None, direction: str = "in") -> Pending:
        if not self.enabled:
            self.audit.write("refused", user=user, gate=gate[:64], command=action[:32], why="no admin key on this host")
            raise CommandRefused("commands are off: no admin key on this host ([commands] signing_key_file)")
        if action not in ACTIONS:
            raise CommandRefused(f"unknown command {action[:32]!r}")
        if gate not in self.hub.venue.lanes:
            raise CommandRefused(f"unknown gate {gate[:64]!r}")
        if action == "set_mode" and mode not in MODES:
            raise CommandRefused(f"set_mode: the mode is one of {', '.join(MODES)}")
        if direction not in ("in", "out"):
            raise CommandRefused("open_once: direction in or out")
        pending = Pending(secrets.token_urlsafe(16), user, gate, action, mode if action == "set_mode" else None,
                          direction, time.monotonic() + CONFIRM_WITHIN)
        with self._lock:
            now = time.monotonic()
            self._pending = {t: p for t, p in self._pending.items() if p.expires > now}
            self._pending[pending.token] = pending
        self.audit.write("asked", user=user, gate=gate, command=action, mode=pending.mode, direction=direction)
        return pending

    def confirm(self, user: str, token: str) -> dict[str, Any]:
        """Sign and send a prepared command (blocking: call it off the event loop)."""
        with self._lock:
            pending = self._pending.pop(token, None)
        if pending is None or pending.user != user or pending.expires < time.monotonic():
            raise CommandRefused("this confirmation has expired or was used: ask again")
        assert self._key is not None and self.settings.broker is not None
        command = signed.Command(self.venue, pending.gate, pending.action, time.time(), signed.new_nonce(), pending.mode,
                                 pending.direction)
        data = signed.sign(signed.command_payload(command), self._key)
        entry = {"nonce": command.nonce, "gate": pending.gate, "command": pending.action, "mode": pending.mode,
                 "direction": pending.direction if pending.action == "open_once" else None, "user": user,
                 "at": time.time()}
        self.audit.write("sent", **entry)
        try:
            self._publish(Topics(self.settings.broker.topic_root, pending.gate).command, data)
        except OSError as exc:
            self.audit.write("failed", nonce=command.nonce, gate=pending.gate, why=str(exc)[:200])
            log.error("command not sent gate=%s command=%s error=%r", pending.gate, pending.action, str(exc))
            raise CommandRefused(f"not sent: {exc}") from None
        log.info("command sent gate=%s command=%s user=%s nonce=%s", pending.gate, pending.action, user, command.nonce[:12])
        self.hub.command_sent(entry)
        return entry

    def _publish(self, topic: str, data: bytes) -> None:
        settings = self.settings.broker
        assert settings is not None
        client = make_client(settings, f"gate-dashboard-admin-{secrets.token_hex(4)}", clean_session=True)
        connected, refused = threading.Event(), []

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
            if reason.is_failure:
                refused.append(str(reason))
            connected.set()

        client.on_connect = on_connect
        client.connect(settings.host, settings.port, keepalive=30)
        client.loop_start()
        try:
            if not connected.wait(CONNECT_TIMEOUT) or refused:
                raise OSError(f"broker refused user {settings.username!r}: {refused[0] if refused else 'no answer'}")
            info = client.publish(topic, data, qos=1)
            info.wait_for_publish(CONNECT_TIMEOUT)
            if not info.is_published():
                raise OSError("the broker did not acknowledge the command")
        finally:
            client.disconnect()
            client.loop_stop()

    def _answered(self, entry: dict[str, Any]) -> None:
        self.audit.write("answered" if entry["state"] != "no_answer" else "no_answer", nonce=entry["nonce"],
                         gate=entry["gate"], command=entry["command"], state=entry["state"], answer=entry["answer"])
